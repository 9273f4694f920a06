/*
 * store_local.c - the object store (storage.h) on a local directory: the
 * embedded default. A key is a relative path under the root. Puts copy into a
 * temporary file in the destination directory ("<name>.tmp-XXXXXX"), fsync and
 * rename, so a reader sees the old object or the whole new one, never half a
 * file; listings skip those temporary names.
 *
 * Thread-safety: the context is immutable after open and every call works on
 * its own file descriptors, so calls may run concurrently. Two puts of one key
 * race benignly: each renames a complete file, the last rename wins.
 */
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
#include "storage/storage_int.h"

#define COPY_CHUNK (1 << 16)

typedef struct LocalStore {
    char root[PATH_MAX]; /* absolute, symlinks resolved */
} LocalStore;

static int key_path(LocalStore *ls, const char *key, char *path, size_t size, char *errmsg)
{
    /* storage.c checked the key already; checked again because this is the
     * line between a key and the filesystem (no "..", no absolute path) */
    if (!reel_store_key_valid(key))
        return reel_fail(errmsg, REEL_ERR(EINVAL), "storage: invalid key '%.300s'",
                         key ? key : "(null)");
    if ((size_t)snprintf(path, size, "%s/%s", ls->root, key) >= size)
        return reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "storage: key too long for a path");
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

/* "<anything>.tmp-XXXXXX": a file copy_atomic has not published (yet) */
static int is_temp_name(const char *name)
{
    size_t n = strlen(name);
    return n > 11 && !memcmp(name + n - 11, ".tmp-", 5);
}

static int local_open(void **priv, const ReelStoreConfig *cfg, char *errmsg)
{
    LocalStore *ls;
    char tmp[PATH_MAX];

    *priv = NULL;
    if (!cfg->root || !*cfg->root)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "storage: local store needs a root folder");
    if (!(ls = calloc(1, sizeof(*ls))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "storage: out of memory");
    errno = 0;
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s/", cfg->root) >= sizeof(tmp) ||
        make_parents(tmp) < 0 || !realpath(cfg->root, ls->root)) {
        int e = errno ? errno : ENAMETOOLONG;
        free(ls);
        return reel_fail(errmsg, REEL_ERR(e), "storage: %s: cannot use: %s", cfg->root,
                         strerror(e));
    }
    *priv = ls;
    return 0;
}

static void local_close(void **priv)
{
    free(*priv);
    *priv = NULL;
}

/* Copy src to a temp file next to dst, fsync, rename over dst. */
static int copy_atomic(const char *src, char *dst, char *errmsg)
{
    char tmp[PATH_MAX + 32];
    char *buf = NULL;
    int in = -1, outfd = -1, ret;
    ssize_t n;

    tmp[0] = '\0';
    if ((ret = make_parents(dst)) < 0)
        return reel_fail(errmsg, ret, "storage: cannot create folders for %s", dst);
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", dst) >= sizeof(tmp)) {
        tmp[0] = '\0';
        return reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "storage: path too long");
    }
    /* on the heap: the server calls stores from threads with small stacks */
    if (!(buf = malloc(COPY_CHUNK)))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "storage: out of memory");
    if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
        tmp[0] = '\0';
        ret = reel_fail(errmsg, REEL_ERR(errno), "storage: %s: %s", src, strerror(errno));
        goto end;
    }
    if ((outfd = mkstemp(tmp)) < 0) {
        ret = reel_fail(errmsg, REEL_ERR(errno), "storage: %s: %s", tmp, strerror(errno));
        tmp[0] = '\0';
        goto end;
    }
    while ((n = read(in, buf, COPY_CHUNK)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(outfd, buf + off, (size_t)(n - off));
            if (w < 0) {
                ret = reel_fail(errmsg, REEL_ERR(errno), "storage: write %s: %s", dst,
                                strerror(errno));
                goto end;
            }
            off += w;
        }
    }
    if (n < 0) {
        ret = reel_fail(errmsg, REEL_ERR(errno), "storage: read %s: %s", src, strerror(errno));
        goto end;
    }
    if (fsync(outfd) < 0 || fchmod(outfd, 0644) < 0) {
        ret = reel_fail(errmsg, REEL_ERR(errno), "storage: sync %s: %s", dst, strerror(errno));
        goto end;
    }
    close(outfd);
    outfd = -1;
    if (rename(tmp, dst) < 0) {
        ret = reel_fail(errmsg, REEL_ERR(errno), "storage: publish %s: %s", dst, strerror(errno));
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
    free(buf);
    return ret;
}

static int local_put_file(void *priv, const char *key, const char *path, char *errmsg)
{
    char dst[PATH_MAX];
    int ret = key_path(priv, key, dst, sizeof(dst), errmsg);
    return ret < 0 ? ret : copy_atomic(path, dst, errmsg);
}

/* The "no such object" sentence: an expected outcome, so not logged. */
static int absent(char *errmsg, const char *key)
{
    snprintf(errmsg, REEL_ERRMSG_SIZE, "storage: %.300s: no such object", key);
    return REEL_ERR(ENOENT);
}

static int local_get_file(void *priv, const char *key, const char *path, char *errmsg)
{
    char src[PATH_MAX], dst[PATH_MAX];
    struct stat sb;
    int ret = key_path(priv, key, src, sizeof(src), errmsg);

    if (ret < 0)
        return ret;
    if (stat(src, &sb) < 0)
        return errno == EACCES
                   ? reel_fail(errmsg, REEL_ERR(EACCES), "storage: %s: %s", key, strerror(EACCES))
                   : absent(errmsg, key);
    if (!S_ISREG(sb.st_mode))
        return absent(errmsg, key);
    if ((size_t)snprintf(dst, sizeof(dst), "%s", path) >= sizeof(dst))
        return reel_fail(errmsg, REEL_ERR(ENAMETOOLONG), "storage: path too long");
    return copy_atomic(src, dst, errmsg);
}

static int64_t local_get_range(void *priv, const char *key, int64_t offset, void *buf, size_t len,
                               char *errmsg)
{
    char src[PATH_MAX];
    int ret = key_path(priv, key, src, sizeof(src), errmsg), fd;
    int64_t total = 0;

    if (ret < 0)
        return ret;
    if ((fd = open(src, O_RDONLY | O_CLOEXEC)) < 0)
        return errno == ENOENT || errno == ENOTDIR
                   ? absent(errmsg, key)
                   : reel_fail(errmsg, REEL_ERR(errno), "storage: %s: %s", key, strerror(errno));
    /* pread may return less than asked before the end (signals, huge lengths) */
    while ((size_t)total < len) {
        ssize_t n = pread(fd, (char *)buf + total, len - (size_t)total, offset + total);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EISDIR) {
            close(fd);
            return absent(errmsg, key);
        }
        if (n < 0) {
            ret = reel_fail(errmsg, REEL_ERR(errno), "storage: %s: %s", key, strerror(errno));
            close(fd);
            return ret;
        }
        if (n == 0)
            break;
        total += n;
    }
    close(fd);
    return total;
}

static int local_head(void *priv, const char *key, ReelStoreInfo *info, char *errmsg)
{
    char p[PATH_MAX];
    struct stat sb;
    int ret = key_path(priv, key, p, sizeof(p), errmsg);

    if (ret < 0)
        return ret;
    if (stat(p, &sb) < 0 || !S_ISREG(sb.st_mode))
        return absent(errmsg, key);
    info->size = sb.st_size;
    info->mtime = sb.st_mtime;
    return 0;
}

static int local_delete(void *priv, const char *key, char *errmsg)
{
    LocalStore *ls = priv;
    char p[PATH_MAX];
    int ret = key_path(ls, key, p, sizeof(p), errmsg);

    if (ret < 0)
        return ret;
    if (unlink(p) < 0 && errno != ENOENT)
        return reel_fail(errmsg, REEL_ERR(errno), "storage: delete %s: %s", key, strerror(errno));
    /* drop now-empty parent folders, up to the root */
    for (char *slash = strrchr(p, '/'); slash && slash > p + strlen(ls->root);
         slash = strrchr(p, '/')) {
        *slash = '\0';
        if (rmdir(p) < 0)
            break;
    }
    return 0;
}

typedef struct Entry {
    char *name;
    int is_dir;
} Entry;

/*
 * A folder "a" sorts as "a/": everything under it starts with that, so a
 * depth-first walk in this order yields whole keys in byte-wise order ("a-b"
 * before "a/c", as S3 lists them).
 */
static int cmp_entries(const void *pa, const void *pb)
{
    const Entry *a = pa, *b = pb;
    const unsigned char *x = (const unsigned char *)a->name, *y = (const unsigned char *)b->name;

    while (*x && *x == *y) {
        x++;
        y++;
    }
    int cx = *x ? *x : a->is_dir ? '/' : 0;
    int cy = *y ? *y : b->is_dir ? '/' : 0;
    return cx - cy;
}

/* Walk dir (relative rel) in key order, calling cb for files under prefix. */
static int walk(LocalStore *ls, const char *rel, const char *prefix, ReelStoreListCb cb,
                void *opaque, char *errmsg)
{
    char *dir = NULL, *key = NULL, *full = NULL;
    DIR *d = NULL;
    struct dirent *e;
    Entry *ents = NULL;
    size_t n = 0, cap = 0, pl = strlen(prefix);
    int ret = 0;

    /* heap, not stack: walks recurse and may run on small stacks */
    if (!(dir = malloc(PATH_MAX)) || !(key = malloc(PATH_MAX)) || !(full = malloc(PATH_MAX))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "storage: out of memory");
        goto end;
    }
    if ((size_t)snprintf(dir, PATH_MAX, "%s%s%s", ls->root, *rel ? "/" : "", rel) >= PATH_MAX)
        goto end;
    if (!(d = opendir(dir)))
        goto end; /* vanished under a concurrent delete: nothing to list */
    while ((e = readdir(d))) {
        struct stat sb;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || is_temp_name(e->d_name))
            continue;
        if ((size_t)snprintf(full, PATH_MAX, "%s/%s", dir, e->d_name) >= PATH_MAX ||
            stat(full, &sb) < 0 || !(S_ISDIR(sb.st_mode) || S_ISREG(sb.st_mode)))
            continue;
        if (n == cap) {
            Entry *ne = realloc(ents, (cap = cap ? cap * 2 : 32) * sizeof(*ne));
            if (!ne) {
                ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "storage: out of memory");
                goto end;
            }
            ents = ne;
        }
        if (!(ents[n].name = strdup(e->d_name))) {
            ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "storage: out of memory");
            goto end;
        }
        ents[n++].is_dir = S_ISDIR(sb.st_mode);
    }
    if (n) /* qsort wants a non-NULL array even for 0 entries */
        qsort(ents, n, sizeof(*ents), cmp_entries);
    for (size_t i = 0; i < n && ret == 0; i++) {
        struct stat sb;
        size_t kl;
        if ((size_t)snprintf(key, PATH_MAX, "%s%s%s", rel, *rel ? "/" : "", ents[i].name) >=
            PATH_MAX)
            continue;
        kl = strlen(key);
        if (ents[i].is_dir) {
            /* descend when the folder can hold keys with the prefix */
            if (!strncmp(key, prefix, kl < pl ? kl : pl))
                ret = walk(ls, key, prefix, cb, opaque, errmsg);
        } else if (!strncmp(key, prefix, pl) && reel_store_key_valid(key)) {
            if ((size_t)snprintf(full, PATH_MAX, "%s/%s", ls->root, key) >= PATH_MAX ||
                stat(full, &sb) < 0)
                continue; /* deleted since readdir */
            ReelStoreInfo info = {sb.st_size, sb.st_mtime};
            ret = cb(opaque, key, &info);
        }
    }
end:
    for (size_t i = 0; i < n; i++)
        free(ents[i].name);
    free(ents);
    if (d)
        closedir(d);
    free(dir);
    free(key);
    free(full);
    return ret;
}

static int local_list(void *priv, const char *prefix, ReelStoreListCb cb, void *opaque,
                      char *errmsg)
{
    return walk(priv, "", prefix, cb, opaque, errmsg);
}

static int local_presign_get(void *priv, const char *key, int expires_s, int64_t now, char *url,
                             size_t size, char *errmsg)
{
    snprintf(errmsg, REEL_ERRMSG_SIZE, "storage: the local store has no presigned URLs");
    return REEL_ERR(ENOTSUP);
}

static int local_local_path(void *priv, const char *key, char *path, size_t size, char *errmsg)
{
    return key_path(priv, key, path, size, errmsg);
}

const ReelStoreBackend reel_store_backend_local = {
    .name = "local",
    .open = local_open,
    .close = local_close,
    .put_file = local_put_file,
    .get_file = local_get_file,
    .get_range = local_get_range,
    .head = local_head,
    .del = local_delete,
    .list = local_list,
    .presign_get = local_presign_get,
    .local_path = local_local_path,
};
