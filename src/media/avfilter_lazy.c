/*
 * avfilter_lazy.c - libavfilter, loaded on first use (avfilter_lazy.h).
 */
#include "media/avfilter_lazy.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include <libavutil/macros.h>

#include "core/log.h"

#define AVFILTER_SONAME "libavfilter.so." AV_STRINGIFY(LIBAVFILTER_VERSION_MAJOR)

static ReelAvfilter table;
static const ReelAvfilter *loaded; /* &table once every function is found */
static char why[256];              /* when not */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
    void *lib = dlopen(AVFILTER_SONAME, RTLD_NOW | RTLD_LOCAL);
    const char *missing = NULL;

    if (!lib) {
        snprintf(why, sizeof(why), "cannot load %s: %s", AVFILTER_SONAME, dlerror());
        goto fail;
    }
#define FIND(field, symbol)                                                                        \
    if (!missing && !(*(void **)&table.field = dlsym(lib, #symbol)))                               \
    missing = #symbol
    FIND(graph_alloc, avfilter_graph_alloc);
    FIND(graph_free, avfilter_graph_free);
    FIND(graph_alloc_filter, avfilter_graph_alloc_filter);
    FIND(graph_create_filter, avfilter_graph_create_filter);
    FIND(graph_config, avfilter_graph_config);
    FIND(get_by_name, avfilter_get_by_name);
    FIND(init_str, avfilter_init_str);
    FIND(link, avfilter_link);
    FIND(buffersrc_add_frame_flags, av_buffersrc_add_frame_flags);
    FIND(buffersink_get_frame, av_buffersink_get_frame);
#undef FIND
    if (missing) {
        snprintf(why, sizeof(why), "%s has no %s", AVFILTER_SONAME, missing);
        dlclose(lib);
        goto fail;
    }
    loaded = &table; /* the library stays loaded for the process's life */
    return;
fail:
    reel_log(REEL_LOG_ERROR, "media", "%s (speed changes need libavfilter's atempo)", why);
}

const ReelAvfilter *reel_avfilter(void)
{
    pthread_once(&once, load);
    return loaded;
}
