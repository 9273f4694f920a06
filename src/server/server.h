/*
 * server.h - `clipreel serve`: the Reel Ballers multi-clip export API over
 * HTTP + WebSocket (DESIGN section 6), with the embedded defaults of section 1:
 * a local object store under <data>/objects, a SQLite job store <data>/jobs.db
 * and an in-process worker pool. docs/service.md is the user's guide;
 * docs/internals/server.md explains the code.
 *
 * Threads: civetweb runs each request (and each open WebSocket) on a thread of
 * its pool; exports run on the executor's workers; progress reaches WebSocket
 * clients through the hub's sender threads. No handler ever waits for an
 * export: a POST returns as soon as its job row is committed.
 *
 * Thread-safety: reel_server_start/stop from one controlling thread.
 */
#ifndef REEL_SERVER_SERVER_H
#define REEL_SERVER_SERVER_H

#include "server/config.h"

typedef struct ReelServer ReelServer;

/**
 * Open the stores, repair and start the executor, and listen. cfg is copied and
 * must have passed reel_server_config_finish().
 * @return 0, or a negative error with errmsg (REEL_ERRMSG_SIZE) set.
 */
int reel_server_start(ReelServer **out, const ReelServerConfig *cfg, char *errmsg);

/** The TCP port actually listened on (useful with port 0). */
int reel_server_port(const ReelServer *srv);

/**
 * Stop: running exports are interrupted and stay pending for the next start,
 * connections are closed, everything is freed. NULL-safe.
 */
void reel_server_stop(ReelServer **srv);

#endif
