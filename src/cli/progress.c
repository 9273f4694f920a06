/*
 * progress.c - progress bar and JSON lines of the CLI (see progress.h).
 */
#include "cli/progress.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int reel_cli_progress_parse_mode(const char *s, ReelCliProgressMode *mode)
{
    if (!strcmp(s, "bar"))
        *mode = REEL_CLI_PROGRESS_BAR;
    else if (!strcmp(s, "json"))
        *mode = REEL_CLI_PROGRESS_JSON;
    else if (!strcmp(s, "none"))
        *mode = REEL_CLI_PROGRESS_NONE;
    else
        return -1;
    return 0;
}

void reel_cli_progress_init(ReelCliProgress *p, ReelCliProgressMode mode)
{
    memset(p, 0, sizeof(*p));
    p->mode = mode;
    p->tty = isatty(STDERR_FILENO);
    p->last_phase = (ReelPhase)-1;
    p->last_decile = -1;
}

ReelPhase reel_cli_phase_from_name(const char *name)
{
    for (int i = 0; i <= REEL_PHASE_CANCELLED; i++)
        if (name && !strcmp(reel_phase_name((ReelPhase)i), name))
            return (ReelPhase)i;
    return REEL_PHASE_PROCESSING;
}

static void print_json(const ReelProgress *ev)
{
    json_t *o = json_pack("{s:s,s:f,s:i,s:i,s:I,s:I}", "phase", reel_phase_name(ev->phase),
                          "percent", round(ev->percent * 10) / 10, "clip", ev->clip, "total_clips",
                          ev->total_clips, "frames_done", (json_int_t)ev->frames_done,
                          "frames_total", (json_int_t)ev->frames_total);
    char *text;

    if (!o)
        return;
    json_object_set_new(o, "fps", ev->fps > 0 ? json_real(round(ev->fps * 10) / 10) : json_null());
    json_object_set_new(o, "eta_s",
                        ev->eta_s >= 0 ? json_real(round(ev->eta_s * 10) / 10) : json_null());
    json_object_set_new(o, "message", ev->message ? json_string(ev->message) : json_null());
    if ((text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)))) {
        puts(text);
        fflush(stdout);
    }
    free(text);
    json_decref(o);
}

static void print_bar(ReelCliProgress *p, const ReelProgress *ev)
{
    char line[256], bar[21];
    int filled = (int)(ev->percent / 5.0), n;

    if (filled < 0)
        filled = 0;
    if (filled > 20)
        filled = 20;
    memset(bar, '#', (size_t)filled);
    memset(bar + filled, '-', (size_t)(20 - filled));
    bar[20] = 0;
    n = snprintf(line, sizeof(line), "[%s] %5.1f%%  %s", bar, ev->percent,
                 reel_phase_name(ev->phase));
    if (ev->clip > 0 && ev->total_clips > 0 && n < (int)sizeof(line))
        n +=
            snprintf(line + n, sizeof(line) - (size_t)n, "  clip %d/%d", ev->clip, ev->total_clips);
    if (ev->frames_total > 0 && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "  frame %lld/%lld",
                      (long long)ev->frames_done, (long long)ev->frames_total);
    if (ev->fps > 0 && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "  %.1f fps", ev->fps);
    if (ev->eta_s >= 0 && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "  ETA %d:%02d", (int)ev->eta_s / 60,
                      (int)ev->eta_s % 60);
    if (p->tty)
        fprintf(stderr, "\r%-100s", line);
    else
        fprintf(stderr, "%s\n", line);
    fflush(stderr);
    p->drawn = p->tty;
}

void reel_cli_progress_update(ReelCliProgress *p, const ReelProgress *ev)
{
    int64_t now = mono_ms();
    int decile = (int)(ev->percent / 10.0);
    int changed = ev->phase != p->last_phase;

    switch (p->mode) {
    case REEL_CLI_PROGRESS_NONE:
        return;
    case REEL_CLI_PROGRESS_JSON:
        print_json(ev);
        break;
    case REEL_CLI_PROGRESS_BAR:
        /* Terminal: 10 redraws a second. Log file: phase changes and 10 % steps. */
        if (p->tty ? (changed || now - p->last_ms >= 100) : (changed || decile != p->last_decile))
            print_bar(p, ev);
        else
            return;
        break;
    }
    p->last_ms = now;
    p->last_phase = ev->phase;
    p->last_decile = decile;
}

void reel_cli_progress_end(ReelCliProgress *p)
{
    if (p->mode == REEL_CLI_PROGRESS_BAR && p->drawn)
        fputc('\n', stderr);
    p->drawn = 0;
}

void reel_cli_progress_cb(void *opaque, const ReelProgress *ev)
{
    reel_cli_progress_update(opaque, ev);
}
