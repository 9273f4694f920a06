/*
 * upload.c - POST /api/export/multi-clip, the editor's submission (DESIGN 6,
 * reel-ballers-contract section 1).
 *
 * The request is admitted (a queue reservation, the declared size) before its
 * body is read. The body is parsed by civetweb's multipart reader with every
 * part handed to us in chunks (MG_FORM_FIELD_STORAGE_GET), so that we count
 * bytes as they arrive and stop at the limit: file parts go to
 * <data>/tmp/upload-XXXXXX/video_N.part (never whole in memory), text parts to
 * small bounded buffers. Then, in order: validation (the app's messages), the
 * claim of the (user, export_id) row, the sources to the store under
 * {user}/temp/multi_clip_{export_id}/source_{clipIndex}.mp4, the row to PENDING
 * (committed), the 202, the executor. Any failure removes what this request
 * created (temp folder, objects, row): nothing is left behind.
 */
#include "server/server_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <civetweb.h>

#include "core/error.h"
#include "core/log.h"
#include "storage/storage.h"

#define LOG_TAG "upload"
#define MAX_JSON_BYTES (16 << 20) /* as job files */
#define MAX_TEXT_BYTES 1024
#define MAX_DRAIN ((int64_t)256 << 20)

typedef enum FieldKind {
    FIELD_NONE = 0,
    FIELD_DISCARD, /* a part we ignore: counted, not kept */
    FIELD_TEXT,
    FIELD_FILE,
} FieldKind;

enum {
    TXT_EXPORT_ID,
    TXT_JSON,
    TXT_INCLUDE_AUDIO,
    TXT_TARGET_FPS,
    TXT_EXPORT_MODE,
    TXT_PROJECT_ID,
    TXT_PROJECT_NAME,
    NB_TXT
};

static const char *const text_names[NB_TXT] = {
    "export_id",   "multi_clip_data_json", "include_audio", "target_fps",
    "export_mode", "project_id",           "project_name",
};

typedef struct TextField {
    char *data;
    size_t len, cap;
    int seen;   /* number of parts with this name */
    int ignore; /* a repeated part we do not keep (project_id twice) */
} TextField;

typedef struct UploadFile {
    int index; /* N of video_N */
    char path[PATH_MAX];
    int fd;
    int64_t size;
} UploadFile;

typedef struct Upload {
    ReelServer *srv;
    const char *user;
    char dir[PATH_MAX];
    TextField text[NB_TXT];
    UploadFile *files;
    int nb_files, cap_files;
    FieldKind kind; /* the part being received */
    int cur;        /* its text index or file slot */
    int64_t total;  /* bytes of part content received */
    int status;     /* != 0: answer this and stop */
    char detail[1024];
} Upload;

static int fail(Upload *u, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(Upload *u, int status, const char *fmt, ...)
{
    va_list ap;

    if (!u->status) {
        u->status = status;
        va_start(ap, fmt);
        vsnprintf(u->detail, sizeof(u->detail), fmt, ap);
        va_end(ap);
    }
    return MG_FORM_FIELD_STORAGE_ABORT;
}

static void close_current_file(Upload *u)
{
    if (u->kind == FIELD_FILE && u->files[u->cur].fd >= 0) {
        close(u->files[u->cur].fd);
        u->files[u->cur].fd = -1;
    }
}

/* "video_12" -> 12; -1 when the name is not video_<digits>. */
static int video_index(const char *key)
{
    long v = 0;

    if (strncmp(key, "video_", 6) || !key[6])
        return -1;
    for (const char *p = key + 6; *p; p++) {
        if (!isdigit((unsigned char)*p) || v > 100000000)
            return -1;
        v = v * 10 + (*p - '0');
    }
    return (int)v;
}

static int field_found(const char *key, const char *filename, char *path, size_t pathlen,
                       void *opaque)
{
    Upload *u = opaque;
    int idx;

    (void)filename;
    (void)path;
    (void)pathlen;
    close_current_file(u);
    u->kind = FIELD_DISCARD;
    if (u->status)
        return MG_FORM_FIELD_STORAGE_ABORT;

    for (int i = 0; i < NB_TXT; i++) {
        if (strcmp(key, text_names[i]))
            continue;
        u->kind = FIELD_TEXT;
        u->cur = i;
        /* project_id comes twice from the editor, with the same value: keep the first. */
        u->text[i].ignore = u->text[i].seen++ > 0;
        if (u->text[i].ignore && i != TXT_PROJECT_ID)
            return fail(u, 400, "%s: given more than once", key);
        return MG_FORM_FIELD_STORAGE_GET;
    }
    if ((idx = video_index(key)) >= 0) {
        UploadFile *f;
        for (int i = 0; i < u->nb_files; i++)
            if (u->files[i].index == idx)
                return fail(u, 400, "%s: given more than once", key);
        if (u->nb_files >= u->srv->cfg.limits.max_clips)
            return fail(u, 400, "Too many video files: the limit is %d clips",
                        u->srv->cfg.limits.max_clips);
        if (u->nb_files == u->cap_files) {
            int cap = u->cap_files ? 2 * u->cap_files : 8;
            UploadFile *files = realloc(u->files, (size_t)cap * sizeof(*files));
            if (!files)
                return fail(u, 500, "Out of memory");
            u->files = files;
            u->cap_files = cap;
        }
        f = &u->files[u->nb_files];
        f->index = idx;
        f->size = 0;
        if (snprintf(f->path, sizeof(f->path), "%s/video_%d.part", u->dir, idx) >=
            (int)sizeof(f->path))
            return fail(u, 500, "Cannot store the upload: path too long");
        f->fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (f->fd < 0)
            return fail(u, 500, "Cannot store the upload: %s", strerror(errno));
        u->nb_files++;
        u->kind = FIELD_FILE;
        u->cur = u->nb_files - 1;
        return MG_FORM_FIELD_STORAGE_GET;
    }
    return MG_FORM_FIELD_STORAGE_GET; /* other parts: counted and dropped */
}

static int field_get(const char *key, const char *value, size_t len, void *opaque)
{
    Upload *u = opaque;

    (void)key; /* "" after the first chunk of a part: u->kind says which part */
    if (u->status)
        return MG_FORM_FIELD_HANDLE_ABORT;
    u->total += (int64_t)len;
    if (u->total > u->srv->cfg.max_upload) {
        fail(u, 413, "Upload too large: the limit is %" PRId64 " bytes per request",
             u->srv->cfg.max_upload);
        return MG_FORM_FIELD_HANDLE_ABORT;
    }
    if (u->kind == FIELD_FILE) {
        UploadFile *f = &u->files[u->cur];
        f->size += (int64_t)len;
        if (f->size > u->srv->cfg.max_source) {
            fail(u, 413, "video_%d is too large: the limit is %" PRId64 " bytes per file", f->index,
                 u->srv->cfg.max_source);
            return MG_FORM_FIELD_HANDLE_ABORT;
        }
        while (len > 0) {
            ssize_t n = write(f->fd, value, len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                fail(u, errno == ENOSPC ? 507 : 500, "Cannot store the upload: %s",
                     strerror(n < 0 ? errno : EIO));
                return MG_FORM_FIELD_HANDLE_ABORT;
            }
            value += n;
            len -= (size_t)n;
        }
    } else if (u->kind == FIELD_TEXT && !u->text[u->cur].ignore) {
        TextField *t = &u->text[u->cur];
        size_t limit = u->cur == TXT_JSON ? MAX_JSON_BYTES : MAX_TEXT_BYTES;
        if (t->len + len > limit) {
            fail(u, u->cur == TXT_JSON ? 413 : 400, "%s: longer than %zu bytes", text_names[u->cur],
                 limit);
            return MG_FORM_FIELD_HANDLE_ABORT;
        }
        if (t->len + len + 1 > t->cap) {
            size_t cap = t->cap ? t->cap : 256;
            char *d;
            while (cap < t->len + len + 1)
                cap *= 2;
            if (!(d = realloc(t->data, cap))) {
                fail(u, 500, "Out of memory");
                return MG_FORM_FIELD_HANDLE_ABORT;
            }
            t->data = d;
            t->cap = cap;
        }
        memcpy(t->data + t->len, value, len);
        t->len += len;
        t->data[t->len] = 0;
    }
    return MG_FORM_FIELD_HANDLE_GET;
}

static int field_store(const char *path, long long size, void *opaque)
{
    (void)path;
    (void)size;
    (void)opaque;
    return MG_FORM_FIELD_HANDLE_NEXT; /* never used: we never ask civetweb to store */
}

static const char *text(const Upload *u, int i)
{
    return u->text[i].seen && u->text[i].data ? u->text[i].data : NULL;
}

static void upload_uninit(Upload *u)
{
    close_current_file(u);
    for (int i = 0; i < u->nb_files; i++) {
        if (u->files[i].fd >= 0)
            close(u->files[i].fd);
        unlink(u->files[i].path);
    }
    free(u->files);
    for (int i = 0; i < NB_TXT; i++)
        free(u->text[i].data);
    if (u->dir[0])
        rmdir(u->dir);
}

static const UploadFile *find_file(const Upload *u, int index)
{
    for (int i = 0; i < u->nb_files; i++)
        if (u->files[i].index == index)
            return &u->files[i];
    return NULL;
}

/* Text that may be echoed in frames: printable, no control characters. */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/*
 * The job as it will be stored: the client's JSON without any `source` (only
 * uploads are read), with the form's include_audio and target_fps written into
 * `output` (which the app shape does not have). Returns a new string or NULL
 * with a 400 recorded.
 */
static char *normalise_job(Upload *u, json_t *root, int fps, int include_audio)
{
    json_t *clips = json_object_get(root, "clips"), *clip, *output;
    size_t i;
    char *out;

    json_array_foreach(clips, i, clip)
    {
        if (json_is_object(clip))
            json_object_del(clip, "source");
    }
    output = json_object_get(root, "output");
    if (!output) {
        output = json_object();
        if (!output || json_object_set_new(root, "output", output) < 0) {
            fail(u, 500, "Out of memory");
            return NULL;
        }
    } else if (!json_is_object(output)) {
        fail(u, 400, "output: must be an object");
        return NULL;
    }
    if (fps > 0)
        json_object_set_new(output, "fps", json_integer(fps));
    if (include_audio >= 0)
        json_object_set_new(output, "include_audio", json_boolean(include_audio));
    if (!(out = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(17))))
        fail(u, 500, "Out of memory");
    return out;
}

/* Validate the request as the app does, in its order. 0 or a recorded 4xx. */
static int validate(Upload *u, char **job_json)
{
    const char *id = text(u, TXT_EXPORT_ID), *json = text(u, TXT_JSON);
    const char *pid = text(u, TXT_PROJECT_ID), *pname = text(u, TXT_PROJECT_NAME);
    const char *fps_s = text(u, TXT_TARGET_FPS), *audio_s = text(u, TXT_INCLUDE_AUDIO);
    char errmsg[REEL_ERRMSG_SIZE];
    json_error_t jerr;
    json_t *root = NULL, *clips;
    ReelJob *job = NULL;
    int fps = 30, include_audio = 1, ret = -1;

    *job_json = NULL;
    if (!id || !*id) {
        fail(u, 400, "export_id: required");
        goto end;
    }
    if (!reel_server_id_valid(id)) {
        fail(u, 400, "export_id: must be 1-128 characters of A-Z a-z 0-9 _ . - (no '..')");
        goto end;
    }
    if (pid && *pid && !reel_server_id_valid(pid)) {
        fail(u, 400, "project_id: must be 1-128 characters of A-Z a-z 0-9 _ . - (no '..')");
        goto end;
    }
    if (pname && (strlen(pname) > 200 || !printable(pname))) {
        fail(u, 400, "project_name: at most 200 printable characters");
        goto end;
    }
    if (fps_s) {
        char *end;
        long v = strtol(fps_s, &end, 10);
        if (end == fps_s || *end || v < 1 || v > 240) {
            fail(u, 400, "target_fps: must be an integer from 1 to 240");
            goto end;
        }
        fps = (int)v;
    }
    if (audio_s)
        include_audio = !strcasecmp(audio_s, "true"); /* the app's value.lower() == "true" */
    if (!json) {
        fail(u, 400, "multi_clip_data_json: required");
        goto end;
    }
    if (!(root = json_loads(json, 0, &jerr))) {
        fail(u, 400, "Invalid multi-clip data JSON: line %d column %d: %s", jerr.line, jerr.column,
             jerr.text);
        goto end;
    }
    if (!json_is_object(root)) {
        fail(u, 400, "Invalid multi-clip data JSON: expected an object with \"clips\"");
        goto end;
    }
    clips = json_object_get(root, "clips");
    if (json_is_array(clips) && json_array_size(clips) != (size_t)u->nb_files) {
        fail(u, 400, "Mismatch: %d video files but %zu clip configs", u->nb_files,
             json_array_size(clips));
        goto end;
    }
    if (!(*job_json = normalise_job(u, root, fps_s ? fps : -1, audio_s ? include_audio : -1)))
        goto end;
    if (reel_job_parse(&job, *job_json, NULL, &u->srv->cfg.limits, errmsg) < 0) {
        fail(u, 400, "%s", errmsg);
        goto end;
    }
    for (int i = 0; i < job->nb_clips; i++) {
        if (!find_file(u, job->clips[i].clip_index)) {
            fail(u, 400, "Missing video file for clip %d", job->clips[i].clip_index);
            goto end;
        }
    }
    ret = 0;
end:
    if (ret < 0) {
        free(*job_json);
        *job_json = NULL;
    }
    reel_job_free(&job);
    json_decref(root);
    return ret;
}

/* Put every upload to the store; on failure delete what was put. */
static int put_sources(Upload *u, const char *id, char **sources_json)
{
    ReelStore *store = u->srv->store;
    json_t *list = json_array();
    char key[REEL_KEY_MAX];
    int ret = 0, i;

    *sources_json = NULL;
    if (!list) {
        fail(u, 500, "Out of memory");
        return -1;
    }
    for (i = 0; i < u->nb_files; i++) {
        snprintf(key, sizeof(key), "%s/temp/multi_clip_%s/source_%d.mp4", u->user, id,
                 u->files[i].index);
        if ((ret = reel_store_put_file(store, key, u->files[i].path)) < 0) {
            fail(u, 503, "Storage error while saving video_%d: %s", u->files[i].index,
                 reel_store_errmsg(store));
            break;
        }
        unlink(u->files[i].path); /* the store has it now */
        json_array_append_new(list, json_pack("{s:i,s:s}", "clip", u->files[i].index, "key", key));
    }
    if (ret >= 0 && !(*sources_json = json_dumps(list, JSON_COMPACT))) {
        fail(u, 500, "Out of memory");
        ret = REEL_ERR(ENOMEM);
    }
    if (ret < 0)
        reel_executor_delete_sources(store, u->user, id, NULL);
    json_decref(list);
    return ret < 0 ? -1 : 0;
}

static int reply_accepted(struct mg_connection *conn, const char *id, int duplicate)
{
    json_t *body = json_pack("{s:s,s:s}", "status", "accepted", "export_id", id);
    if (duplicate && body)
        json_object_set_new(body, "duplicate", json_true());
    return reel_http_json(conn, 202, body);
}

typedef enum Outcome { OUT_FAILED = 0, OUT_ACCEPTED, OUT_DUPLICATE } Outcome;

/*
 * Everything after the body: validation, claim, store, commit. Runs on a
 * full-size stack (reel_http_run_big_stack): it parses client JSON and talks
 * to the store. On failure u->status/detail say what to answer and nothing
 * this request made is left.
 */
typedef struct Finish {
    Upload *u;
    Outcome outcome;
} Finish;

static void *finish_main(void *arg)
{
    Finish *f = arg;
    Upload *u = f->u;
    ReelServer *srv = u->srv;
    char *job_json = NULL, *sources_json = NULL;
    const char *id;
    int claimed = 0, r;

    f->outcome = OUT_FAILED;
    if (validate(u, &job_json) < 0)
        goto end;
    id = text(u, TXT_EXPORT_ID);
    r = reel_jobstore_claim(srv->jobs, u->user, id, text(u, TXT_PROJECT_ID),
                            text(u, TXT_PROJECT_NAME), "multi_clip");
    if (r == REEL_ERR(EEXIST)) {
        /* A repeated POST (a retry whose reply was lost): no second export. */
        reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: repeated submission, not started again", u->user,
                 id);
        f->outcome = OUT_DUPLICATE;
        goto end;
    }
    if (r < 0) {
        fail(u, 503, "Job store error: %s", reel_jobstore_errmsg(srv->jobs));
        goto end;
    }
    claimed = 1;
    if (put_sources(u, id, &sources_json) < 0)
        goto end;
    r = reel_jobstore_set_pending(srv->jobs, u->user, id, job_json, sources_json);
    if (r < 0) {
        reel_executor_delete_sources(srv->store, u->user, id, sources_json);
        if (r == REEL_ERR(ENOENT)) {
            claimed = 0; /* the row was cancelled (DELETE) during the upload: keep it */
            fail(u, 409, "Export %s was cancelled during the upload", id);
        } else {
            fail(u, 503, "Job store error: %s", reel_jobstore_errmsg(srv->jobs));
        }
        goto end;
    }
    /* Committed: from here on the export exists whatever happens to this request. */
    claimed = 0;
    f->outcome = OUT_ACCEPTED;
    reel_log(REEL_LOG_INFO, LOG_TAG, "%s/%s: accepted, %d clips", u->user, id, u->nb_files);
end:
    if (claimed)
        reel_jobstore_delete(srv->jobs, u->user, id);
    free(job_json);
    free(sources_json);
    return NULL;
}

int reel_server_handle_upload(ReelServer *srv, struct mg_connection *conn, const char *user)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *ctype = mg_get_header(conn, "Content-Type");
    const char *expect = mg_get_header(conn, "Expect");
    struct mg_form_data_handler fdh = {field_found, field_get, field_store, NULL};
    int continue_expected = expect && !strcasecmp(expect, "100-continue");
    Upload *u;
    Finish fin = {0};
    char id[REEL_ID_MAX + 1] = "", detail[1024];
    int status, r, close_conn = 0;

    if (!ctype || strncasecmp(ctype, "multipart/form-data", 19)) {
        reel_http_drain(conn, MAX_DRAIN, 10000);
        return reel_http_error_close(conn, 400, "Expected a multipart/form-data body");
    }
    if (ri->content_length > srv->cfg.max_upload) {
        /* A client waiting for 100-continue has not sent the body: just answer. */
        if (!continue_expected)
            reel_http_drain(conn, MAX_DRAIN, 30000);
        return reel_http_error_close(
            conn, 413, "Upload too large: %lld bytes, the limit is %" PRId64 " bytes per request",
            ri->content_length, srv->cfg.max_upload);
    }
    if ((r = reel_executor_reserve(srv->exec)) < 0) {
        if (!continue_expected)
            reel_http_drain(conn, MAX_DRAIN, 30000);
        return reel_http_error_close(conn, 503,
                                     r == REEL_ERR(ESHUTDOWN)
                                         ? "The server is shutting down; try again"
                                         : "The export queue is full; try again later");
    }
    if (!(u = calloc(1, sizeof(*u)))) {
        reel_executor_unreserve(srv->exec);
        return reel_http_error_close(conn, 500, "Out of memory");
    }
    u->srv = srv;
    u->user = user;

    if (snprintf(u->dir, sizeof(u->dir), "%s/upload-XXXXXX", srv->tmp_dir) >= (int)sizeof(u->dir) ||
        !mkdtemp(u->dir)) {
        u->dir[0] = 0;
        reel_http_drain(conn, MAX_DRAIN, 10000);
        status = reel_http_error_close(conn, 500, "Cannot store the upload: %s", strerror(errno));
        goto end;
    }
    fdh.user_data = u;
    r = mg_handle_form_request(conn, &fdh);
    close_current_file(u);
    if (u->status || r < 0) {
        /* Stopped part way: the rest of the body is unread. Read it off (bounded)
         * so that the client sees our answer rather than a reset connection. */
        if (!u->status)
            fail(u, 400, "Malformed multipart/form-data body");
        reel_http_drain(conn, MAX_DRAIN, 30000);
        close_conn = 1;
    } else {
        fin.u = u;
        if (reel_http_run_big_stack(finish_main, &fin) < 0)
            fail(u, 503, "Server busy: cannot start a thread");
    }
    /* Everything this request left on disk goes before the answer does. */
    if (fin.outcome != OUT_FAILED)
        snprintf(id, sizeof(id), "%s", text(u, TXT_EXPORT_ID));
    status = u->status ? u->status : 500;
    snprintf(detail, sizeof(detail), "%s", u->detail[0] ? u->detail : "Internal error");
    upload_uninit(u);
    free(u);
    u = NULL;
    if (fin.outcome == OUT_FAILED) {
        reel_executor_unreserve(srv->exec);
        return close_conn ? reel_http_error_close(conn, status, "%s", detail)
                          : reel_http_error(conn, status, "%s", detail);
    }
    status = reply_accepted(conn, id, fin.outcome == OUT_DUPLICATE);
    if (fin.outcome == OUT_DUPLICATE) {
        reel_executor_unreserve(srv->exec);
        return status;
    }
    /* The reservation goes to the submission. */
    if (reel_executor_submit(srv->exec, user, id) < 0)
        reel_log(REEL_LOG_WARNING, LOG_TAG, "%s/%s: stopping; runs at the next start", user, id);
    return status;

end:
    reel_executor_unreserve(srv->exec);
    upload_uninit(u);
    free(u);
    return status;
}
