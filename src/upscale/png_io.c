/*
 * png_io.c - PNG <-> packed RGB24 with libpng's classic API.
 *
 * libpng reports errors by longjmp; each public function keeps everything
 * the error path must free in a struct that is filled before setjmp() and
 * only read after it, so nothing depends on local variables that setjmp may
 * clobber. The transforms ask libpng for 8-bit RGB whatever the file holds.
 */
#include "upscale/png_io.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <png.h>

#include "core/error.h"

#define MAX_SIDE 16384

typedef struct PngJob {
    jmp_buf jmp;
    char msg[256]; /* libpng's error text */
    FILE *f;
    png_structp png;
    png_infop info;
    uint8_t *pixels;
    png_bytep *rows;
} PngJob;

static void on_error(png_structp png, png_const_charp text)
{
    PngJob *job = png_get_error_ptr(png);

    snprintf(job->msg, sizeof(job->msg), "%s", text);
    longjmp(job->jmp, 1);
}

static void on_warning(png_structp png, png_const_charp text)
{
    (void)png;
    (void)text; /* benign (bad CRC in an ancillary chunk, ...) */
}

int reel_png_read(const char *path, uint8_t **rgb, int *w, int *h, char *errmsg)
{
    PngJob *job;
    png_uint_32 width, height;
    int ret, depth, color;
    unsigned char sig[8];

    *rgb = NULL;
    *w = *h = 0;
    if (!(job = calloc(1, sizeof(*job))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "%s: out of memory", path);
    if (!(job->f = fopen(path, "rb"))) {
        ret = REEL_ERR(errno);
        reel_fail(errmsg, ret, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    if (fread(sig, 1, sizeof(sig), job->f) != sizeof(sig) || png_sig_cmp(sig, 0, sizeof(sig))) {
        ret = reel_fail(errmsg, REEL_ERROR_MEDIA, "%s: not a PNG file", path);
        goto done;
    }
    job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, on_error, on_warning);
    if (!job->png || !(job->info = png_create_info_struct(job->png))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "%s: out of memory", path);
        goto done;
    }
    if (setjmp(job->jmp)) {
        ret = reel_fail(errmsg, REEL_ERROR_MEDIA, "%s: bad PNG: %s", path, job->msg);
        goto done;
    }
    png_init_io(job->png, job->f);
    png_set_sig_bytes(job->png, sizeof(sig));
    png_set_user_limits(job->png, MAX_SIDE, MAX_SIDE);
    png_read_info(job->png, job->info);
    png_get_IHDR(job->png, job->info, &width, &height, &depth, &color, NULL, NULL, NULL);
    /* to 8-bit RGB: expand palette / low gray / tRNS, 16 -> 8, gray -> RGB, no alpha */
    png_set_expand(job->png);
    png_set_scale_16(job->png);
    png_set_gray_to_rgb(job->png);
    png_set_strip_alpha(job->png);
    png_set_interlace_handling(job->png);
    png_read_update_info(job->png, job->info);
    if (png_get_channels(job->png, job->info) != 3 || png_get_bit_depth(job->png, job->info) != 8 ||
        png_get_rowbytes(job->png, job->info) != (size_t)width * 3) {
        ret = reel_fail(errmsg, REEL_ERROR_MEDIA, "%s: unsupported PNG layout", path);
        goto done;
    }
    job->pixels = malloc((size_t)width * height * 3);
    job->rows = malloc(height * sizeof(*job->rows));
    if (!job->pixels || !job->rows) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "%s: out of memory for %ux%u pixels", path,
                        (unsigned)width, (unsigned)height);
        goto done;
    }
    for (png_uint_32 y = 0; y < height; y++)
        job->rows[y] = job->pixels + (size_t)y * width * 3;
    png_read_image(job->png, job->rows);
    png_read_end(job->png, NULL);
    *rgb = job->pixels;
    *w = (int)width;
    *h = (int)height;
    job->pixels = NULL;
    ret = 0;

done:
    if (job->png)
        png_destroy_read_struct(&job->png, job->info ? &job->info : NULL, NULL);
    if (job->f)
        fclose(job->f);
    free(job->rows);
    free(job->pixels);
    free(job);
    return ret;
}

int reel_png_write(const char *path, const uint8_t *rgb, int w, int h, ptrdiff_t stride,
                   char *errmsg)
{
    char tmp[4200];
    PngJob *job;
    int ret;

    if (w < 1 || h < 1 || w > (1 << 20) || h > (1 << 20) || stride < (ptrdiff_t)w * 3)
        return reel_fail(errmsg, REEL_ERR(EINVAL), "%s: bad image %dx%d (stride %td)", path, w, h,
                         stride);
    if (!(job = calloc(1, sizeof(*job))))
        return reel_fail(errmsg, REEL_ERR(ENOMEM), "%s: out of memory", path);
    if (!(job->rows = malloc((size_t)h * sizeof(*job->rows)))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "%s: out of memory", path);
        goto done;
    }
    for (int y = 0; y < h; y++)
        job->rows[y] = (png_bytep)(rgb + (ptrdiff_t)y * stride);
    /* written beside path, then renamed over it: a failed write (a full disk)
     * leaves whatever was at path, possibly the input, as it was */
    if (snprintf(tmp, sizeof(tmp), "%s.%d.part", path, (int)getpid()) >= (int)sizeof(tmp))
        errno = ENAMETOOLONG;
    else
        job->f = fopen(tmp, "wb");
    if (!job->f) {
        ret = REEL_ERR(errno);
        reel_fail(errmsg, ret, "%s: cannot create: %s", path, strerror(errno));
        goto done;
    }
    job->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, job, on_error, on_warning);
    if (!job->png || !(job->info = png_create_info_struct(job->png))) {
        ret = reel_fail(errmsg, REEL_ERR(ENOMEM), "%s: out of memory", path);
        goto done;
    }
    if (setjmp(job->jmp)) {
        ret = reel_fail(errmsg, REEL_ERROR_MEDIA, "%s: cannot write PNG: %s", path, job->msg);
        goto done;
    }
    png_init_io(job->png, job->f);
    png_set_IHDR(job->png, job->info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(job->png, job->info);
    png_write_image(job->png, job->rows);
    png_write_end(job->png, NULL);
    ret = 0;

done:
    if (job->png)
        png_destroy_write_struct(&job->png, job->info ? &job->info : NULL);
    if (job->f && fclose(job->f) != 0 && ret == 0)
        ret = reel_fail(errmsg, REEL_ERR(errno), "%s: cannot write: %s", path, strerror(errno));
    if (ret == 0 && rename(tmp, path) != 0)
        ret = reel_fail(errmsg, REEL_ERR(errno), "%s: cannot write: %s", path, strerror(errno));
    if (ret < 0 && job->f)
        remove(tmp);
    free(job->rows);
    free(job);
    return ret;
}
