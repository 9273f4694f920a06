/*
 * s3_helper.h - start and stop an S3-compatible server (s3rver, through
 * tests/storage/s3rver.js) for the scale-out tests.
 *
 * The npm package @20minutes/s3rver@4.0.4 is installed on first use into the
 * node prefix the storage tests use (one install per build tree, under a lock,
 * as test_store_s3 does). The server is our child with PR_SET_PDEATHSIG, so it
 * never outlives the test; bucket "test", credentials S3RVER/S3RVER.
 */
#ifndef REEL_TESTS_S3_HELPER_H
#define REEL_TESTS_S3_HELPER_H

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_S3RVER_PKG "@20minutes/s3rver@4.0.4"

typedef struct TestS3 {
    pid_t pid;
    int port;
    int out_fd; /* its stdout, kept open (and unread: it logs only on demand) */
    char endpoint[64];
    char dir[PATH_MAX];
} TestS3;

/* Install s3rver into prefix if missing. 0 or -1. */
static inline int s3_ensure_package(const char *npm, const char *prefix)
{
    char marker[PATH_MAX + 64], lock[PATH_MAX + 8];
    int fd, rc = 0;

    snprintf(marker, sizeof(marker), "%s/node_modules/@20minutes/s3rver/package.json", prefix);
    if (access(marker, R_OK) == 0)
        return 0;
    if (!npm || !*npm)
        return -1;
    mkdir(prefix, 0755);
    snprintf(lock, sizeof(lock), "%s.lock", prefix);
    if ((fd = open(lock, O_CREAT | O_RDWR | O_CLOEXEC, 0644)) < 0 || flock(fd, LOCK_EX) < 0)
        return -1;
    if (access(marker, R_OK) != 0) {
        pid_t pid = fork();
        int status = 0;
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            execlp(npm, npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix",
                   prefix, TEST_S3RVER_PKG, (char *)NULL);
            _exit(127);
        }
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0 || access(marker, R_OK) != 0)
            rc = -1;
    }
    close(fd);
    return rc;
}

/* Start s3rver.js on port (a free one chosen by the caller) with its objects in dir. */
static inline int s3_start(TestS3 *s, const char *node, const char *script, const char *prefix)
{
    char portstr[16], modules[PATH_MAX + 32], line[256];
    size_t ll = 0;
    int pfd[2];

    snprintf(portstr, sizeof(portstr), "%d", s->port);
    snprintf(modules, sizeof(modules), "%s/node_modules", prefix);
    snprintf(s->endpoint, sizeof(s->endpoint), "http://127.0.0.1:%d", s->port);
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    if ((s->pid = fork()) < 0)
        return -1;
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pfd[1], 1);
        setenv("NODE_PATH", modules, 1);
        execl(node, node, script, portstr, s->dir, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    for (int waited = 0; waited < 30000;) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        char c;
        if (poll(&p, 1, 100) <= 0) {
            waited += 100;
            continue;
        }
        if (read(pfd[0], &c, 1) != 1)
            break;
        if (c != '\n') {
            if (ll < sizeof(line) - 1)
                line[ll++] = c;
            continue;
        }
        line[ll] = 0;
        ll = 0;
        if (!strcmp(line, "ready")) {
            s->out_fd = pfd[0];
            return 0;
        }
    }
    close(pfd[0]);
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

static inline void s3_stop(TestS3 *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        for (int i = 0; i < 50; i++) {
            if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
                s->pid = 0;
                break;
            }
            usleep(100000);
        }
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->pid = 0;
        }
        close(s->out_fd);
    }
}

#endif
