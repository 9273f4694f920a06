/*
 * hub.h - fan-out of progress frames to WebSocket clients.
 *
 * A channel per export key ("user\nexport_id") holds the LATEST frame only and
 * the clients watching it. Publishing replaces the frame and marks each client
 * of the channel "to send"; a few sender threads write the newest frame to each
 * marked client. So:
 *
 *  - reel_hub_publish never blocks on the network: the engine's progress
 *    callback and the HTTP handlers call it freely;
 *  - a slow or vanished client only ever holds one sender thread, for at most
 *    civetweb's write timeout, and never makes the others wait for it; frames
 *    it missed are skipped (progress is lossy by design), but it always gets
 *    the newest one, so the terminal frame reaches everyone still connected;
 *  - a client that joins late is sent the current frame at once.
 *
 * DESIGN (lifetimes): a client is attached from civetweb's ready handler and
 * detached from its close handler, both on the connection's own thread.
 * reel_hub_detach waits until no sender is writing to that connection, because
 * civetweb frees the connection as soon as the close handler returns. A channel
 * lives while it has clients or a frame that is not terminal.
 *
 * Thread-safety: every function may be called from any thread.
 */
#ifndef REEL_SERVER_HUB_H
#define REEL_SERVER_HUB_H

#include <stddef.h>

struct mg_connection;

typedef struct ReelHub ReelHub;
typedef struct ReelHubClient ReelHubClient;

/** Start a hub with `senders` writer threads (>= 1). */
int reel_hub_create(ReelHub **out, int senders);

/** Stop the senders and free everything; every client must be detached already. */
void reel_hub_free(ReelHub **hub);

/**
 * Make json (copied) the current frame of key and queue it to the key's clients.
 * terminal: the export is over; the channel goes away once nobody watches it.
 * only_if_empty: do nothing when the channel already has a frame (used to seed
 * a late joiner from the database without hiding a newer live frame).
 * @return 0 or REEL_ERR(ENOMEM).
 */
int reel_hub_publish(ReelHub *hub, const char *key, const char *json, int terminal,
                     int only_if_empty);

/** Attach conn to key; the current frame, if any, is queued to it at once. */
int reel_hub_attach(ReelHub *hub, const char *key, struct mg_connection *conn, ReelHubClient **out);

/** Detach and free a client (waits for an in-flight write to it). NULL-safe. */
void reel_hub_detach(ReelHub *hub, ReelHubClient **client);

/** Counts for /api/health and the load test. */
void reel_hub_stats(ReelHub *hub, int *channels, int *clients, long long *frames_sent);

#endif
