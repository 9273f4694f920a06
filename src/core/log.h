/*
 * log.h - one logger for the whole process.
 *
 * Messages go to stderr with a level and the component name. The level is
 * process-wide (set once at start-up, from --verbose/--quiet or REEL_LOG).
 * Thread-safe: each message is written with one fputs under a lock.
 */
#ifndef REEL_CORE_LOG_H
#define REEL_CORE_LOG_H

enum {
    REEL_LOG_QUIET = -1,
    REEL_LOG_ERROR = 0,
    REEL_LOG_WARNING = 1,
    REEL_LOG_INFO = 2,
    REEL_LOG_DEBUG = 3,
};

void reel_log_set_level(int level);
int reel_log_get_level(void);
void reel_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
