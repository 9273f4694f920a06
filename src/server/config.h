/*
 * config.h - settings of `clipreel serve`: defaults < config file < environment
 * < command line flags.
 *
 * Every setting has one name used everywhere: the JSON config file spells it as
 * a (possibly nested) key (`"storage": {"bucket": ...}` is `storage.bucket`),
 * the environment as CLIPREEL_<NAME> (`CLIPREEL_STORAGE_BUCKET`) and the command
 * line as a flag (`--storage-bucket`); the table in config.c is the single
 * source of all three and of `clipreel serve --help`. Secrets (S3 keys, tokens)
 * have no flag: command lines are visible to every local user.
 *
 * Thread-safety: a ReelServerConfig is filled by one thread before the server
 * starts and is read-only afterwards.
 */
#ifndef REEL_SERVER_CONFIG_H
#define REEL_SERVER_CONFIG_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "core/job.h"
#include "jobs/executor.h"

#define REEL_CONFIG_MAX_TOKENS 256

typedef struct ReelServerToken {
    unsigned char sha256[32]; /**< of the token: the plain token is not kept */
    char user[129];
} ReelServerToken;

typedef struct ReelServerConfig {
    char listen[64];           /**< IPv4 address, default 127.0.0.1 */
    int port;                  /**< default 8000; 0 = any free port */
    char data_dir[PATH_MAX];   /**< default "data" */
    char models_dir[PATH_MAX]; /**< "" = $CLIPREEL_MODELS or "models" */
    int workers;               /**< concurrent exports, default 1 */
    int queue;                 /**< pending exports beyond the running ones, default 16 */
    int64_t max_upload;        /**< bytes per request, default 4 GiB */
    int64_t max_source;        /**< bytes per uploaded file, default = max_upload */
    int auth;                  /**< 1: bearer tokens required; 0: X-User-ID (loopback only) */
    ReelRestartPolicy on_restart;
    int max_attempts;     /**< an export interrupted this often fails instead, default 3 */
    int upscale;          /**< -1 = as the job says, else a forced ReelUpscaleMode */
    int http_threads;     /**< civetweb threads (each open WebSocket holds one), default 160 */
    int engine_threads;   /**< threads per export (0 = all cores) */
    int engine_lanes;     /**< model lanes per export (0 = one per thread, at most 4) */
    int64_t result_ttl_s; /**< reserved: results are kept forever today */
    ReelJobLimits limits;
    /* storage */
    char storage_kind[16];       /**< "local" (default) or "s3" */
    char storage_root[PATH_MAX]; /**< local: default <data>/objects */
    char s3_endpoint[512];
    char s3_bucket[256];
    char s3_region[64];
    char s3_access_key[256];
    char s3_secret_key[256];
    int s3_path_style; /**< default 1 */
    int presign_ttl_s; /**< lifetime of redirect URLs, default 3600 */
    /* scale-out */
    char redis[512];    /**< redis:// URL: exports go to `clipreel worker`s; "" = in process */
    char plan_config[1024]; /**< the planner's JSON table (docs/planner.md); "" = defaults */
    int redis_fallback; /**< run here when Redis is unreachable (default 1) */
    /* users */
    ReelServerToken tokens[REEL_CONFIG_MAX_TOKENS];
    int nb_tokens;
    int auth_set; /**< auth was set explicitly (else: on iff tokens exist) */
} ReelServerConfig;

/** Defaults (see the field comments). */
void reel_server_config_init(ReelServerConfig *cfg);

/**
 * Set one setting by name ("port", "storage.bucket", "tokens.<TOKEN>" adds a
 * token for the user given as value). Values are text, as in the environment.
 * @return 0, or REEL_ERR(EINVAL) with errmsg naming the setting and the problem.
 */
int reel_server_config_set(ReelServerConfig *cfg, const char *name, const char *value,
                           char *errmsg);

/** Apply a JSON config file; unknown keys are errors (a typo must not pass silently). */
int reel_server_config_load_file(ReelServerConfig *cfg, const char *path, char *errmsg);

/** Apply every CLIPREEL_* variable of the environment that names a setting. */
int reel_server_config_load_env(ReelServerConfig *cfg, char *errmsg);

/**
 * Look a command line flag up ("--port"): returns the setting's name, or NULL
 * when the flag is not a setting. *takes_value says whether it needs a value.
 */
const char *reel_server_config_flag(const char *flag);

/** Cross-field checks and derived values (storage root, auth default). */
int reel_server_config_finish(ReelServerConfig *cfg, char *errmsg);

/** Print the settings table (flag, environment variable, default, meaning). */
void reel_server_config_print_help(FILE *f);

/** Map a bearer token to its user; NULL when unknown (constant-time compare). */
const char *reel_server_config_user_for_token(const ReelServerConfig *cfg, const char *token);

/** 1 if s is a safe id: 1..128 bytes of [A-Za-z0-9_.-], not starting with '.', no "..". */
int reel_server_id_valid(const char *s);

#endif
