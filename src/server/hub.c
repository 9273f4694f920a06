/*
 * hub.c - latest-frame channels and the sender threads (see hub.h).
 *
 * Lock invariants (hub->lock guards everything below):
 *  - a client is in hub->queue at most once (c->queued), and never while a
 *    sender writes to it (c->writing): frames reach each client in order;
 *  - c->refs counts: 1 while attached, 1 while queued, 1 while a sender writes;
 *    the client is freed when refs drops to 0;
 *  - c->writing is set only by a sender, around mg_websocket_write, which runs
 *    WITHOUT the lock; reel_hub_detach waits on hub->idle until it is clear;
 *  - frames are refcounted so that a sender can write one without the lock
 *    while a publisher replaces it.
 */
#include "server/hub.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "core/error.h"
#include "core/log.h"

#define NB_BUCKETS 256

typedef struct Frame {
    int refs;
    size_t len;
    char text[];
} Frame;

typedef struct Channel Channel;

struct ReelHubClient {
    struct mg_connection *conn;
    Channel *channel;
    ReelHubClient *next_in_channel;
    ReelHubClient *next_in_queue;
    unsigned long long sent_seq;
    int refs;
    int queued, writing, detached, dead;
};

struct Channel {
    char *key;
    Channel *next;
    Frame *frame;
    unsigned long long seq;
    int terminal;
    ReelHubClient *clients;
    int nb_clients;
};

struct ReelHub {
    pthread_mutex_t lock;
    pthread_cond_t work; /* queue not empty, or stop */
    pthread_cond_t idle; /* a write finished */
    Channel *buckets[NB_BUCKETS];
    ReelHubClient *queue_head, *queue_tail;
    pthread_t *threads;
    int nb_threads;
    int stop;
    int nb_channels, nb_clients;
    long long frames_sent;
};

static unsigned hash_key(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % NB_BUCKETS;
}

static void frame_unref(Frame *f)
{
    if (f && --f->refs == 0)
        free(f);
}

static Channel *find_channel(ReelHub *hub, const char *key, int create)
{
    unsigned h = hash_key(key);
    Channel *ch;

    for (ch = hub->buckets[h]; ch; ch = ch->next)
        if (!strcmp(ch->key, key))
            return ch;
    if (!create)
        return NULL;
    if (!(ch = calloc(1, sizeof(*ch))) || !(ch->key = strdup(key))) {
        free(ch);
        return NULL;
    }
    ch->next = hub->buckets[h];
    hub->buckets[h] = ch;
    hub->nb_channels++;
    return ch;
}

static void remove_channel(ReelHub *hub, Channel *ch)
{
    Channel **pp = &hub->buckets[hash_key(ch->key)];

    while (*pp && *pp != ch)
        pp = &(*pp)->next;
    if (*pp)
        *pp = ch->next;
    frame_unref(ch->frame);
    free(ch->key);
    free(ch);
    hub->nb_channels--;
}

/* A channel nobody watches is only kept while its export is still running. */
static void maybe_remove_channel(ReelHub *hub, Channel *ch)
{
    if (!ch->clients && (!ch->frame || ch->terminal))
        remove_channel(hub, ch);
}

static void client_unref(ReelHub *hub, ReelHubClient *c)
{
    (void)hub;
    if (--c->refs == 0)
        free(c);
}

static void enqueue(ReelHub *hub, ReelHubClient *c)
{
    /* A client being written to is re-queued by its sender afterwards: one
     * writer per client at a time keeps its frames in order. */
    if (c->queued || c->writing || c->dead || c->detached)
        return;
    c->queued = 1;
    c->refs++;
    c->next_in_queue = NULL;
    if (hub->queue_tail)
        hub->queue_tail->next_in_queue = c;
    else
        hub->queue_head = c;
    hub->queue_tail = c;
    pthread_cond_signal(&hub->work);
}

static void *sender_main(void *arg)
{
    ReelHub *hub = arg;

    pthread_mutex_lock(&hub->lock);
    for (;;) {
        ReelHubClient *c;
        Frame *f;
        unsigned long long seq;
        int r;

        while (!hub->queue_head && !hub->stop)
            pthread_cond_wait(&hub->work, &hub->lock);
        if (hub->stop)
            break;
        c = hub->queue_head;
        hub->queue_head = c->next_in_queue;
        if (!hub->queue_head)
            hub->queue_tail = NULL;
        c->queued = 0;
        if (c->detached || c->dead || !c->channel->frame || c->channel->seq == c->sent_seq) {
            client_unref(hub, c);
            continue;
        }
        f = c->channel->frame;
        f->refs++;
        seq = c->channel->seq;
        c->writing = 1;
        pthread_mutex_unlock(&hub->lock);

        r = mg_websocket_write(c->conn, MG_WEBSOCKET_OPCODE_TEXT, f->text, f->len);

        pthread_mutex_lock(&hub->lock);
        frame_unref(f);
        c->writing = 0;
        if (r <= 0) {
            /* The peer is gone or stuck past the write timeout: stop feeding it;
             * civetweb closes it and the close handler detaches it. */
            c->dead = 1;
        } else {
            c->sent_seq = seq;
            hub->frames_sent++;
        }
        if (c->detached)
            pthread_cond_broadcast(&hub->idle);
        else if (!c->dead && c->channel->seq != c->sent_seq)
            enqueue(hub, c);
        client_unref(hub, c);
    }
    pthread_mutex_unlock(&hub->lock);
    return NULL;
}

int reel_hub_create(ReelHub **out, int senders)
{
    ReelHub *hub;

    *out = NULL;
    if (senders < 1)
        senders = 1;
    if (!(hub = calloc(1, sizeof(*hub))) ||
        !(hub->threads = calloc((size_t)senders, sizeof(*hub->threads)))) {
        free(hub);
        return REEL_ERR(ENOMEM);
    }
    pthread_mutex_init(&hub->lock, NULL);
    pthread_cond_init(&hub->work, NULL);
    pthread_cond_init(&hub->idle, NULL);
    for (int i = 0; i < senders; i++) {
        if (pthread_create(&hub->threads[i], NULL, sender_main, hub)) {
            reel_log(REEL_LOG_ERROR, "hub", "cannot start sender thread %d", i);
            break;
        }
        hub->nb_threads++;
    }
    if (!hub->nb_threads) {
        reel_hub_free(&hub);
        return REEL_ERR(EAGAIN);
    }
    *out = hub;
    return 0;
}

void reel_hub_free(ReelHub **phub)
{
    ReelHub *hub = *phub;

    if (!hub)
        return;
    pthread_mutex_lock(&hub->lock);
    hub->stop = 1;
    pthread_cond_broadcast(&hub->work);
    pthread_mutex_unlock(&hub->lock);
    for (int i = 0; i < hub->nb_threads; i++)
        pthread_join(hub->threads[i], NULL);
    /* Clients still queued hold a reference each; attached ones are a caller bug. */
    while (hub->queue_head) {
        ReelHubClient *c = hub->queue_head;
        hub->queue_head = c->next_in_queue;
        client_unref(hub, c);
    }
    for (int b = 0; b < NB_BUCKETS; b++)
        while (hub->buckets[b])
            remove_channel(hub, hub->buckets[b]);
    pthread_cond_destroy(&hub->idle);
    pthread_cond_destroy(&hub->work);
    pthread_mutex_destroy(&hub->lock);
    free(hub->threads);
    free(hub);
    *phub = NULL;
}

int reel_hub_publish(ReelHub *hub, const char *key, const char *json, int terminal,
                     int only_if_empty)
{
    size_t len = strlen(json);
    Channel *ch;
    Frame *f;

    if (!(f = malloc(sizeof(*f) + len + 1)))
        return REEL_ERR(ENOMEM);
    f->refs = 1;
    f->len = len;
    memcpy(f->text, json, len + 1);

    pthread_mutex_lock(&hub->lock);
    if (!(ch = find_channel(hub, key, 1))) {
        pthread_mutex_unlock(&hub->lock);
        free(f);
        return REEL_ERR(ENOMEM);
    }
    if (only_if_empty && ch->frame) {
        pthread_mutex_unlock(&hub->lock);
        free(f);
        return 0;
    }
    frame_unref(ch->frame);
    ch->frame = f;
    ch->seq++;
    ch->terminal = terminal;
    for (ReelHubClient *c = ch->clients; c; c = c->next_in_channel)
        enqueue(hub, c);
    maybe_remove_channel(hub, ch);
    pthread_mutex_unlock(&hub->lock);
    return 0;
}

int reel_hub_attach(ReelHub *hub, const char *key, struct mg_connection *conn, ReelHubClient **out)
{
    ReelHubClient *c;
    Channel *ch;

    *out = NULL;
    if (!(c = calloc(1, sizeof(*c))))
        return REEL_ERR(ENOMEM);
    c->conn = conn;
    c->refs = 1;
    pthread_mutex_lock(&hub->lock);
    if (!(ch = find_channel(hub, key, 1))) {
        pthread_mutex_unlock(&hub->lock);
        free(c);
        return REEL_ERR(ENOMEM);
    }
    c->channel = ch;
    c->next_in_channel = ch->clients;
    ch->clients = c;
    ch->nb_clients++;
    hub->nb_clients++;
    if (ch->frame)
        enqueue(hub, c);
    pthread_mutex_unlock(&hub->lock);
    *out = c;
    return 0;
}

void reel_hub_detach(ReelHub *hub, ReelHubClient **pc)
{
    ReelHubClient *c = *pc, **pp;
    Channel *ch;

    if (!c)
        return;
    pthread_mutex_lock(&hub->lock);
    c->detached = 1;
    ch = c->channel;
    for (pp = &ch->clients; *pp && *pp != c; pp = &(*pp)->next_in_channel)
        ;
    if (*pp) {
        *pp = c->next_in_channel;
        ch->nb_clients--;
        hub->nb_clients--;
    }
    while (c->writing)
        pthread_cond_wait(&hub->idle, &hub->lock);
    maybe_remove_channel(hub, ch);
    /* A queued entry keeps the client alive; the sender skips it (detached). */
    client_unref(hub, c);
    pthread_mutex_unlock(&hub->lock);
    *pc = NULL;
}

void reel_hub_stats(ReelHub *hub, int *channels, int *clients, long long *frames_sent)
{
    pthread_mutex_lock(&hub->lock);
    if (channels)
        *channels = hub->nb_channels;
    if (clients)
        *clients = hub->nb_clients;
    if (frames_sent)
        *frames_sent = hub->frames_sent;
    pthread_mutex_unlock(&hub->lock);
}
