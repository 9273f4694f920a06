/*
 * avfilter_lazy.h - libavfilter, loaded on first use.
 *
 * Only a clip with a speed change needs libavfilter (its atempo chain,
 * audio.c), and loading it with the process cost every start of clipreel
 * ~20 ms (its own dependencies: 31 more shared libraries), ~40 % of the
 * binary's start-up (docs/PERFORMANCE.md, Start-up). So clipreel does not
 * link it: the first caller of reel_avfilter() loads the libavfilter whose
 * major version the build's headers name (libavfilter.so.N) and looks up the
 * functions below; later callers get the same table. Thread-safe.
 */
#ifndef REEL_MEDIA_AVFILTER_LAZY_H
#define REEL_MEDIA_AVFILTER_LAZY_H

#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>

/** The functions of libavfilter that clipreel calls, with their own prototypes. */
typedef struct ReelAvfilter {
    __typeof__(avfilter_graph_alloc) *graph_alloc;
    __typeof__(avfilter_graph_free) *graph_free;
    __typeof__(avfilter_graph_alloc_filter) *graph_alloc_filter;
    __typeof__(avfilter_graph_create_filter) *graph_create_filter;
    __typeof__(avfilter_graph_config) *graph_config;
    __typeof__(avfilter_get_by_name) *get_by_name;
    __typeof__(avfilter_init_str) *init_str;
    __typeof__(avfilter_link) *link;
    __typeof__(av_buffersrc_add_frame_flags) *buffersrc_add_frame_flags;
    __typeof__(av_buffersink_get_frame) *buffersink_get_frame;
} ReelAvfilter;

/**
 * The loaded table, or NULL when libavfilter cannot be loaded or lacks a
 * function: then the reason (which file, dlerror's text) is logged once, as
 * an error, and callers fail with AVERROR_FILTER_NOT_FOUND.
 */
const ReelAvfilter *reel_avfilter(void);

#endif
