/*
 * web_assets.h - the web page (the html, js and css files of web/) embedded in the binary
 * at build time by cmake/embed_web.cmake. The table ends with a zeroed entry.
 */
#ifndef REEL_SERVER_WEB_ASSETS_H
#define REEL_SERVER_WEB_ASSETS_H

#include <stddef.h>

typedef struct ReelWebAsset {
    const char *path; /**< "/index.html", "/app.js", ... */
    const char *content_type;
    const unsigned char *data; /**< NUL-terminated for convenience; size excludes it */
    size_t size;
} ReelWebAsset;

extern const ReelWebAsset reel_web_assets[];

#endif
