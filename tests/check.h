/*
 * check.h - a check that does not stop the test, for the plain-C test
 * programs (the ones without cmocka): a failed CHECK prints where and why and
 * counts in `failures`; the program returns non-zero at the end when any did.
 * One translation unit per program includes it.
 */
#ifndef REEL_TESTS_CHECK_H
#define REEL_TESTS_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#endif
