/*
 * testutil.h - small helpers shared by the storage tests: scratch folders,
 * files of known pseudo-random content, comparisons. Header-only (static), so
 * each test program stays one file plus this.
 */
#ifndef REEL_TESTS_STORAGE_TESTUTIL_H
#define REEL_TESTS_STORAGE_TESTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* snprintf for test paths: truncation is a test bug, so abort on it */
static inline void tu_fmt(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void tu_fmt(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        abort();
}

/* Deterministic bytes: byte i of stream `seed` (xorshift of the position). */
static inline unsigned char tu_byte(uint64_t seed, uint64_t i)
{
    uint64_t x = (i / 8 + 1) * 0x9E3779B97F4A7C15ull ^ (seed * 0xD1B54A32D192ED03ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (unsigned char)(x >> (8 * (i % 8)));
}

/* Write size bytes of stream seed to path; 0 or -1. */
static inline int tu_write_file(const char *path, uint64_t seed, int64_t size)
{
    unsigned char buf[1 << 16];
    FILE *f = fopen(path, "wb");
    int64_t done = 0;

    if (!f)
        return -1;
    while (done < size) {
        size_t n = size - done < (int64_t)sizeof(buf) ? (size_t)(size - done) : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = tu_byte(seed, (uint64_t)(done + (int64_t)i));
        if (fwrite(buf, 1, n, f) != n) {
            fclose(f);
            return -1;
        }
        done += (int64_t)n;
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* 1 if path holds exactly size bytes of stream seed. */
static inline int tu_check_file(const char *path, uint64_t seed, int64_t size)
{
    unsigned char buf[1 << 16];
    FILE *f = fopen(path, "rb");
    int64_t done = 0;
    size_t n;

    if (!f)
        return 0;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        for (size_t i = 0; i < n; i++)
            if (done + (int64_t)i >= size ||
                buf[i] != tu_byte(seed, (uint64_t)(done + (int64_t)i))) {
                fclose(f);
                return 0;
            }
        done += (int64_t)n;
    }
    fclose(f);
    return done == size;
}

/* 1 if buf holds bytes [off, off + n) of stream seed. */
static inline int tu_check_buf(const void *buf, uint64_t seed, int64_t off, size_t n)
{
    const unsigned char *b = buf;
    for (size_t i = 0; i < n; i++)
        if (b[i] != tu_byte(seed, (uint64_t)off + i))
            return 0;
    return 1;
}

static inline int tu_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

static inline void tu_rm_rf(const char *path)
{
    nftw(path, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh folder under base (or /tmp) named after tag; written to out. */
static inline int tu_mkdtemp(char *out, size_t size, const char *base, const char *tag)
{
    if ((size_t)snprintf(out, size, "%s/%s-XXXXXX", base && *base ? base : "/tmp", tag) >= size)
        return -1;
    mkdir(base && *base ? base : "/tmp", 0755);
    return mkdtemp(out) ? 0 : -1;
}

/* Number of entries in dir whose name contains needle (NULL: all but . and ..). */
static inline int tu_count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            (!needle || strstr(e->d_name, needle)))
            n++;
    closedir(d);
    return n;
}

/* Recursively count files under dir whose name contains needle. */
static inline int tu_count_tree(const char *dir, const char *needle)
{
    char p[4096];
    DIR *d = opendir(dir);
    struct dirent *e;
    struct stat sb;
    int n = 0;

    if (!d)
        return 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        tu_fmt(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            n += tu_count_tree(p, needle);
        else if (strstr(e->d_name, needle))
            n++;
    }
    closedir(d);
    return n;
}

#endif
