/*
 * hdr.h - HDR and wide-gamut sources into the reel's SDR BT.709.
 *
 * Phones record HDR by default (iPhones: HLG in BT.2020, 10-bit); the reel is
 * SDR BT.709 (DESIGN section 3). Read as BT.709, such a clip comes out
 * washed out and wrongly coloured, so its R'G'B' is taken to light, its gamut
 * mapped to BT.709, its highlights rolled off and the result encoded as
 * BT.709 (docs/internals/media.md, "HDR and BT.2020 sources"). In RGB48 (what swscale
 * makes of the source with its own matrix and range) to RGB24, or from the
 * source's Y'CbCr to BT.709's (reel_tonemap_yuv, which also brings SDR sources
 * in other matrices and ranges to BT.709 limited range).
 */
#ifndef REEL_MEDIA_HDR_H
#define REEL_MEDIA_HDR_H

#include <stddef.h>
#include <stdint.h>

typedef enum ReelHdrKind {
    REEL_HDR_NONE = 0, /* BT.709 (or untagged): nothing to do */
    REEL_HDR_WIDE,     /* SDR in BT.2020 primaries: the gamut only */
    REEL_HDR_HLG,      /* ARIB STD-B67 (BT.2100 HLG), BT.2020 */
    REEL_HDR_PQ,       /* SMPTE ST 2084 (BT.2100 PQ, HDR10), BT.2020 */
} ReelHdrKind;

/** What a frame's tags (AVColorTransferCharacteristic, AVColorPrimaries) ask for. */
ReelHdrKind reel_hdr_kind(int color_trc, int color_primaries);

typedef struct ReelToneMap ReelToneMap;

/**
 * Tables for one kind (~300 KB); bt2020: the source's primaries are BT.2020
 * (else BT.709's, kept). pq_peak: a PQ source's brightest light in cd/m2 (its
 * MaxCLL, else its mastering display's peak; 0: unknown, 1000 taken), which
 * the roll-off lands on SDR white; kept within 203 (reference white) and
 * 10000. Other kinds ignore it (HLG is relative to its nominal 1000 cd/m2
 * display). NULL when out of memory or kind is NONE.
 */
ReelToneMap *reel_tonemap_new(ReelHdrKind kind, int bt2020, double pq_peak);
void reel_tonemap_free(ReelToneMap **t);
/** Whether t was made for kind, primaries and peak (NULL: for nothing). */
int reel_tonemap_is(const ReelToneMap *t, ReelHdrKind kind, int bt2020, double pq_peak);

/**
 * w x h pixels of full-range R'G'B' (RGB48, native endian; src_stride in
 * bytes) to BT.709 R'G'B' (RGB24, dst_stride in bytes).
 */
void reel_tonemap_run(const ReelToneMap *t, const uint16_t *src, ptrdiff_t src_stride, int w, int h,
                      uint8_t *dst, ptrdiff_t dst_stride);

/** A region of a planar Y'CbCr frame, as reel_tonemap_yuv reads it. */
typedef struct ReelYuvRegion {
    const uint8_t *plane[3]; /* the region's first sample in Y, Cb, Cr */
    ptrdiff_t stride[3];     /* bytes per line */
    int width, height;       /* in luma samples */
    int log2_cw, log2_ch;    /* chroma subsampling, 0 or 1 each */
    int depth;               /* bits per sample: 8 (a byte) or 9-16 (two, native endian) */
    int full_range;
    double kr, kb; /* the source matrix's red and blue weights (BT.2020: 0.2627, 0.0593) */
} ReelYuvRegion;

/**
 * The region to 8-bit 4:2:0 Y'CbCr, BT.709 limited range (dst: width x height
 * luma, half of each rounded up in chroma): each pixel, with its chroma
 * (interpolated bilinearly where subsampled, samples sited in the middle of
 * the pixels they cover), to R'G'B' by the source's matrix and range, through
 * the tone map t as reel_tonemap_run's (t NULL: an SDR source, its R'G'B'
 * kept), then Y' per pixel and Cb, Cr the mean of each 2x2 block's. The
 * region's edges repeat: give it a margin.
 */
void reel_tonemap_yuv(const ReelToneMap *t, const ReelYuvRegion *src, uint8_t *const dst[3],
                      const int dst_stride[3]);

/**
 * The region to RGB24 (BT.709 SDR R'G'B', width x height, dst_stride bytes a
 * line): each pixel as reel_tonemap_yuv takes it to R'G'B' and through t,
 * written out per pixel, for what wants RGB (the model). Exact where
 * swscale's 16-bit R'G'B' from limited-range Y'CbCr is 256/257 of the value
 * (~2 levels after PQ's curve in mid-tones).
 */
void reel_tonemap_yuv_rgb(const ReelToneMap *t, const ReelYuvRegion *src, uint8_t *dst,
                          ptrdiff_t dst_stride);

#endif
