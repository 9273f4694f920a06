/*
 * hdr.h - HDR and wide-gamut sources into the reel's SDR BT.709.
 *
 * Phones record HDR by default (iPhones: HLG in BT.2020, 10-bit); the reel is
 * SDR BT.709 (DESIGN section 3). Read as BT.709, such a clip comes out
 * washed out and wrongly coloured, so its R'G'B' is taken to light, its gamut
 * mapped to BT.709, its highlights rolled off and the result encoded as
 * BT.709 (docs/internals/media.md, "HDR and BT.2020 sources"). In RGB48 (what swscale
 * makes of the source with its own matrix and range) to RGB24.
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
 * (else BT.709's, kept). NULL when out of memory or kind is NONE.
 */
ReelToneMap *reel_tonemap_new(ReelHdrKind kind, int bt2020);
void reel_tonemap_free(ReelToneMap **t);
/** Whether t was made for kind and primaries (NULL: for nothing). */
int reel_tonemap_is(const ReelToneMap *t, ReelHdrKind kind, int bt2020);

/**
 * w x h pixels of full-range R'G'B' (RGB48, native endian; src_stride in
 * bytes) to BT.709 R'G'B' (RGB24, dst_stride in bytes).
 */
void reel_tonemap_run(const ReelToneMap *t, const uint16_t *src, ptrdiff_t src_stride, int w, int h,
                      uint8_t *dst, ptrdiff_t dst_stride);

#endif
