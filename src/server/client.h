/*
 * client.h - a small C client of `clipreel serve` (what `clipreel submit` uses).
 *
 * It talks to the service exactly as the Reel Ballers editor does: it opens the
 * progress WebSocket first, then POSTs the multipart form (export_id,
 * multi_clip_data_json, include_audio, target_fps, export_mode, project_id
 * twice, project_name, one video_N file per clip, streamed from disk by
 * libcurl), follows the frames to the terminal one, and downloads the result.
 *
 *   reel_client_job_load()      engine-shape job file -> form fields + files
 *   reel_client_watch_open()    WebSocket /ws/export/{id} (civetweb's client)
 *   reel_client_submit()        POST /api/export/multi-clip
 *   reel_client_watch_wait()    frames until complete/error; reconnects like
 *                               the editor (1 s doubling to 30 s), then polls
 *                               GET /api/exports/{id} if the socket stays down
 *   reel_client_download()      GET /api/exports/{id}/output (+ chapters.vtt),
 *                               following a redirect to a presigned URL
 *
 * Errors: functions return 0 or a negative error; errmsg (REEL_ERRMSG_SIZE)
 * carries the server's "detail" text when there is one. When a function that
 * takes a callback fails, the callback is not called again.
 *
 * Thread-safety: a ReelClientWatch's callback runs on civetweb's client
 * thread, one call at a time; the other functions are independent and may be
 * used from any thread. reel_client_global_init() once per process first.
 */
#ifndef REEL_SERVER_CLIENT_H
#define REEL_SERVER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ReelClientOptions {
    const char *server; /**< "http://host:port" (https when civetweb and curl have TLS) */
    const char *token;  /**< bearer token, or NULL */
    const char *user;   /**< X-User-ID for an auth-off development server, or NULL */
    int timeout_s;      /**< connect timeout (default 10) */
} ReelClientOptions;

/** One submission: the fields of the editor's form. */
typedef struct ReelClientSubmission {
    char export_id[129];
    char *job_json; /**< multi_clip_data_json (no `source` fields) */
    char **files;   /**< local paths, one per clip */
    int *indices;   /**< clipIndex of each file (video_N) */
    int nb_files;
    int include_audio;    /**< 1/0 */
    int target_fps;       /**< 0: not sent */
    char project_id[129]; /**< "" = not sent */
    char project_name[201];
} ReelClientSubmission;

/** A progress frame as received (strings valid during the callback only). */
typedef struct ReelClientFrame {
    const char *status; /**< "processing", "complete", "error" */
    const char *phase;
    double progress;
    int clip, total_clips;
    int64_t current_frame, total_frames;
    double eta_s; /**< < 0 unknown */
    const char *message;
    const char *error;      /**< error frames */
    const char *output_url; /**< complete frames */
    const char *json;       /**< the frame text */
} ReelClientFrame;

typedef void (*ReelClientFrameFn)(void *opaque, const ReelClientFrame *frame);

typedef struct ReelClientWatch ReelClientWatch;

/** curl and civetweb global set-up; call once before any other function. */
void reel_client_global_init(void);

/** A new export id in the editor's form: export_<ms>_<7 base36 chars>. */
void reel_client_make_export_id(char *out, size_t size);

/**
 * Read an engine-shape job file: every clip's `source` (relative to the file)
 * becomes an upload, `clipIndex` is made explicit, `source` is removed, and
 * output.include_audio / output.fps become the form fields.
 * @return 0, or REEL_ERR(EINVAL/ENOENT/ENOMEM) with errmsg naming the field.
 */
int reel_client_job_load(ReelClientSubmission *sub, const char *path, char *errmsg);

/** Free what reel_client_job_load allocated. */
void reel_client_submission_uninit(ReelClientSubmission *sub);

/**
 * POST the submission. @return 0 on 202 (*duplicate set when the server had
 * the id already), or a negative error; *http_status gets the status (0 when
 * no reply), errmsg the server's detail.
 */
int reel_client_submit(const ReelClientOptions *opt, const ReelClientSubmission *sub,
                       int *http_status, int *duplicate, char *errmsg);

/** Open the progress WebSocket of export_id; cb gets every frame. */
int reel_client_watch_open(ReelClientWatch **out, const ReelClientOptions *opt,
                           const char *export_id, ReelClientFrameFn cb, void *opaque, char *errmsg);

/**
 * Wait for the terminal frame (timeout_s <= 0: forever).
 * @return 0 complete, REEL_ERROR_CANCELLED (cancelled), REEL_ERROR_BACKEND
 *         (failed: errmsg has the reason), REEL_ERR(ETIMEDOUT), or a transport error.
 */
int reel_client_watch_wait(ReelClientWatch *w, int timeout_s, char *errmsg);

void reel_client_watch_close(ReelClientWatch **w);

/**
 * Download the result to path (written to path.part, then renamed); when
 * chapters_path is not NULL, the WebVTT chapters too (a missing file is not an
 * error). @return 0 or a negative error.
 */
int reel_client_download(const ReelClientOptions *opt, const char *export_id, const char *path,
                         const char *chapters_path, char *errmsg);

/**
 * GET a path of the API ("/api/exports/ID"); *body gets the reply (caller
 * frees). @return the HTTP status (> 0) or a negative transport error.
 */
int reel_client_get(const ReelClientOptions *opt, const char *path, char **body, char *errmsg);

/** DELETE /api/exports/{id}: cancel. @return the HTTP status or a negative error. */
int reel_client_cancel(const ReelClientOptions *opt, const char *export_id, char *errmsg);

#endif
