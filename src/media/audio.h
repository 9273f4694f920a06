/*
 * audio.h - the reel's audio timeline (DESIGN section 3, Audio and the exact
 * conventions): 48 kHz stereo float samples for the whole reel, produced in
 * order, in bounded chunks, straight from the sources.
 *
 * For each clip: its samples are [round(S*r), round((S+N)*r)) with r = 48000/fps;
 * each segment reads the source from round(seg_start*48000), count*speed
 * samples, through an atempo chain when speed != 1, padded with silence or cut
 * to exactly count. Sources without audio give silence. Fades (dip to black)
 * and crossfades (dissolve) use linear gains over the samples of the same output
 * frames as the video. Source time 0 is the first decoded VIDEO frame's pts.
 *
 * Memory stays bounded: at most two clips' decoders are open (a crossfade), and
 * only a few thousand samples are buffered per clip. Damaged audio becomes
 * silence with a warning; only an unreadable source is an error.
 * docs/internals/audio.md has the arithmetic, the atempo chain, the gains and
 * the decisions (downmix, lookahead past count*speed).
 * Threads: a ReelAudioReel is used by one thread at a time.
 */
#ifndef REEL_MEDIA_AUDIO_H
#define REEL_MEDIA_AUDIO_H

#include <stdint.h>

#include "core/job.h"
#include "core/timeline.h"

typedef struct ReelAudioReel ReelAudioReel;

/**
 * Prepare the audio of a reel. job and layout are borrowed and must outlive the
 * object. video_start_pts[i] is clip i's first decoded video frame time in
 * seconds (source time 0 for audio too), as found by the video probe; NULL
 * means 0 for every clip. Every clip's segments must be resolved (after
 * reel_job_apply_probe). Each source is opened once here to fail early, then
 * closed; decoders are opened again when the reel reaches the clip.
 * @return 0 or a negative error with errmsg (REEL_ERRMSG_SIZE) naming the clip's file.
 */
int reel_audio_open(ReelAudioReel **out, const ReelJob *job, const ReelLayout *layout,
                    const double *video_start_pts, char *errmsg);

/**
 * Produce the next up to max samples of the reel into left/right (planar float,
 * nominally [-1, 1]; a loud surround downmix may exceed it). Any max works; the
 * samples do not depend on how the reads are chunked.
 * @return the number of samples written (> 0; fewer than max only at the end),
 *         0 at the end of the reel (after exactly layout->nb_samples samples in
 *         total), or a negative error (then every later call returns it too and
 *         reel_audio_errmsg() names the clip and file).
 */
int reel_audio_read(ReelAudioReel *ar, float *left, float *right, int max);

/** The last error's sentence ("" when none); valid until the object is closed. */
const char *reel_audio_errmsg(const ReelAudioReel *ar);

/** Close the sources and free everything; sets *ar to NULL (a NULL *ar is fine). */
void reel_audio_close(ReelAudioReel **ar);

#endif
