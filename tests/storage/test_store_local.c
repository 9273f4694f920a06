/*
 * test_store_local.c - the local-directory backend through the public store
 * interface: round trips, ranges, head, list order and prefixes, delete,
 * traversal attempts, atomic publish under a concurrent reader, temp files,
 * and which error sentence each thread reads.
 *
 * usage: test_store_local <scratch folder>
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "storage/storage.h"
#include "testutil.h"

static char scratch[PATH_MAX];

typedef struct Fix {
    char dir[PATH_MAX];  /* this test's folder */
    char root[PATH_MAX]; /* the store's root inside it */
    ReelStore *st;
} Fix;

static int setup(void **state)
{
    Fix *f = calloc(1, sizeof(*f));
    ReelStoreConfig cfg = {0};
    char err[REEL_ERRMSG_SIZE];

    assert_non_null(f);
    assert_int_equal(tu_mkdtemp(f->dir, sizeof(f->dir), scratch, "local"), 0);
    tu_fmt(f->root, sizeof(f->root), "%s/objects/deeper", f->dir);
    cfg.root = f->root; /* created by open, parents too */
    assert_int_equal(reel_store_open(&f->st, &cfg, err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fix *f = *state;
    reel_store_close(&f->st);
    assert_null(f->st);
    tu_rm_rf(f->dir);
    free(f);
    return 0;
}

static void path_in(const Fix *f, const char *name, char *out, size_t size)
{
    tu_fmt(out, size, "%s/%s", f->dir, name);
}

static void test_open_errors(void **state)
{
    ReelStoreConfig cfg = {0};
    ReelStore *st = (ReelStore *)1;
    char err[REEL_ERRMSG_SIZE] = "";

    (void)state;
    assert_int_equal(reel_store_open(&st, &cfg, err), REEL_ERR(EINVAL));
    assert_null(st);
    assert_non_null(strstr(err, "root"));
    cfg.kind = "ftp";
    cfg.root = "/tmp";
    assert_int_equal(reel_store_open(&st, &cfg, err), REEL_ERR(ENOTSUP));
    assert_non_null(strstr(err, "ftp"));
    cfg.kind = "";
    assert_int_equal(reel_store_open(&st, &cfg, NULL), 0);
    assert_string_equal(reel_store_kind(st), "local");
    assert_string_equal(reel_store_errmsg(st), "");
    reel_store_close(&st);
    reel_store_close(&st); /* NULL is fine */
    reel_store_close(NULL);
    cfg.kind = "local";
    cfg.root = "/proc/self/no/such/place";
    assert_true(reel_store_open(&st, &cfg, err) < 0);
    assert_null(st);
}

static void test_roundtrip(void **state)
{
    Fix *f = *state;
    char src[PATH_MAX], dst[PATH_MAX], p[PATH_MAX];
    ReelStoreInfo info = {-1, -1};

    path_in(f, "src.bin", src, sizeof(src));
    path_in(f, "out/sub/dst.bin", dst, sizeof(dst)); /* parents made by get */
    assert_int_equal(tu_write_file(src, 1, (1 << 20) + 3), 0);
    assert_int_equal(reel_store_put_file(f->st, "u1/temp/multi_clip_x/source_0.mp4", src), 0);
    assert_int_equal(reel_store_head(f->st, "u1/temp/multi_clip_x/source_0.mp4", &info), 0);
    assert_int_equal(info.size, (1 << 20) + 3);
    assert_true(info.mtime > 1600000000);
    assert_int_equal(reel_store_get_file(f->st, "u1/temp/multi_clip_x/source_0.mp4", dst), 0);
    assert_true(tu_check_file(dst, 1, (1 << 20) + 3));
    /* the object is a plain file under the root */
    assert_int_equal(
        reel_store_local_path(f->st, "u1/temp/multi_clip_x/source_0.mp4", p, sizeof(p)), 0);
    assert_non_null(strstr(p, "/objects/deeper/u1/temp/multi_clip_x/source_0.mp4"));
    assert_true(tu_check_file(p, 1, (1 << 20) + 3));

    /* overwrite, and an empty object */
    assert_int_equal(tu_write_file(src, 2, 1000), 0);
    assert_int_equal(reel_store_put_file(f->st, "u1/temp/multi_clip_x/source_0.mp4", src), 0);
    assert_int_equal(reel_store_get_file(f->st, "u1/temp/multi_clip_x/source_0.mp4", dst), 0);
    assert_true(tu_check_file(dst, 2, 1000));
    assert_int_equal(tu_write_file(src, 3, 0), 0);
    assert_int_equal(reel_store_put_file(f->st, "u1/empty", src), 0);
    assert_int_equal(reel_store_head(f->st, "u1/empty", &info), 0);
    assert_int_equal(info.size, 0);

    /* no temporary file is left anywhere */
    assert_int_equal(tu_count_tree(f->dir, ".tmp-"), 0);
}

static void test_range(void **state)
{
    Fix *f = *state;
    char src[PATH_MAX];
    unsigned char buf[5000];
    const int64_t size = 100000;

    path_in(f, "src.bin", src, sizeof(src));
    assert_int_equal(tu_write_file(src, 4, size), 0);
    assert_int_equal(reel_store_put_file(f->st, "r/obj", src), 0);
    assert_int_equal(reel_store_get_range(f->st, "r/obj", 12345, buf, sizeof(buf)), sizeof(buf));
    assert_true(tu_check_buf(buf, 4, 12345, sizeof(buf)));
    assert_int_equal(reel_store_get_range(f->st, "r/obj", 0, buf, 10), 10);
    assert_true(tu_check_buf(buf, 4, 0, 10));
    /* short at the end, 0 past it */
    assert_int_equal(reel_store_get_range(f->st, "r/obj", size - 7, buf, sizeof(buf)), 7);
    assert_true(tu_check_buf(buf, 4, size - 7, 7));
    assert_int_equal(reel_store_get_range(f->st, "r/obj", size, buf, sizeof(buf)), 0);
    assert_int_equal(reel_store_get_range(f->st, "r/obj", size + 99, buf, sizeof(buf)), 0);
    assert_int_equal(reel_store_get_range(f->st, "r/obj", 5, buf, 0), 0);
    /* errors */
    assert_int_equal(reel_store_get_range(f->st, "r/none", 0, buf, 10), REEL_ERR(ENOENT));
    assert_non_null(strstr(reel_store_errmsg(f->st), "r/none"));
    assert_int_equal(reel_store_get_range(f->st, "r", 0, buf, 10), REEL_ERR(ENOENT));
    assert_int_equal(reel_store_get_range(f->st, "r/obj", -1, buf, 10), REEL_ERR(EINVAL));
}

static void test_head_absent(void **state)
{
    Fix *f = *state;
    ReelStoreInfo info;
    char dst[PATH_MAX];

    assert_int_equal(reel_store_head(f->st, "nope/x", &info), REEL_ERR(ENOENT));
    assert_non_null(strstr(reel_store_errmsg(f->st), "no such object"));
    path_in(f, "got/x.bin", dst, sizeof(dst));
    assert_int_equal(reel_store_get_file(f->st, "nope/x", dst), REEL_ERR(ENOENT));
    assert_int_equal(access(dst, F_OK), -1);
    assert_int_equal(tu_count_tree(f->dir, ".tmp-"), 0);
    assert_int_equal(reel_store_put_file(f->st, "x/y", "/no/such/source"), REEL_ERR(ENOENT));
    assert_int_equal(reel_store_head(f->st, "x/y", &info), REEL_ERR(ENOENT));
    assert_int_equal(tu_count_tree(f->dir, ".tmp-"), 0);
}

typedef struct Seen {
    char keys[32][128];
    int64_t sizes[32];
    int n;
    int stop_after; /* return 7 after this many */
    ReelStore *del; /* delete each key seen */
} Seen;

static int collect(void *opaque, const char *key, const ReelStoreInfo *info)
{
    Seen *s = opaque;
    if (s->n < 32) {
        tu_fmt(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
        s->sizes[s->n] = info->size;
    }
    s->n++;
    if (s->del)
        reel_store_delete(s->del, key);
    return s->stop_after && s->n >= s->stop_after ? 7 : 0;
}

static void test_list(void **state)
{
    Fix *f = *state;
    /* byte order: '-' < '.' < '/' so "a-b" < "a.b" < "a/c"; a folder walk in
     * name order alone would give "a/..." first */
    static const char *keys[] = {"b", "a/d/e", "a.b", "a/c", "a-b", "a/d0"};
    static const char *sorted[] = {"a-b", "a.b", "a/c", "a/d/e", "a/d0", "b"};
    char src[PATH_MAX], tmpname[PATH_MAX];
    Seen s;

    path_in(f, "src.bin", src, sizeof(src));
    for (int i = 0; i < 6; i++) {
        assert_int_equal(tu_write_file(src, 5, 10 + i), 0);
        assert_int_equal(reel_store_put_file(f->st, keys[i], src), 0);
    }
    /* a put in progress (a temp file) must not be listed */
    tu_fmt(tmpname, sizeof(tmpname), "%s/a/c.tmp-AbC123", f->root);
    assert_int_equal(tu_write_file(tmpname, 5, 3), 0);

    memset(&s, 0, sizeof(s));
    assert_int_equal(reel_store_list(f->st, "", collect, &s), 0);
    assert_int_equal(s.n, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(s.keys[i], sorted[i]);
    assert_int_equal(s.sizes[5], 10); /* "b" was put first, 10 bytes */

    memset(&s, 0, sizeof(s));
    assert_int_equal(reel_store_list(f->st, "a/", collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.keys[0], "a/c");
    assert_string_equal(s.keys[2], "a/d0");

    memset(&s, 0, sizeof(s));
    assert_int_equal(reel_store_list(f->st, "a/d", collect, &s), 0); /* partial segment */
    assert_int_equal(s.n, 2);
    memset(&s, 0, sizeof(s));
    assert_int_equal(reel_store_list(f->st, "zz", collect, &s), 0);
    assert_int_equal(s.n, 0);

    /* the callback stops the listing */
    memset(&s, 0, sizeof(s));
    s.stop_after = 2;
    assert_int_equal(reel_store_list(f->st, "", collect, &s), 7);
    assert_int_equal(s.n, 2);

    /* bad prefixes */
    assert_int_equal(reel_store_list(f->st, "../", collect, &s), REEL_ERR(EINVAL));
    assert_int_equal(reel_store_list(f->st, "a/../..", collect, &s), REEL_ERR(EINVAL));
    assert_int_equal(reel_store_list(f->st, "/etc", collect, &s), REEL_ERR(EINVAL));
    assert_int_equal(reel_store_list(f->st, NULL, collect, &s), REEL_ERR(EINVAL));

    /* deleting from the callback (the executor's cleanup does this) */
    memset(&s, 0, sizeof(s));
    s.del = f->st;
    assert_int_equal(reel_store_list(f->st, "a/", collect, &s), 0);
    assert_int_equal(s.n, 3);
    memset(&s, 0, sizeof(s));
    assert_int_equal(reel_store_list(f->st, "", collect, &s), 0);
    assert_int_equal(s.n, 3); /* a-b a.b b */
}

static void test_delete(void **state)
{
    Fix *f = *state;
    char src[PATH_MAX], dir[PATH_MAX];
    ReelStoreInfo info;

    path_in(f, "src.bin", src, sizeof(src));
    assert_int_equal(tu_write_file(src, 6, 10), 0);
    assert_int_equal(reel_store_put_file(f->st, "u/w/x/y.mp4", src), 0);
    assert_int_equal(reel_store_put_file(f->st, "u/keep.mp4", src), 0);
    assert_int_equal(reel_store_delete(f->st, "u/w/x/y.mp4"), 0);
    assert_int_equal(reel_store_head(f->st, "u/w/x/y.mp4", &info), REEL_ERR(ENOENT));
    /* the emptied folders went, the root and the non-empty "u" stayed */
    tu_fmt(dir, sizeof(dir), "%s/u/w", f->root);
    assert_int_equal(access(dir, F_OK), -1);
    assert_int_equal(reel_store_head(f->st, "u/keep.mp4", &info), 0);
    assert_int_equal(reel_store_delete(f->st, "u/keep.mp4"), 0);
    assert_int_equal(access(f->root, F_OK), 0);
    /* absent is fine */
    assert_int_equal(reel_store_delete(f->st, "u/keep.mp4"), 0);
    assert_int_equal(reel_store_delete(f->st, "never/was"), 0);
}

static void test_bad_keys(void **state)
{
    Fix *f = *state;
    static const char *bad[] = {"../x",  "a/../../x", "/etc/passwd", "a//b",  "a/", ".",   "..",
                                "a/./b", "a\\b",      "a\nb",        "a\x7f", "",   "x/.."};
    char src[PATH_MAX], out[PATH_MAX], p[PATH_MAX];
    unsigned char buf[4];
    ReelStoreInfo info;

    path_in(f, "src.bin", src, sizeof(src));
    path_in(f, "out.bin", out, sizeof(out));
    assert_int_equal(tu_write_file(src, 7, 10), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(reel_store_put_file(f->st, bad[i], src), REEL_ERR(EINVAL));
        assert_non_null(strstr(reel_store_errmsg(f->st), "invalid key"));
        assert_int_equal(reel_store_get_file(f->st, bad[i], out), REEL_ERR(EINVAL));
        assert_int_equal(reel_store_get_range(f->st, bad[i], 0, buf, 4), REEL_ERR(EINVAL));
        assert_int_equal(reel_store_head(f->st, bad[i], &info), REEL_ERR(EINVAL));
        assert_int_equal(reel_store_delete(f->st, bad[i]), REEL_ERR(EINVAL));
        assert_int_equal(reel_store_local_path(f->st, bad[i], p, sizeof(p)), REEL_ERR(EINVAL));
    }
    assert_int_equal(reel_store_put_file(f->st, NULL, src), REEL_ERR(EINVAL));
    /* nothing escaped the root: the test folder holds src.bin and objects/ only */
    assert_int_equal(tu_count_entries(f->dir, NULL), 2);
    assert_int_equal(access(out, F_OK), -1);
    /* a sibling folder named like the root is not reachable either */
    assert_int_equal(reel_store_put_file(f->st, "..deeper/x", src), 0); /* a legal name */
    tu_fmt(p, sizeof(p), "%s/..deeper/x", f->root);
    assert_int_equal(access(p, F_OK), 0);
}

static void test_presign_unsupported(void **state)
{
    Fix *f = *state;
    char url[256];
    assert_int_equal(reel_store_presign_get(f->st, "a/b", 60, url, sizeof(url)), REEL_ERR(ENOTSUP));
}

/* ---- atomic publish -------------------------------------------------------------------- */

#define SIZE_A ((int64_t)6 << 20)
#define SIZE_B ((int64_t)9 << 20)

typedef struct Race {
    Fix *f;
    atomic_int stop;
    int bad; /* a reader saw something it must not */
    int reads;
} Race;

static void *reader(void *arg)
{
    Race *r = arg;
    char dst[PATH_MAX];
    unsigned char head[64];
    ReelStoreInfo info;
    Seen s;

    path_in(r->f, "reader.bin", dst, sizeof(dst));
    while (!r->stop) {
        int ret = reel_store_head(r->f->st, "pub/x.mp4", &info);
        if (ret == 0 && info.size != SIZE_A && info.size != SIZE_B)
            r->bad++;
        memset(&s, 0, sizeof(s));
        if (reel_store_list(r->f->st, "pub/", collect, &s) < 0 || s.n > 1 ||
            (s.n == 1 && strcmp(s.keys[0], "pub/x.mp4")))
            r->bad++;
        if (reel_store_get_file(r->f->st, "pub/x.mp4", dst) == 0) {
            /* a whole A or a whole B, never a mix or a prefix */
            if (!tu_check_file(dst, 11, SIZE_A) && !tu_check_file(dst, 12, SIZE_B))
                r->bad++;
            r->reads++;
        }
        if (reel_store_get_range(r->f->st, "pub/x.mp4", 0, head, sizeof(head)) == 64 &&
            !tu_check_buf(head, 11, 0, 64) && !tu_check_buf(head, 12, 0, 64))
            r->bad++;
    }
    return NULL;
}

static void test_atomic_publish(void **state)
{
    Fix *f = *state;
    char a[PATH_MAX], b[PATH_MAX], pubdir[PATH_MAX];
    Race r = {.f = f};
    pthread_t t;

    path_in(f, "a.bin", a, sizeof(a));
    path_in(f, "b.bin", b, sizeof(b));
    assert_int_equal(tu_write_file(a, 11, SIZE_A), 0);
    assert_int_equal(tu_write_file(b, 12, SIZE_B), 0);
    assert_int_equal(reel_store_put_file(f->st, "pub/x.mp4", a), 0);
    assert_int_equal(pthread_create(&t, NULL, reader, &r), 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(reel_store_put_file(f->st, "pub/x.mp4", i % 2 ? a : b), 0);
    r.stop = 1;
    pthread_join(t, NULL);
    assert_int_equal(r.bad, 0);
    assert_true(r.reads > 0);
    tu_fmt(pubdir, sizeof(pubdir), "%s/pub", f->root);
    assert_int_equal(tu_count_entries(pubdir, NULL), 1);
}

/* ---- error sentences across threads ------------------------------------------------------ */

typedef struct ErrArg {
    ReelStore *st;
    const char *key;
} ErrArg;

static void *fail_once(void *arg)
{
    ErrArg *e = arg;
    ReelStoreInfo info;
    reel_store_head(e->st, e->key, &info);
    return NULL;
}

static void test_errmsg_threads(void **state)
{
    Fix *f = *state;
    ErrArg e = {f->st, "from/helper"};
    ReelStoreInfo info;
    pthread_t t;
    char path[PATH_MAX];

    /* a helper thread fails; the joining thread reads its sentence */
    assert_int_equal(pthread_create(&t, NULL, fail_once, &e), 0);
    pthread_join(t, NULL);
    assert_non_null(strstr(reel_store_errmsg(f->st), "from/helper"));
    /* this thread fails, then another one: this thread still reads its own */
    assert_int_equal(reel_store_head(f->st, "mine/x", &info), REEL_ERR(ENOENT));
    e.key = "other/y";
    assert_int_equal(pthread_create(&t, NULL, fail_once, &e), 0);
    pthread_join(t, NULL);
    assert_non_null(strstr(reel_store_errmsg(f->st), "mine/x"));
    /* after a call of its own that worked, the store's latest failure */
    assert_int_equal(reel_store_local_path(f->st, "ok/key", path, sizeof(path)), 0);
    assert_non_null(strstr(reel_store_errmsg(f->st), "other/y"));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presign_unsupported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_atomic_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errmsg_threads, setup, teardown),
    };

    tu_fmt(scratch, sizeof(scratch), "%s", argc > 1 ? argv[1] : "/tmp");
    mkdir(scratch, 0755);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
