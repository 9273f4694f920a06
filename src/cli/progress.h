/*
 * progress.h - the CLI's progress output for an export, shared by `clipreel
 * export` (engine in this process) and `clipreel submit` (engine on a server):
 *
 *   bar   one line on stderr, redrawn in place on a terminal
 *         ( [########------------]  41.2%  processing  clip 2/3  frame 120/300  ETA 0:12 ),
 *         or a line per phase change / 10 % step when stderr is not a terminal;
 *   json  one JSON object per event on stdout:
 *         {"phase","percent","clip","total_clips","frames_done","frames_total","fps",
 *          "eta_s","message"} (fps/eta_s null when unknown);
 *   none  nothing.
 *
 * Thread-safety: one ReelCliProgress is fed by one thread at a time (the
 * engine calls its progress callback one call at a time).
 */
#ifndef REEL_CLI_PROGRESS_H
#define REEL_CLI_PROGRESS_H

#include <stdint.h>

#include "media/export.h"

typedef enum ReelCliProgressMode {
    REEL_CLI_PROGRESS_BAR = 0,
    REEL_CLI_PROGRESS_JSON,
    REEL_CLI_PROGRESS_NONE,
} ReelCliProgressMode;

typedef struct ReelCliProgress {
    ReelCliProgressMode mode;
    int tty;   /**< stderr is a terminal: redraw in place */
    int drawn; /**< a bar line is on screen */
    ReelPhase last_phase;
    int last_decile;
    int64_t last_ms;
} ReelCliProgress;

/** "bar", "json" or "none" -> mode; -1 for anything else. */
int reel_cli_progress_parse_mode(const char *s, ReelCliProgressMode *mode);

void reel_cli_progress_init(ReelCliProgress *p, ReelCliProgressMode mode);

/** Show one event (rate-limited to 10 redraws/s on a terminal). */
void reel_cli_progress_update(ReelCliProgress *p, const ReelProgress *ev);

/** Finish the display: ends the bar line. */
void reel_cli_progress_end(ReelCliProgress *p);

/** A ReelProgressFn that feeds the ReelCliProgress given as opaque. */
void reel_cli_progress_cb(void *opaque, const ReelProgress *ev);

/** The phase whose reel_phase_name() is name; REEL_PHASE_PROCESSING when unknown. */
ReelPhase reel_cli_phase_from_name(const char *name);

#endif
