/*
 * queue.h - a bounded FIFO of pointers joining two pipeline stages.
 *
 * push blocks while the queue is full, pop while it is empty; abort wakes
 * everyone and makes both return REEL_ERROR_CANCELLED from then on, so a stage
 * that fails can stop its neighbours without deadlock. Items are moved: after a
 * successful push the queue owns the item, after pop the caller does. Items
 * left at uninit are released with the free function given at init.
 *
 * Thread-safety: any number of producers and consumers.
 */
#ifndef REEL_MEDIA_QUEUE_H
#define REEL_MEDIA_QUEUE_H

#include <pthread.h>

typedef struct ReelQueue {
    pthread_mutex_t lock;
    pthread_cond_t not_full, not_empty;
    void **items;      /* ring of capacity slots */
    int capacity, head, count;
    int aborted;
    void (*free_item)(void *item);
} ReelQueue;

int reel_queue_init(ReelQueue *q, int capacity, void (*free_item)(void *item));
void reel_queue_uninit(ReelQueue *q);
/** Takes ownership of item on success; on abort the caller keeps it. */
int reel_queue_push(ReelQueue *q, void *item);
/** 0 with *item set, or REEL_ERROR_CANCELLED once aborted. */
int reel_queue_pop(ReelQueue *q, void **item);
void reel_queue_abort(ReelQueue *q);

#endif
