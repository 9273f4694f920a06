/*
 * log.c - process-wide stderr logger.
 */
#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

static int log_level = REEL_LOG_WARNING;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void reel_log_set_level(int level)
{
    log_level = level;
}

int reel_log_get_level(void)
{
    return log_level;
}

void reel_log(int level, const char *component, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    char line[1024];
    va_list ap;
    int n;

    if (level > log_level || level < 0)
        return;
    n = snprintf(line, sizeof(line), "[%s] %s: ", component, names[level]);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    fputs(line, stderr);
    fputc('\n', stderr);
    pthread_mutex_unlock(&log_lock);
}
