/*
 * redis_helper.h - start and stop a real redis-server for the scale-out tests.
 *
 * The server runs in the foreground as our child with PR_SET_PDEATHSIG, so it
 * dies with the test process even when a test aborts; redis_stop kills it
 * (SIGKILL: a crash, which is what the durability test wants) and reaps it.
 */
#ifndef REEL_TESTS_REDIS_HELPER_H
#define REEL_TESTS_REDIS_HELPER_H

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

typedef struct TestRedis {
    pid_t pid;
    int port;
    char dir[256];
    char url[64];
} TestRedis;

static inline void test_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline int test_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Start redis-server on r->port (0: a free one) in r->dir; aof: appendonly + fsync always. */
static inline int redis_start(TestRedis *r, int aof)
{
    char port[16];
    pid_t pid;

    if (!r->port)
        r->port = test_free_port();
    if (!r->dir[0])
        snprintf(r->dir, sizeof(r->dir), "/tmp/reel-redis-XXXXXX");
    if (!strstr(r->dir, "XXXXXX") || mkdtemp(r->dir)) {
        /* dir exists (restart) or was just made */
    }
    snprintf(port, sizeof(port), "%d", r->port);
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", r->port);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen("/dev/null", "w", stdout))
            _exit(126);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", aof ? "yes" : "no", "--appendfsync", "always", "--dir", r->dir,
               "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 200; i++) {
        struct timeval tv = {1, 0};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
        if (c && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS;
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c) {
            redisFree(c);
        }
        test_sleep_ms(25);
    }
    return -1;
}

static inline void redis_stop(TestRedis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}

static inline void redis_remove(TestRedis *r)
{
    char cmd[320];
    redis_stop(r);
    if (r->dir[0] && !strstr(r->dir, "XXXXXX")) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", r->dir);
    }
}

#endif
