/*
 * fs.c - mkdir -p and rm -rf for work folders.
 */
#include "core/fs.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/log.h"

int reel_mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(tmp))
        return REEL_ERR(ENAMETOOLONG);
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return REEL_ERR(errno);
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return REEL_ERR(errno);
    return 0;
}

/* nftw has no user pointer: the component for the warnings travels in a
 * thread-local. */
static _Thread_local const char *rm_component;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0 && errno != ENOENT)
        reel_log(REEL_LOG_WARNING, rm_component, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

void reel_rm_tree(const char *path, const char *component)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return;
    rm_component = component;
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
