/*
 * test_pages.c - core/pages: blocks small and big are 64-byte aligned and
 * usable to their capacity, a big block's first `need` bytes are resident
 * before anything writes them (outside ASan, where blocks are malloc'd), and
 * its bytes past `need` are not (past the huge page `need` ends in, for a
 * block of 2 MiB or more); such a block may take huge pages where the
 * system's policy is madvise; blocks mapped one after another do not lie end
 * to end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/pages.h"

#if !defined(__SANITIZE_ADDRESS__)
/* pages of [p, p + len) in memory, counted by mincore (p page-aligned) */
static size_t resident_pages(void *p, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (len + page - 1) / page, in = 0;
    unsigned char *vec = malloc(n);

    assert_non_null(vec);
    assert_int_equal(mincore(p, len, vec), 0);
    for (size_t i = 0; i < n; i++)
        in += vec[i] & 1;
    free(vec);
    return in;
}

/* The THPeligible field of the mapping that holds p (/proc/self/smaps), -1
 * when there is none */
static int thp_eligible(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int in = 0, v = -1;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        char perms[5];

        if (sscanf(line, "%lx-%lx %4s ", &lo, &hi, perms) == 3) /* a mapping's first line */
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (in && sscanf(line, "THPeligible: %d", &v) == 1)
            break;
    }
    fclose(f);
    return v;
}

/* the system's THP policy is madvise: only advised mappings are eligible */
static int thp_madvise(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char text[128] = "";

    if (f) {
        if (!fgets(text, sizeof(text), f))
            text[0] = 0;
        fclose(f);
    }
    return strstr(text, "[madvise]") != NULL;
}
#endif

static void use(uint8_t *p, size_t need, size_t cap)
{
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    memset(p, 0xa5, cap);
    assert_int_equal(p[0], 0xa5);
    assert_int_equal(p[need ? need - 1 : 0], 0xa5);
    assert_int_equal(p[cap - 1], 0xa5);
}

static void test_small(void **state)
{
    static const size_t sizes[][2] = {{0, 64}, {1, 64}, {100, 128}, {4096, 4608}};

    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *p = reel_pages_new(sizes[i][0], sizes[i][1]);

        use(p, sizes[i][0], sizes[i][1]);
        reel_pages_free(p, sizes[i][1]);
    }
    reel_pages_free(NULL, 0);
    reel_pages_free(NULL, (size_t)8 << 20);
}

static void test_big(void **state)
{
    /* x4fast's Winograd weights for one layer and lane (576 KiB), 3 MiB in use
     * of 4.5, 5 MiB of 12 */
    static const size_t sizes[][2] = {{(size_t)576 << 10, (size_t)576 << 10},
                                      {(size_t)3 << 20, (size_t)9 << 19},
                                      {(size_t)5 << 20, (size_t)12 << 20}};

    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t need = sizes[i][0], cap = sizes[i][1];
        uint8_t *p = reel_pages_new(need, cap);

        assert_non_null(p);
#if !defined(__SANITIZE_ADDRESS__)
        size_t page = (size_t)sysconf(_SC_PAGESIZE), huge = (size_t)2 << 20;

        /* mapped: page-aligned, need faulted in by the one call, the rest not yet
         * (a huge page is faulted in whole) */
        size_t in = need;

        if (cap >= huge) {
            in = ((uintptr_t)p + need + huge - 1) / huge * huge - (uintptr_t)p;
            in = in < cap ? in : cap;
        }

        assert_int_equal((uintptr_t)p % page, 0);
        assert_int_equal(resident_pages(p, need), need / page);
        if (in < cap)
            assert_int_equal(resident_pages(p + in, cap - in), 0);
        if (cap >= huge && thp_madvise())
            assert_int_equal(thp_eligible(p), 1);
#endif
        use(p, need, cap);
        reel_pages_free(p, cap);
    }
}

/* Blocks mapped one after another lie 256 KiB apart at least: the kernel
 * would place them end to end (pages.c, guard). */
static void test_apart(void **state)
{
    static const size_t caps[] = {(size_t)256 << 10, (size_t)576 << 10, (size_t)3 << 20,
                                  (size_t)300 << 10};
    enum { N = sizeof(caps) / sizeof(caps[0]) };
    uint8_t *p[N];

    (void)state;
    for (int i = 0; i < N; i++) {
        p[i] = reel_pages_new(caps[i], caps[i]);
        use(p[i], caps[i], caps[i]);
    }
#if !defined(__SANITIZE_ADDRESS__)
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            /* j above i: from i's end to j's start */
            if (i != j && p[j] > p[i])
                assert_true((size_t)(p[j] - (p[i] + caps[i])) >= ((size_t)256 << 10));
        }
#endif
    for (int i = 0; i < N; i++)
        reel_pages_free(p[i], caps[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small),
        cmocka_unit_test(test_big),
        cmocka_unit_test(test_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
