/*
 * cli_worker.c - `clipreel worker`: serve one GPU class's Redis stream
 * (src/jobs/worker.h, docs/scaleout.md).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/error.h"
#include "core/log.h"
#include "jobs/worker.h"
#include "storage/storage.h"
#include "upscale/upscale.h"

static ReelWorker *g_worker;

static void on_signal(int sig)
{
    (void)sig;
    if (g_worker)
        reel_worker_stop(g_worker);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipreel worker --redis URL [--gpu-class t4] [store options] [options]\n"
            "\n"
            "Take exports from the Redis stream clipreel:jobs:<class> (consumer group\n"
            "\"workers\"), run them, upload the results to the object store and publish\n"
            "progress and the result through Redis. Protocol: docs/scaleout.md.\n"
            "\n"
            "  --redis URL            redis://[[user]:password@]host[:port][/db] (or $CLIPREEL_REDIS)\n"
            "  --gpu-class NAME       the stream to serve (default t4)\n"
            "  --claim-idle-ms N      reclaim an export whose worker went silent this long (30000)\n"
            "  --max-attempts N       attempts before an export fails (3)\n"
            "  --concurrency N        exports at once in this process (1)\n"
            "  --models DIR           model folder (default $CLIPREEL_MODELS or models)\n"
            "  --upscale MODE         force auto|always|off for every export\n"
            "  --work-dir DIR         scratch folder (default $TMPDIR/clipreel-worker)\n"
            "  --threads N            engine threads (0 = all cores)\n"
            "  --lanes N              model lanes per export (0 = one per thread, at most 4;\n"
            "                         1 = least memory)\n"
            "store (shared with the service):\n"
            "  --store-config FILE    JSON {\"kind\": \"local|s3\", \"root\", \"endpoint\", \"bucket\",\n"
            "                         \"region\", \"access_key\", \"secret_key\", \"path_style\"}\n"
            "  --store-root DIR       local store at DIR\n"
            "  --s3-endpoint URL --s3-bucket NAME [--s3-region R]   S3-compatible store; keys\n"
            "                         from $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY\n"
            "  -v, --verbose / -q, --quiet\n");
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* Strings of the store config live in this JSON object until the store is open. */
static int load_store_config(const char *path, ReelStoreConfig *sc, json_t **keep)
{
    json_error_t e;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    json_t *ps;

    if (!json_is_object(o)) {
        fprintf(stderr, "clipreel worker: %s: %s (line %d)\n", path,
                o ? "expected an object" : e.text, e.line);
        json_decref(o);
        return -1;
    }
    sc->kind = json_string_value(json_object_get(o, "kind"));
    sc->root = json_string_value(json_object_get(o, "root"));
    sc->endpoint = json_string_value(json_object_get(o, "endpoint"));
    sc->bucket = json_string_value(json_object_get(o, "bucket"));
    sc->region = json_string_value(json_object_get(o, "region"));
    sc->access_key = json_string_value(json_object_get(o, "access_key"));
    sc->secret_key = json_string_value(json_object_get(o, "secret_key"));
    if ((ps = json_object_get(o, "path_style")))
        sc->path_style = json_is_true(ps) || json_integer_value(ps) != 0;
    *keep = o;
    return 0;
}

int reel_cli_worker(int argc, char **argv)
{
    enum { O_REDIS = 256, O_CLASS, O_IDLE, O_ATTEMPTS, O_CONC, O_MODELS, O_UPSCALE, O_WORK,
           O_THREADS, O_LANES, O_STORECFG, O_ROOT, O_S3EP, O_S3B, O_S3R };
    static const struct option opts[] = {
        {"redis", required_argument, 0, O_REDIS},
        {"gpu-class", required_argument, 0, O_CLASS},
        {"claim-idle-ms", required_argument, 0, O_IDLE},
        {"max-attempts", required_argument, 0, O_ATTEMPTS},
        {"concurrency", required_argument, 0, O_CONC},
        {"models", required_argument, 0, O_MODELS},
        {"upscale", required_argument, 0, O_UPSCALE},
        {"work-dir", required_argument, 0, O_WORK},
        {"threads", required_argument, 0, O_THREADS},
        {"lanes", required_argument, 0, O_LANES},
        {"store-config", required_argument, 0, O_STORECFG},
        {"store-root", required_argument, 0, O_ROOT},
        {"s3-endpoint", required_argument, 0, O_S3EP},
        {"s3-bucket", required_argument, 0, O_S3B},
        {"s3-region", required_argument, 0, O_S3R},
        {"verbose", no_argument, 0, 'v'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    ReelWorkerConfig wc = {.gpu_class = "t4", .upscale = -1};
    ReelStoreConfig sc = {.kind = "local", .root = "data/objects", .path_style = 1};
    ReelStore *store = NULL;
    ReelWorkerStats st;
    json_t *store_json = NULL;
    struct sigaction sa;
    char err[REEL_ERRMSG_SIZE] = "";
    int c, ret, status = 1;

    wc.redis_url = getenv("CLIPREEL_REDIS");
    optind = 1;
    while ((c = getopt_long(argc, argv, "vqh", opts, NULL)) != -1) {
        switch (c) {
        case O_REDIS:
            wc.redis_url = optarg;
            break;
        case O_CLASS:
            wc.gpu_class = optarg;
            break;
        case O_IDLE:
            if (parse_int(optarg, 100, 86400000, &wc.claim_idle_ms) < 0) {
                fprintf(stderr, "clipreel worker: --claim-idle-ms must be 100-86400000\n");
                return 2;
            }
            break;
        case O_ATTEMPTS:
            if (parse_int(optarg, 1, 100, &wc.max_attempts) < 0) {
                fprintf(stderr, "clipreel worker: --max-attempts must be 1-100\n");
                return 2;
            }
            break;
        case O_CONC:
            if (parse_int(optarg, 1, 64, &wc.concurrency) < 0) {
                fprintf(stderr, "clipreel worker: --concurrency must be 1-64\n");
                return 2;
            }
            break;
        case O_MODELS:
            wc.model_dir = optarg;
            break;
        case O_UPSCALE:
            if (!strcmp(optarg, "auto"))
                wc.upscale = 0;
            else if (!strcmp(optarg, "always"))
                wc.upscale = 1;
            else if (!strcmp(optarg, "off"))
                wc.upscale = 2;
            else {
                fprintf(stderr, "clipreel worker: --upscale must be auto, always or off\n");
                return 2;
            }
            break;
        case O_WORK:
            wc.work_dir = optarg;
            break;
        case O_THREADS:
            if (parse_int(optarg, 0, 256, &wc.engine_threads) < 0) {
                fprintf(stderr, "clipreel worker: --threads must be 0-256\n");
                return 2;
            }
            break;
        case O_LANES:
            if (parse_int(optarg, 0, REEL_UPSCALE_MAX_LANES, &wc.engine_lanes) < 0) {
                fprintf(stderr, "clipreel worker: --lanes must be 0-%d\n", REEL_UPSCALE_MAX_LANES);
                return 2;
            }
            break;
        case O_STORECFG:
            json_decref(store_json);
            store_json = NULL;
            if (load_store_config(optarg, &sc, &store_json) < 0)
                return 2;
            break;
        case O_ROOT:
            sc.kind = "local";
            sc.root = optarg;
            break;
        case O_S3EP:
            sc.kind = "s3";
            sc.endpoint = optarg;
            break;
        case O_S3B:
            sc.kind = "s3";
            sc.bucket = optarg;
            break;
        case O_S3R:
            sc.region = optarg;
            break;
        case 'v':
            reel_log_set_level(REEL_LOG_INFO);
            break;
        case 'q':
            reel_log_set_level(REEL_LOG_ERROR);
            break;
        case 'h':
            usage(stdout);
            json_decref(store_json);
            return 0;
        default:
            usage(stderr);
            json_decref(store_json);
            return 2;
        }
    }
    if (optind != argc || !wc.redis_url) {
        fprintf(stderr, "clipreel worker: --redis URL is required\n");
        usage(stderr);
        json_decref(store_json);
        return 2;
    }
    if (!strcmp(sc.kind, "s3")) {
        if (!sc.access_key)
            sc.access_key = getenv("AWS_ACCESS_KEY_ID");
        if (!sc.secret_key)
            sc.secret_key = getenv("AWS_SECRET_ACCESS_KEY");
    }
    if ((ret = reel_store_open(&store, &sc, err)) < 0) {
        fprintf(stderr, "clipreel worker: store: %s\n", err);
        goto end;
    }
    wc.store = store;
    if ((ret = reel_worker_create(&g_worker, &wc, err)) < 0) {
        fprintf(stderr, "clipreel worker: %s\n", err);
        goto end;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((ret = reel_worker_run(g_worker, err)) < 0) {
        fprintf(stderr, "clipreel worker: %s\n", err);
        goto end;
    }
    reel_worker_stats(g_worker, &st);
    fprintf(stderr,
            "clipreel worker: completed=%lld failed=%lld retried=%lld lost=%lld duplicates=%lld "
            "models_loaded=%lld\n",
            (long long)st.completed, (long long)st.failed, (long long)st.retried,
            (long long)st.lost, (long long)st.duplicates, (long long)st.models_loaded);
    status = 0;
end:
    reel_worker_free(&g_worker);
    reel_store_close(&store);
    json_decref(store_json);
    return status;
}
