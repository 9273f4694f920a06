/*
 * queue.c - bounded FIFO between pipeline stages; see queue.h.
 */
#include "media/queue.h"

#include <errno.h>
#include <stdlib.h>

#include "core/error.h"

int reel_queue_init(ReelQueue *q, int capacity, void (*free_item)(void *item))
{
    q->items = calloc((size_t)capacity, sizeof(*q->items));
    if (!q->items)
        return REEL_ERR(ENOMEM);
    q->capacity = capacity;
    q->head = q->count = 0;
    q->aborted = 0;
    q->free_item = free_item;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_full, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    return 0;
}

void reel_queue_uninit(ReelQueue *q)
{
    if (!q->items)
        return;
    for (int i = 0; i < q->count; i++) {
        void *it = q->items[(q->head + i) % q->capacity];
        if (q->free_item && it)
            q->free_item(it);
    }
    free(q->items);
    q->items = NULL;
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
}

int reel_queue_push(ReelQueue *q, void *item)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == q->capacity && !q->aborted)
        pthread_cond_wait(&q->not_full, &q->lock);
    if (q->aborted) {
        pthread_mutex_unlock(&q->lock);
        return REEL_ERROR_CANCELLED;
    }
    q->items[(q->head + q->count) % q->capacity] = item;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

int reel_queue_pop(ReelQueue *q, void **item)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0 && !q->aborted)
        pthread_cond_wait(&q->not_empty, &q->lock);
    if (q->aborted) {
        pthread_mutex_unlock(&q->lock);
        return REEL_ERROR_CANCELLED;
    }
    *item = q->items[q->head];
    q->head = (q->head + 1) % q->capacity;
    q->count--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

void reel_queue_abort(ReelQueue *q)
{
    pthread_mutex_lock(&q->lock);
    q->aborted = 1;
    pthread_cond_broadcast(&q->not_full);
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}
