/*
 * cli_submit.c - `clipreel submit JOB.json --server URL`: run an export on a
 * clipreel server as the editor would (WebSocket first, then the multipart
 * POST of the clips), show its progress like `clipreel export`, and download
 * the result with -o. Ctrl-C cancels the export on the server.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/error.h"
#include "core/log.h"
#include "server/client.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted++;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: clipreel submit JOB.json --server URL [-o OUT.mp4] [options]\n"
               "\n"
               "Upload the clips of an engine-shape job file (sources are local paths) to a\n"
               "`clipreel serve` server, follow the export and download the result.\n"
               "\n"
               "  --server URL          http://host:port of the server (or $CLIPREEL_SERVER)\n"
               "  -o, --output FILE     download the reel here (+ FILE's .chapters.vtt)\n"
               "  --token TOKEN         bearer token (or $CLIPREEL_TOKEN)\n"
               "  --user ID             X-User-ID for a server with auth off\n"
               "  --id EXPORT_ID        export id (default: export_<ms>_<random>)\n"
               "  --project ID          project_id form field\n"
               "  --name NAME           project_name form field (default: the job file name)\n"
               "  --progress bar|json|none   as `clipreel export` (default bar)\n"
               "  --timeout S           give up waiting after S seconds (default: never)\n"
               "  --no-wait             print the export id once accepted and exit\n"
               "  -v, --verbose         log the client's retries and reconnections\n"
               "exit status: 0 complete, 1 failed or cancelled, 2 usage\n");
}

typedef struct Follow {
    ReelCliProgress bar;
} Follow;

static void on_frame(void *opaque, const ReelClientFrame *f)
{
    Follow *fo = opaque;
    ReelProgress p = {0};

    p.phase = reel_cli_phase_from_name(f->phase);
    if (!strcmp(f->status, "complete"))
        p.phase = REEL_PHASE_COMPLETE;
    p.clip = f->clip;
    p.total_clips = f->total_clips;
    p.frames_done = f->current_frame;
    p.frames_total = f->total_frames;
    p.percent = f->progress;
    p.eta_s = f->eta_s;
    p.message = f->message;
    reel_cli_progress_update(&fo->bar, &p);
}

/* OUT.mp4 -> OUT.chapters.vtt (as `clipreel export` names it). */
static void chapters_name(char *dst, size_t size, const char *out)
{
    const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    int stem = dot && (!slash || dot > slash) ? (int)(dot - out) : (int)strlen(out);

    snprintf(dst, size, "%.*s.chapters.vtt", stem, out);
}

int reel_cli_submit(int argc, char **argv)
{
    ReelClientOptions opt = {0};
    ReelClientSubmission sub = {0};
    ReelClientWatch *watch = NULL;
    ReelCliProgressMode mode = REEL_CLI_PROGRESS_BAR;
    Follow fo;
    const char *job = NULL, *out = NULL, *id = NULL, *project = NULL, *name = NULL;
    char errmsg[REEL_ERRMSG_SIZE] = "";
    int timeout = 0, no_wait = 0, status = 0, duplicate = 0, ret, cancel_sent = 0;
    int64_t waited = 0;
    int verbose = 0;

    opt.server = getenv("CLIPREEL_SERVER");
    opt.token = getenv("CLIPREEL_TOKEN");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--server") && has) {
            opt.server = argv[++i];
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has) {
            out = argv[++i];
        } else if (!strcmp(a, "--token") && has) {
            opt.token = argv[++i];
        } else if (!strcmp(a, "--user") && has) {
            opt.user = argv[++i];
        } else if (!strcmp(a, "--id") && has) {
            id = argv[++i];
        } else if (!strcmp(a, "--project") && has) {
            project = argv[++i];
        } else if (!strcmp(a, "--name") && has) {
            name = argv[++i];
        } else if (!strcmp(a, "--progress") && has) {
            if (reel_cli_progress_parse_mode(argv[++i], &mode) < 0) {
                fprintf(stderr, "clipreel submit: --progress: bar, json or none\n");
                return 2;
            }
        } else if (!strcmp(a, "--timeout") && has) {
            timeout = (int)strtol(argv[++i], NULL, 10);
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = 1;
        } else if (!strcmp(a, "--no-wait")) {
            no_wait = 1;
        } else if (a[0] == '-') {
            fprintf(stderr, "clipreel submit: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (!job) {
            job = a;
        } else {
            fprintf(stderr, "clipreel submit: one job file only\n");
            return 2;
        }
    }
    if (!job || !opt.server || !*opt.server) {
        usage(stderr);
        return 2;
    }
    /* Errors are printed once by this command; -v adds the client's own log. */
    reel_log_set_level(verbose ? REEL_LOG_DEBUG : REEL_LOG_QUIET);
    reel_client_global_init();
    if (reel_client_job_load(&sub, job, errmsg) < 0) {
        fprintf(stderr, "clipreel submit: %s\n", errmsg);
        return 1;
    }
    if (id)
        snprintf(sub.export_id, sizeof(sub.export_id), "%s", id);
    else
        reel_client_make_export_id(sub.export_id, sizeof(sub.export_id));
    if (project)
        snprintf(sub.project_id, sizeof(sub.project_id), "%s", project);
    if (name) {
        snprintf(sub.project_name, sizeof(sub.project_name), "%s", name);
    } else {
        const char *base = strrchr(job, '/');
        snprintf(sub.project_name, sizeof(sub.project_name), "%s", base ? base + 1 : job);
    }

    reel_cli_progress_init(&fo.bar, no_wait ? REEL_CLI_PROGRESS_NONE : mode);
    /* As the editor: the progress channel first, so that no frame is missed. */
    if (!no_wait &&
        reel_client_watch_open(&watch, &opt, sub.export_id, on_frame, &fo, errmsg) < 0) {
        fprintf(stderr, "clipreel submit: %s\n", errmsg);
        ret = 1;
        goto end;
    }
    if (reel_client_submit(&opt, &sub, &status, &duplicate, errmsg) < 0) {
        fprintf(stderr, "clipreel submit: %s\n", errmsg);
        ret = 1;
        goto end;
    }
    if (duplicate)
        fprintf(stderr, "clipreel submit: %s was submitted before; following that export\n",
                sub.export_id);
    if (no_wait) {
        printf("%s\n", sub.export_id);
        ret = 0;
        goto end;
    }

    signal(SIGINT, on_sigint);
    for (;;) {
        if (interrupted && !cancel_sent) {
            char cerr[REEL_ERRMSG_SIZE];
            int r = reel_client_cancel(&opt, sub.export_id, cerr);
            cancel_sent = 1;
            reel_cli_progress_end(&fo.bar);
            fprintf(stderr, "clipreel submit: cancelling %s (HTTP %d)\n", sub.export_id, r);
        }
        ret = reel_client_watch_wait(watch, 1, errmsg);
        if (ret != REEL_ERR(ETIMEDOUT))
            break;
        if (++waited >= timeout && timeout > 0) {
            snprintf(errmsg, sizeof(errmsg),
                     "no result after %d s (export %s continues on the"
                     " server)",
                     timeout, sub.export_id);
            break;
        }
        if (interrupted > 1)
            break;
    }
    reel_cli_progress_end(&fo.bar);
    if (ret < 0) {
        fprintf(stderr, "clipreel submit: %s: %s\n", sub.export_id,
                ret == REEL_ERROR_CANCELLED ? "cancelled" : errmsg);
        ret = 1;
        goto end;
    }
    if (out) {
        char vtt[4096];
        struct stat st;
        chapters_name(vtt, sizeof(vtt), out);
        if (reel_client_download(&opt, sub.export_id, out, vtt, errmsg) < 0) {
            fprintf(stderr, "clipreel submit: download: %s\n", errmsg);
            ret = 1;
            goto end;
        }
        if (stat(out, &st) == 0)
            fprintf(stderr, "clipreel submit: %s complete: %s (%lld bytes)\n", sub.export_id, out,
                    (long long)st.st_size);
    } else {
        fprintf(stderr, "clipreel submit: %s complete (GET /api/exports/%s/output)\n",
                sub.export_id, sub.export_id);
    }
    ret = 0;
end:
    reel_client_watch_close(&watch);
    reel_client_submission_uninit(&sub);
    return ret;
}
