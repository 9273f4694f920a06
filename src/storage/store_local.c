/*
 * store_local.c - the object store (storage.h) on a local directory: the
 * embedded default. A key is a relative path under the root. Puts copy into a
 * temporary file in the destination directory, fsync and rename, so a reader
 * sees the old object or the whole new one, never half a file.
 *
 * Only the local backend is built so far; reel_store_open rejects other kinds
 * with a clear error (the S3 backend is the next piece of this module).
 * Thread-safety: every call works on its own file descriptors; the errmsg is
 * per store and best effort when calls race.
 */
#include "storage/storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

struct ReelStore {
    char root[PATH_MAX];
    char errmsg[REEL_ERRMSG_SIZE];
};

int reel_store_key_valid(const char *key)
{
    size_t n;
    const char *seg;

    if (!key || !*key || key[0] == '/' || (n = strlen(key)) > 1024)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f || key[i] == '\\')
            return 0;
    seg = key;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return 0;
        if (!slash)
            return 1;
        seg = slash + 1;
    }
}

static int key_path(ReelStore *st, const char *key, char *path, size_t size)
{
    if (!reel_store_key_valid(key))
        return reel_fail(st->errmsg, REEL_ERR(EINVAL), "storage: invalid key '%s'",
                         key ? key : "(null)");
    if ((size_t)snprintf(path, size, "%s/%s", st->root, key) >= size)
        return reel_fail(st->errmsg, REEL_ERR(ENAMETOOLONG), "storage: key too long");
    return 0;
}

/* mkdir -p of the directory part of path */
static int make_parents(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int r = mkdir(path, 0755);
        *p = '/';
        if (r < 0 && errno != EEXIST)
            return REEL_ERR(errno);
    }
    return 0;
}

int reel_store_open(ReelStore **out, const ReelStoreConfig *cfg, char *errmsg)
{
    ReelStore *st;
    char tmp[PATH_MAX];

    *out = NULL;
    if (cfg->kind && strcmp(cfg->kind, "local") != 0)
        return reel_fail(errmsg, REEL_ERR(ENOTSUP),
                         "storage: kind '%s' is not available in this build (local only)",
                         cfg->kind);
    if (!cfg->root || !*cfg->root)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "storage: local store needs a root folder");
    if (!(st = calloc(1, sizeof(*st))))
        return REEL_ERR(ENOMEM);
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s/", cfg->root) >= sizeof(tmp) ||
        make_parents(tmp) < 0 || !realpath(cfg->root, st->root)) {
        int e = errno;
        free(st);
        return reel_fail(errmsg, REEL_ERR(e ? e : EINVAL), "storage: %s: cannot use: %s",
                         cfg->root, strerror(e));
    }
    *out = st;
    return 0;
}

void reel_store_close(ReelStore **st)
{
    if (st) {
        free(*st);
        *st = NULL;
    }
}

const char *reel_store_errmsg(const ReelStore *st)
{
    return st->errmsg;
}

/* Copy src to a temp file next to dst, fsync, rename over dst. */
static int copy_atomic(ReelStore *st, const char *src, char *dst)
{
    char tmp[PATH_MAX + 32];
    char buf[1 << 16];
    int in = -1, outfd = -1, ret;
    ssize_t n;

    if ((ret = make_parents(dst)) < 0)
        return reel_fail(st->errmsg, ret, "storage: cannot create folders for %s", dst);
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", dst) >= sizeof(tmp))
        return reel_fail(st->errmsg, REEL_ERR(ENAMETOOLONG), "storage: path too long");
    if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0)
        return reel_fail(st->errmsg, REEL_ERR(errno), "storage: %s: %s", src, strerror(errno));
    if ((outfd = mkstemp(tmp)) < 0) {
        ret = reel_fail(st->errmsg, REEL_ERR(errno), "storage: %s: %s", tmp, strerror(errno));
        goto end;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(outfd, buf + off, (size_t)(n - off));
            if (w < 0) {
                ret = reel_fail(st->errmsg, REEL_ERR(errno), "storage: write %s: %s", dst,
                                strerror(errno));
                goto end;
            }
            off += w;
        }
    }
    if (n < 0) {
        ret = reel_fail(st->errmsg, REEL_ERR(errno), "storage: read %s: %s", src, strerror(errno));
        goto end;
    }
    if (fsync(outfd) < 0 || fchmod(outfd, 0644) < 0) {
        ret = reel_fail(st->errmsg, REEL_ERR(errno), "storage: sync %s: %s", dst, strerror(errno));
        goto end;
    }
    close(outfd);
    outfd = -1;
    if (rename(tmp, dst) < 0) {
        ret = reel_fail(st->errmsg, REEL_ERR(errno), "storage: publish %s: %s", dst,
                        strerror(errno));
        goto end;
    }
    tmp[0] = '\0';
    ret = 0;
end:
    if (in >= 0)
        close(in);
    if (outfd >= 0)
        close(outfd);
    if (tmp[0])
        unlink(tmp);
    return ret;
}

int reel_store_put_file(ReelStore *st, const char *key, const char *path)
{
    char dst[PATH_MAX];
    int ret = key_path(st, key, dst, sizeof(dst));
    return ret < 0 ? ret : copy_atomic(st, path, dst);
}

int reel_store_get_file(ReelStore *st, const char *key, const char *path)
{
    char src[PATH_MAX], dst[PATH_MAX];
    int ret = key_path(st, key, src, sizeof(src));
    if (ret < 0)
        return ret;
    if (access(src, R_OK) < 0)
        return reel_fail(st->errmsg, REEL_ERR(errno), "storage: %s: %s", key, strerror(errno));
    snprintf(dst, sizeof(dst), "%s", path);
    return copy_atomic(st, src, dst);
}

int64_t reel_store_get_range(ReelStore *st, const char *key, int64_t offset, void *buf,
                             size_t len)
{
    char src[PATH_MAX];
    int ret = key_path(st, key, src, sizeof(src)), fd;
    ssize_t n;
    if (ret < 0)
        return ret;
    if ((fd = open(src, O_RDONLY | O_CLOEXEC)) < 0)
        return reel_fail(st->errmsg, REEL_ERR(errno), "storage: %s: %s", key, strerror(errno));
    n = pread(fd, buf, len, offset);
    if (n < 0)
        ret = reel_fail(st->errmsg, REEL_ERR(errno), "storage: %s: %s", key, strerror(errno));
    close(fd);
    return n < 0 ? ret : n;
}

int reel_store_head(ReelStore *st, const char *key, ReelStoreInfo *info)
{
    char p[PATH_MAX];
    struct stat sb;
    int ret = key_path(st, key, p, sizeof(p));
    if (ret < 0)
        return ret;
    if (stat(p, &sb) < 0 || !S_ISREG(sb.st_mode))
        return REEL_ERR(ENOENT);
    info->size = sb.st_size;
    info->mtime = sb.st_mtime;
    return 0;
}

int reel_store_delete(ReelStore *st, const char *key)
{
    char p[PATH_MAX];
    int ret = key_path(st, key, p, sizeof(p));
    if (ret < 0)
        return ret;
    if (unlink(p) < 0 && errno != ENOENT)
        return reel_fail(st->errmsg, REEL_ERR(errno), "storage: delete %s: %s", key,
                         strerror(errno));
    /* drop now-empty parent folders, up to the root */
    for (char *slash = strrchr(p, '/'); slash && slash > p + strlen(st->root);
         slash = strrchr(p, '/')) {
        *slash = '\0';
        if (rmdir(p) < 0)
            break;
    }
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walk dir (relative rel) in lexical order, calling cb for files under prefix. */
static int walk(ReelStore *st, const char *rel, const char *prefix,
                int (*cb)(void *, const char *, const ReelStoreInfo *), void *opaque)
{
    char dir[PATH_MAX];
    DIR *d;
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int ret = 0;

    if ((size_t)snprintf(dir, sizeof(dir), "%s%s%s", st->root, *rel ? "/" : "", rel) >= sizeof(dir))
        return 0;
    if (!(d = opendir(dir)))
        return 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || strstr(e->d_name, ".tmp-"))
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 32) * sizeof(*nn));
            if (!nn) {
                ret = REEL_ERR(ENOMEM);
                goto end;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) {
            ret = REEL_ERR(ENOMEM);
            goto end;
        }
        n++;
    }
    qsort(names, n, sizeof(*names), cmp_names);
    for (size_t i = 0; i < n && ret == 0; i++) {
        char key[PATH_MAX], full[PATH_MAX];
        struct stat sb;
        if ((size_t)snprintf(key, sizeof(key), "%s%s%s", rel, *rel ? "/" : "", names[i]) >=
                sizeof(key) ||
            (size_t)snprintf(full, sizeof(full), "%s/%s", st->root, key) >= sizeof(full) ||
            stat(full, &sb) < 0)
            continue;
        size_t kl = strlen(key), pl = strlen(prefix);
        if (S_ISDIR(sb.st_mode)) {
            /* descend when the folder can hold keys with the prefix */
            if (!strncmp(key, prefix, kl < pl ? kl : pl))
                ret = walk(st, key, prefix, cb, opaque);
        } else if (S_ISREG(sb.st_mode) && !strncmp(key, prefix, pl)) {
            ReelStoreInfo info = {sb.st_size, sb.st_mtime};
            ret = cb(opaque, key, &info);
        }
    }
end:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return ret;
}

int reel_store_list(ReelStore *st, const char *prefix,
                    int (*cb)(void *opaque, const char *key, const ReelStoreInfo *info),
                    void *opaque)
{
    if (!prefix || strstr(prefix, ".."))
        return reel_fail(st->errmsg, REEL_ERR(EINVAL), "storage: invalid prefix");
    return walk(st, "", prefix, cb, opaque);
}

int reel_store_presign_get(ReelStore *st, const char *key, int expires_s, char *url, size_t size)
{
    return REEL_ERR(ENOTSUP);
}

int reel_store_local_path(ReelStore *st, const char *key, char *path, size_t size)
{
    return key_path(st, key, path, size);
}
