/*
 * png_io.h - read and write PNG files as packed RGB24, for the upscale CLI and
 * the tests.
 *
 * Reading converts every PNG flavour to 8-bit RGB: palette and low-bit-depth
 * images are expanded, gray is replicated to three channels, 16-bit samples
 * are scaled to 8 bits, and alpha is dropped (not composited, like a video
 * frame converted to rgb24). Gamma and colour-space chunks are ignored: the
 * bytes are taken as they are.
 *
 * Thread-safety: no shared state; safe from any thread.
 */
#ifndef REEL_UPSCALE_PNG_IO_H
#define REEL_UPSCALE_PNG_IO_H

#include <stddef.h>
#include <stdint.h>

/**
 * Read path into *rgb (w * h * 3 bytes, rows packed: stride w * 3). Returns a
 * new buffer the caller frees with free(). On error *rgb is NULL and the
 * return is REEL_ERR(errno) when the file cannot be opened, REEL_ERROR_MEDIA
 * when it is not a valid PNG (or is larger than 16384 px a side),
 * REEL_ERR(ENOMEM); errmsg (REEL_ERRMSG_SIZE, may be NULL) says why.
 */
int reel_png_read(const char *path, uint8_t **rgb, int *w, int *h, char *errmsg);

/**
 * Write w x h RGB24 pixels (stride bytes per row, borrowed) to path as an
 * 8-bit RGB PNG, replacing the file. Returns 0, or REEL_ERR(errno) /
 * REEL_ERROR_MEDIA with errmsg set; a partly written file is removed.
 */
int reel_png_write(const char *path, const uint8_t *rgb, int w, int h, ptrdiff_t stride,
                   char *errmsg);

#endif
