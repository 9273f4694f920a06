/*
 * config.c - the settings table of `clipreel serve` and its three sources.
 *
 * One row per setting: its name in the config file (dotted for nested
 * objects), its flag, its environment variable, how to parse it and where it
 * goes. The file loader flattens the JSON into dotted names and feeds them to
 * reel_server_config_set(), exactly as the environment and the flags do, so
 * the three sources cannot drift apart.
 */
#include "server/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "core/error.h"
#include "upscale/upscale.h"

typedef enum OptType {
    OPT_INT,     /**< int in [lo, hi] */
    OPT_SIZE,    /**< int64 bytes, with an optional K/M/G suffix (powers of 1024) */
    OPT_DOUBLE,  /**< double in [lo, hi] */
    OPT_STR,     /**< char[] of the given size */
    OPT_ONOFF,   /**< on/off, true/false, yes/no, 1/0 */
    OPT_RESTART, /**< rerun|fail */
    OPT_UPSCALE, /**< job|auto|always|off */
    OPT_STORAGE, /**< local|s3 */
} OptType;

typedef struct Opt {
    const char *name;
    const char *flag; /**< NULL: no flag (secrets) */
    const char *env;
    OptType type;
    size_t offset;
    size_t size; /**< OPT_STR buffer size */
    double lo, hi;
    const char *help;
} Opt;

#define F(field) offsetof(ReelServerConfig, field), sizeof(((ReelServerConfig *)0)->field)

static const Opt opts[] = {
    {"listen", "--listen", "CLIPREEL_LISTEN", OPT_STR, F(listen), 0, 0,
     "IPv4 address to listen on (default 127.0.0.1)"},
    {"port", "--port", "CLIPREEL_PORT", OPT_INT, F(port), 0, 65535,
     "TCP port (default 8000; 0 = any free port, printed at start)"},
    {"data", "--data", "CLIPREEL_DATA", OPT_STR, F(data_dir), 0, 0,
     "data folder: jobs.db, objects/, tmp/, work/ (default ./data)"},
    {"models", "--models", "CLIPREEL_MODELS", OPT_STR, F(models_dir), 0, 0,
     "model weights folder (default $CLIPREEL_MODELS or ./models)"},
    {"workers", "--workers", "CLIPREEL_WORKERS", OPT_INT, F(workers), 1, 64,
     "exports running at once (default 1)"},
    {"queue", "--queue", "CLIPREEL_QUEUE", OPT_INT, F(queue), 0, 100000,
     "exports waiting beyond the running ones; more gets 503 (default 16)"},
    {"auth", "--auth", "CLIPREEL_AUTH", OPT_ONOFF, F(auth), 0, 0,
     "on: bearer tokens required; off: X-User-ID header, loopback only"
     " (default on when tokens are configured, else off)"},
    {"on_restart", "--on-restart", "CLIPREEL_ON_RESTART", OPT_RESTART, F(on_restart), 0, 0,
     "exports interrupted while processing: rerun or fail (default rerun)"},
    {"max_attempts", "--max-attempts", "CLIPREEL_MAX_ATTEMPTS", OPT_INT, F(max_attempts), 1, 100,
     "an export interrupted this many times fails instead of running again (default 3)"},
    {"upscale", "--upscale", "CLIPREEL_UPSCALE", OPT_UPSCALE, F(upscale), 0, 0,
     "force the upscale mode of every export: job, auto, always, off (default job)"},
    {"http_threads", "--http-threads", "CLIPREEL_HTTP_THREADS", OPT_INT, F(http_threads), 32, 4096,
     "HTTP threads, all started at once; every open WebSocket holds one, 16 stay for plain"
     " requests (default 160)"},
    {"engine_threads", "--engine-threads", "CLIPREEL_ENGINE_THREADS", OPT_INT, F(engine_threads), 0,
     1024, "threads per export (default 0 = all cores)"},
    {"engine_lanes", "--engine-lanes", "CLIPREEL_ENGINE_LANES", OPT_INT, F(engine_lanes), 0,
     REEL_UPSCALE_MAX_LANES,
     "model lanes per export: frames upscaled side by side, each lane holding its own copy of"
     " the model's buffers (default 0 = one per thread, at most 4; 1 = least memory)"},
    {"limits.max_upload", "--max-upload", "CLIPREEL_MAX_UPLOAD", OPT_SIZE, F(max_upload), 1,
     (double)INT64_MAX, "largest request body, bytes, K/M/G suffixes (default 4G); more gets 413"},
    {"limits.max_source", "--max-source", "CLIPREEL_MAX_SOURCE", OPT_SIZE, F(max_source), 1,
     (double)INT64_MAX, "largest uploaded file (default = max_upload)"},
    {"limits.max_clips", "--max-clips", "CLIPREEL_MAX_CLIPS", OPT_INT, F(limits.max_clips), 1,
     10000, "most clips per export (default 100)"},
    {"limits.max_clip_seconds", "--max-clip-seconds", "CLIPREEL_MAX_CLIP_SECONDS", OPT_DOUBLE,
     F(limits.max_clip_seconds), 0.001, 1e9, "longest source span one clip may use (default 3600)"},
    {"limits.max_width", "--max-width", "CLIPREEL_MAX_WIDTH", OPT_INT, F(limits.max_width), 16,
     16384, "widest output (default 7680)"},
    {"limits.max_height", "--max-height", "CLIPREEL_MAX_HEIGHT", OPT_INT, F(limits.max_height), 16,
     16384, "tallest output (default 4320)"},
    {"storage.kind", "--storage", "CLIPREEL_STORAGE", OPT_STORAGE, F(storage_kind), 0, 0,
     "object store: local or s3 (default local)"},
    {"storage.root", "--storage-root", "CLIPREEL_STORAGE_ROOT", OPT_STR, F(storage_root), 0, 0,
     "local store folder (default <data>/objects)"},
    {"storage.endpoint", "--s3-endpoint", "CLIPREEL_S3_ENDPOINT", OPT_STR, F(s3_endpoint), 0, 0,
     "S3/R2 endpoint URL"},
    {"storage.bucket", "--s3-bucket", "CLIPREEL_S3_BUCKET", OPT_STR, F(s3_bucket), 0, 0,
     "S3 bucket"},
    {"storage.region", "--s3-region", "CLIPREEL_S3_REGION", OPT_STR, F(s3_region), 0, 0,
     "S3 region (\"auto\" for R2; default us-east-1)"},
    {"storage.path_style", "--s3-path-style", "CLIPREEL_S3_PATH_STYLE", OPT_ONOFF, F(s3_path_style),
     0, 0, "endpoint/bucket/key addressing (default on)"},
    {"storage.access_key", NULL, "CLIPREEL_S3_ACCESS_KEY", OPT_STR, F(s3_access_key), 0, 0,
     "S3 access key id (file or environment only)"},
    {"storage.secret_key", NULL, "CLIPREEL_S3_SECRET_KEY", OPT_STR, F(s3_secret_key), 0, 0,
     "S3 secret key (file or environment only)"},
    {"redis", "--redis", "CLIPREEL_REDIS", OPT_STR, F(redis), 0, 0,
     "redis://[[user]:password@]host[:port][/db]: hand exports to `clipreel worker`s"
     " (docs/scaleout.md); default: run them in this process"},
    {"plan_config", "--plan-config", "CLIPREEL_PLAN_CONFIG", OPT_STR, F(plan_config), 0, 0,
     "with --redis: the planner's thresholds and cost table, a JSON file (docs/planner.md);"
     " default: the built-in table"},
    {"redis_fallback", "--redis-fallback", "CLIPREEL_REDIS_FALLBACK", OPT_ONOFF, F(redis_fallback),
     0, 0,
     "when Redis is unreachable at submission: on = run the export here (default),"
     " off = fail it"},
    {"storage.presign_ttl_s", "--presign-ttl", "CLIPREEL_PRESIGN_TTL", OPT_INT, F(presign_ttl_s),
     60, 7 * 24 * 3600, "lifetime of the S3 redirect URLs, seconds (default 3600)"},
};

#define NB_OPTS (sizeof(opts) / sizeof(opts[0]))

void reel_server_config_init(ReelServerConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->listen, sizeof(cfg->listen), "127.0.0.1");
    cfg->port = 8000;
    snprintf(cfg->data_dir, sizeof(cfg->data_dir), "data");
    cfg->workers = 1;
    cfg->queue = 16;
    cfg->max_upload = (int64_t)4 << 30;
    cfg->max_source = 0; /* = max_upload, resolved in finish */
    cfg->auth = 0;
    cfg->on_restart = REEL_RESTART_RERUN;
    cfg->max_attempts = 3;
    cfg->upscale = -1;
    cfg->http_threads = 160;
    reel_job_limits_default(&cfg->limits);
    snprintf(cfg->storage_kind, sizeof(cfg->storage_kind), "local");
    cfg->s3_path_style = 1;
    cfg->presign_ttl_s = 3600;
    cfg->redis_fallback = 1;
}

int reel_server_id_valid(const char *s)
{
    size_t n = 0;

    if (!s || !*s || s[0] == '.' || strstr(s, ".."))
        return 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!(isalnum(c) || c == '_' || c == '.' || c == '-') || n >= 128)
            return 0;
    }
    return 1;
}

static int add_token(ReelServerConfig *cfg, const char *token, const char *user, char *errmsg)
{
    if (!token || strlen(token) < 8)
        return reel_fail(errmsg, REEL_ERR(EINVAL),
                         "tokens: a token must have at least 8 characters");
    if (!reel_server_id_valid(user))
        return reel_fail(errmsg, REEL_ERR(EINVAL),
                         "tokens: user id '%s' must be 1-128 characters of A-Z a-z 0-9 _ . -",
                         user ? user : "");
    if (cfg->nb_tokens == REEL_CONFIG_MAX_TOKENS)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "tokens: more than %d tokens",
                         REEL_CONFIG_MAX_TOKENS);
    SHA256((const unsigned char *)token, strlen(token), cfg->tokens[cfg->nb_tokens].sha256);
    snprintf(cfg->tokens[cfg->nb_tokens].user, sizeof(cfg->tokens[0].user), "%s", user);
    cfg->nb_tokens++;
    return 0;
}

const char *reel_server_config_user_for_token(const ReelServerConfig *cfg, const char *token)
{
    unsigned char h[32];
    const char *user = NULL;

    if (!token || !*token)
        return NULL;
    SHA256((const unsigned char *)token, strlen(token), h);
    /* Compare against every entry without an early exit: no timing oracle. */
    for (int i = 0; i < cfg->nb_tokens; i++)
        if (!CRYPTO_memcmp(h, cfg->tokens[i].sha256, sizeof(h)) && !user)
            user = cfg->tokens[i].user;
    return user;
}

/* "tok1=alice,tok2=bob" (CLIPREEL_TOKENS). */
static int parse_token_list(ReelServerConfig *cfg, const char *list, char *errmsg)
{
    char *copy = strdup(list), *p, *next, *eq;
    int ret = 0;

    if (!copy)
        return REEL_ERR(ENOMEM);
    for (p = copy; p && ret == 0; p = next) {
        if ((next = strchr(p, ',')))
            *next++ = 0;
        if (!*p)
            continue;
        if (!(eq = strrchr(p, '='))) {
            ret = reel_fail(errmsg, REEL_ERR(EINVAL), "CLIPREEL_TOKENS: expected TOKEN=USER pairs");
            break;
        }
        *eq = 0;
        ret = add_token(cfg, p, eq + 1, errmsg);
    }
    free(copy);
    return ret;
}

static int parse_size(const char *v, int64_t *out)
{
    char *end;
    double x;

    errno = 0;
    x = strtod(v, &end);
    if (end == v || errno || x < 0)
        return -1;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        x *= 1024;
        end++;
        break;
    case 'M':
        x *= 1024.0 * 1024;
        end++;
        break;
    case 'G':
        x *= 1024.0 * 1024 * 1024;
        end++;
        break;
    case 'T':
        x *= 1024.0 * 1024 * 1024 * 1024;
        end++;
        break;
    default:
        break;
    }
    if (toupper((unsigned char)*end) == 'B' || toupper((unsigned char)*end) == 'I')
        end++;
    if (*end || x > 9.2e18)
        return -1;
    *out = (int64_t)x;
    return 0;
}

static const Opt *find_opt(const char *name)
{
    for (size_t i = 0; i < NB_OPTS; i++)
        if (!strcmp(opts[i].name, name))
            return &opts[i];
    return NULL;
}

int reel_server_config_set(ReelServerConfig *cfg, const char *name, const char *value, char *errmsg)
{
    const Opt *o;
    char *base = (char *)cfg, *end;

    if (!strncmp(name, "tokens.", 7))
        return add_token(cfg, name + 7, value, errmsg);
    if (!(o = find_opt(name)))
        return reel_fail(errmsg, REEL_ERR(EINVAL), "unknown setting '%s'", name);
    if (!value)
        value = "";
    switch (o->type) {
    case OPT_INT: {
        long v;
        errno = 0;
        v = strtol(value, &end, 10);
        if (end == value || *end || errno || v < o->lo || v > o->hi)
            return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: '%s' is not an integer in %.0f..%.0f",
                             name, value, o->lo, o->hi);
        *(int *)(base + o->offset) = (int)v;
        break;
    }
    case OPT_DOUBLE: {
        double v;
        errno = 0;
        v = strtod(value, &end);
        if (end == value || *end || errno || !(v >= o->lo && v <= o->hi))
            return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: '%s' is not a number in %g..%g", name,
                             value, o->lo, o->hi);
        *(double *)(base + o->offset) = v;
        break;
    }
    case OPT_SIZE: {
        int64_t v;
        if (parse_size(value, &v) < 0 || v < (int64_t)o->lo)
            return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: '%s' is not a size in bytes", name,
                             value);
        *(int64_t *)(base + o->offset) = v;
        break;
    }
    case OPT_STR:
        if (strlen(value) >= o->size)
            return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: longer than %zu bytes", name,
                             o->size - 1);
        memcpy(base + o->offset, value, strlen(value) + 1);
        break;
    case OPT_ONOFF: {
        int v;
        if (!strcasecmp(value, "on") || !strcasecmp(value, "true") || !strcasecmp(value, "yes") ||
            !strcmp(value, "1"))
            v = 1;
        else if (!strcasecmp(value, "off") || !strcasecmp(value, "false") ||
                 !strcasecmp(value, "no") || !strcmp(value, "0"))
            v = 0;
        else
            return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: '%s' is not on or off", name, value);
        *(int *)(base + o->offset) = v;
        if (o->offset == offsetof(ReelServerConfig, auth))
            cfg->auth_set = 1;
        break;
    }
    case OPT_RESTART:
        if (!strcasecmp(value, "rerun"))
            cfg->on_restart = REEL_RESTART_RERUN;
        else if (!strcasecmp(value, "fail"))
            cfg->on_restart = REEL_RESTART_FAIL;
        else
            return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: '%s' is not rerun or fail", name,
                             value);
        break;
    case OPT_UPSCALE:
        if (!strcasecmp(value, "job"))
            cfg->upscale = -1;
        else if (!strcasecmp(value, "auto"))
            cfg->upscale = REEL_UPSCALE_AUTO;
        else if (!strcasecmp(value, "always"))
            cfg->upscale = REEL_UPSCALE_ALWAYS;
        else if (!strcasecmp(value, "off"))
            cfg->upscale = REEL_UPSCALE_OFF;
        else
            return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: '%s' is not job, auto, always or off",
                             name, value);
        break;
    case OPT_STORAGE:
        if (strcasecmp(value, "local") && strcasecmp(value, "s3"))
            return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: '%s' is not local or s3", name, value);
        snprintf(cfg->storage_kind, sizeof(cfg->storage_kind), "%s",
                 strcasecmp(value, "s3") ? "local" : "s3");
        break;
    }
    return 0;
}

/* Flatten one JSON value into reel_server_config_set calls. */
static int load_value(ReelServerConfig *cfg, const char *name, json_t *v, const char *path,
                      char *errmsg)
{
    char text[64];
    const char *s = text;

    if (!strcmp(name, "tokens")) {
        const char *token;
        json_t *user;
        if (!json_is_object(v))
            return reel_fail(errmsg, REEL_ERR(EINVAL),
                             "%s: tokens must be an object {\"TOKEN\": \"user\"}", path);
        json_object_foreach(v, token, user)
        {
            int ret;
            if (!json_is_string(user))
                return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: tokens: user ids are strings",
                                 path);
            if ((ret = add_token(cfg, token, json_string_value(user), errmsg)) < 0)
                return ret;
        }
        return 0;
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *sub;
        json_object_foreach(v, key, sub)
        {
            char full[128];
            int ret;
            snprintf(full, sizeof(full), "%s%s%s", name, *name ? "." : "", key);
            if ((ret = load_value(cfg, full, sub, path, errmsg)) < 0)
                return ret;
        }
        return 0;
    }
    if (json_is_string(v))
        s = json_string_value(v);
    else if (json_is_true(v))
        s = "on";
    else if (json_is_false(v))
        s = "off";
    else if (json_is_integer(v))
        snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(text, sizeof(text), "%.17g", json_real_value(v));
    else
        return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: %s: unsupported value type", path, name);
    {
        char inner[REEL_ERRMSG_SIZE];
        int ret = reel_server_config_set(cfg, name, s, inner);
        if (ret < 0)
            return reel_fail(errmsg, ret, "%s: %s", path, inner);
    }
    return 0;
}

int reel_server_config_load_file(ReelServerConfig *cfg, const char *path, char *errmsg)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    int ret;

    if (!root)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: line %d column %d: %s", path, jerr.line,
                         jerr.column, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: the config must be a JSON object", path);
    }
    ret = load_value(cfg, "", root, path, errmsg);
    json_decref(root);
    return ret;
}

int reel_server_config_load_env(ReelServerConfig *cfg, char *errmsg)
{
    const char *v;
    int ret;

    for (size_t i = 0; i < NB_OPTS; i++) {
        if (!(v = getenv(opts[i].env)))
            continue;
        if ((ret = reel_server_config_set(cfg, opts[i].name, v, errmsg)) < 0)
            return ret;
    }
    if ((v = getenv("CLIPREEL_TOKENS")) && *v)
        return parse_token_list(cfg, v, errmsg);
    return 0;
}

const char *reel_server_config_flag(const char *flag)
{
    for (size_t i = 0; i < NB_OPTS; i++)
        if (opts[i].flag && !strcmp(opts[i].flag, flag))
            return opts[i].name;
    return NULL;
}

int reel_server_config_finish(ReelServerConfig *cfg, char *errmsg)
{
    unsigned a, b, c, d;
    char tail;

    if (sscanf(cfg->listen, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 ||
        c > 255 || d > 255)
        return reel_fail(errmsg, REEL_ERR(EINVAL),
                         "listen: '%s' is not an IPv4 address (this civetweb has no IPv6)",
                         cfg->listen);
    if (!cfg->data_dir[0])
        return reel_fail(errmsg, REEL_ERR(EINVAL), "data: a data folder is required");
    if (!cfg->max_source || cfg->max_source > cfg->max_upload)
        cfg->max_source = cfg->max_upload;
    if (!cfg->auth_set)
        cfg->auth = cfg->nb_tokens > 0;
    if (cfg->auth && cfg->nb_tokens == 0)
        return reel_fail(errmsg, REEL_ERR(EINVAL),
                         "auth: on, but no tokens are configured (config file \"tokens\" or"
                         " CLIPREEL_TOKENS)");
    if (!cfg->auth && a != 127)
        return reel_fail(errmsg, REEL_ERR(EINVAL),
                         "auth: off is only allowed on a loopback address (listen is %s);"
                         " configure tokens",
                         cfg->listen);
    if (!cfg->storage_root[0]) {
        int n = snprintf(cfg->storage_root, sizeof(cfg->storage_root), "%s/objects", cfg->data_dir);
        if (n < 0 || (size_t)n >= sizeof(cfg->storage_root))
            return reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "data: path too long");
    }
    if (!strcmp(cfg->storage_kind, "s3") && (!cfg->s3_endpoint[0] || !cfg->s3_bucket[0]))
        return reel_fail(errmsg, REEL_ERR(EINVAL),
                         "storage: s3 needs storage.endpoint and storage.bucket");
    return 0;
}

void reel_server_config_print_help(FILE *f)
{
    fprintf(f, "settings (flag / environment variable / config file key):\n");
    for (size_t i = 0; i < NB_OPTS; i++) {
        char left[96];
        snprintf(left, sizeof(left), "%s%s%s", opts[i].flag ? opts[i].flag : "",
                 opts[i].flag ? " " : "", opts[i].type == OPT_ONOFF ? "on|off" : "V");
        fprintf(f, "  %-26s %-26s %s\n      %s\n", opts[i].flag ? left : "(no flag)", opts[i].env,
                opts[i].name, opts[i].help);
    }
    fprintf(f, "  %-26s %-26s %s\n      %s\n", "(no flag)", "CLIPREEL_TOKENS", "tokens",
            "bearer tokens: env TOKEN=USER,TOKEN=USER; file {\"TOKEN\": \"user\"}");
}
