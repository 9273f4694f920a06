/*
 * cli_serve.c - `clipreel serve`: run the export service until SIGINT/SIGTERM.
 *
 * Settings come from, lowest to highest: built-in defaults, the JSON config
 * file (--config or CLIPREEL_CONFIG), CLIPREEL_* environment variables, flags.
 * Once listening it prints one line to stdout,
 *     clipreel serve: listening on http://127.0.0.1:8000
 * (with the real port when --port 0 asked for any free one), which scripts and
 * tests wait for.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "core/log.h"
#include "server/config.h"
#include "server/server.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: clipreel serve [--port N] [--data DIR] [--config FILE] [--workers N]\n"
               "                      [--queue N] [--max-upload BYTES] [--auth on|off]\n"
               "                      [--models DIR] [--on-restart rerun|fail] [-v|-q] ...\n"
               "\n"
               "Serve the Reel Ballers multi-clip export API (POST /api/export/multi-clip,\n"
               "WS /ws/export/{id}, GET/DELETE /api/exports/{id}, ...) and a web page at /.\n"
               "Defaults: local object store <data>/objects, SQLite jobs <data>/jobs.db,\n"
               "in-process workers. Precedence: flags > environment > config file > defaults.\n"
               "See docs/service.md.\n\n");
    reel_server_config_print_help(f);
    fprintf(f, "\n  --config FILE   (CLIPREEL_CONFIG) JSON config file\n"
               "  -v, --verbose   debug logging;  -q, --quiet  warnings and errors only\n");
}

int reel_cli_serve(int argc, char **argv)
{
    ReelServerConfig cfg;
    ReelServer *srv = NULL;
    char errmsg[REEL_ERRMSG_SIZE];
    const char *config = getenv("CLIPREEL_CONFIG");
    sigset_t set;
    int sig, level = REEL_LOG_INFO;

    /* First pass: what decides how to read the rest. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
            level = REEL_LOG_DEBUG;
        } else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) {
            level = REEL_LOG_WARNING;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            config = argv[i] + 9;
        }
    }
    /* Configuration errors are printed once, below, not also logged by reel_fail. */
    reel_log_set_level(REEL_LOG_QUIET);

    reel_server_config_init(&cfg);
    if (config && *config && reel_server_config_load_file(&cfg, config, errmsg) < 0)
        goto bad;
    if (reel_server_config_load_env(&cfg, errmsg) < 0)
        goto bad;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '='), *name, *value;
        char flag[64];
        if (!strcmp(arg, "-v") || !strcmp(arg, "--verbose") || !strcmp(arg, "-q") ||
            !strcmp(arg, "--quiet"))
            continue;
        if (!strcmp(arg, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(arg, "--config=", 9))
            continue;
        snprintf(flag, sizeof(flag), "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
        if (!(name = reel_server_config_flag(flag))) {
            fprintf(stderr, "clipreel serve: unknown option '%s' (see --help)\n", arg);
            return 2;
        }
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "clipreel serve: %s needs a value\n", flag);
            return 2;
        }
        if (reel_server_config_set(&cfg, name, value, errmsg) < 0)
            goto bad;
    }
    if (reel_server_config_finish(&cfg, errmsg) < 0)
        goto bad;
    reel_log_set_level(level);

    /* Signals are taken by sigwait below: block them before any thread starts. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    if (reel_server_start(&srv, &cfg, errmsg) < 0)
        return 1; /* reel_fail has logged why */
    printf("clipreel serve: listening on http://%s:%d\n", cfg.listen, reel_server_port(srv));
    fflush(stdout);
    while (sigwait(&set, &sig) != 0)
        ;
    reel_log(REEL_LOG_INFO, "server",
             "signal %d: stopping (running exports resume at the next"
             " start)",
             sig);
    reel_server_stop(&srv);
    return 0;

bad:
    fprintf(stderr, "clipreel serve: %s\n", errmsg);
    return 2;
}
