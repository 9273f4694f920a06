/*
 * cli_export.c - `clipreel export JOB.json -o reel.mp4`: the engine in this
 * process, with a progress bar (or JSON lines) and a summary at the end.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavutil/log.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/error.h"
#include "core/job.h"
#include "core/log.h"
#include "media/export.h"
#include "upscale/upscale.h"

/*
 * Ctrl-C, SIGTERM (a service manager stopping us) and SIGHUP (the terminal
 * gone) cancel the export: the engine stops its stages and removes its .part
 * files, so nothing is left at the output paths, and then the process dies of
 * the same signal (a calling shell or script sees how it ended). A second
 * signal while that happens kills at once. A signal the parent set to be
 * ignored (nohup, a background job's SIGINT) stays ignored.
 */
static atomic_int g_cancel;
static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    if (g_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_signal = sig;
    atomic_store(&g_cancel, 1);
}

static void cancel_on_signals(ReelExportOptions *eo)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa = {0}, old;

    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(sigs[i], &sa, NULL);
    eo->cancel = &g_cancel;
}

static const char *sig_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP";
}

/* After a cancelled export: die of the signal that cancelled it (the shell's
 * 128 + N should the signal not end the process). */
static int die_of_signal(void)
{
    int sig = g_signal;

    fflush(stdout);
    signal(sig, SIG_DFL);
    raise(sig);
    return 128 + sig;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipreel export JOB.json -o OUT.mp4 [options]\n"
            "\n"
            "Renders the reel a job describes: per clip a trim, speed segments, a moving\n"
            "crop (keyframes), optional rotation and AI upscale, then transitions, audio\n"
            "and chapters, into one H.264/AAC MP4 plus OUT.chapters.vtt.\n"
            "\n"
            "options:\n"
            "  -o, --output PATH          the .mp4 to write (required)\n"
            "      --chapters PATH        WebVTT chapters (default: OUT with .chapters.vtt)\n"
            "      --models DIR           model weights folder (default $CLIPREEL_MODELS or models)\n"
            "      --upscale MODE         auto|always|off: overrides the job's output.upscale.mode\n"
            "      --precision P          fp32|bf16: overrides output.upscale.precision (bf16 where\n"
            "                             the CPU has AVX-512 BF16, PSNR >= 40 dB of fp32; its\n"
            "                             speed against fp32 is in docs/PERFORMANCE.md)\n"
            "      --progress MODE        bar (default), json (JSON lines on stdout) or none\n"
            "      --threads N            worker threads (0 = all cores)\n"
            "      --lanes N              frames upscaled at once, threads shared out (0 = auto:\n"
            "                             one per thread up to 4; 1 = one frame at a time, the\n"
            "                             least memory)\n"
            "\n"
            "parallel mode (docs/parallel.md), what scale-out workers run:\n"
            "      --part K               render only clip K (1-based, clip order) into OUT, a\n"
            "                             lossless .nut part: no transitions, no chapters\n"
            "      --assemble PART        join parts (give once per clip, in clip order) into\n"
            "                             the reel at OUT with transitions, audio and chapters\n"
            "      --parallel             both in this process: every part into a temporary\n"
            "                             folder next to OUT, then the assembly\n"
            "      --part-crf N           parts: 0 = lossless (default), else libx264rgb CRF\n"
            "  -v, --verbose / -q, --quiet\n"
            "\n"
            "The job (docs/job-format.md): {\"clips\": [{\"source\": \"a.mp4\", \"clipName\",\n"
            "\"trimRange\": {start, end}, \"segments\": {\"boundaries\": [...], \"segmentSpeeds\":\n"
            "{\"1\": 0.5}}, \"cropKeyframes\": [{time, x, y, width, height}], \"rotation\",\n"
            "\"interpolation\": \"catmull-rom|linear\"}], \"globalAspectRatio\": \"9:16\",\n"
            "\"transition\": {\"type\": \"cut|fade|dissolve\", \"duration\": 0.5}, \"output\":\n"
            "{width, height, fps, include_audio, crf, preset, audio_bitrate, chapters,\n"
            "\"upscale\": {\"model\": \"realesr-general-x4v3|RealESRGAN_x4plus\", \"mode\",\n"
            "\"tile\", \"precision\": \"fp32|bf16\"}}}. Relative sources are relative to the job file.\n");
    fputs("\nCtrl-C, SIGTERM or SIGHUP cancel the export: nothing is left at OUT (no .part\n"
          "file), and the process ends by that signal.\n",
          f);
}

#define REEL_CLI_MAX_PARTS 1000

/* --parallel progress: step `step` of `steps` (parts, then the assembly) maps
 * its 0-100 onto an equal share, so the bar stays monotonic. */
typedef struct StepProgress {
    ReelProgressFn fn;
    void *opaque;
    int step, steps, nb_clips;
} StepProgress;

static void step_progress(void *opaque, const ReelProgress *p)
{
    StepProgress *sp = opaque;
    ReelProgress q = *p;
    int last = sp->step == sp->steps - 1;

    if ((p->phase == REEL_PHASE_COMPLETE && !last) || !sp->fn)
        return;
    q.percent = (sp->step + p->percent / 100.0) * 100.0 / sp->steps;
    if (!last) { /* a part: name its clip in the reel */
        q.clip = sp->step + 1;
        q.total_clips = sp->nb_clips;
        q.eta_s = -1;
    }
    sp->fn(sp->opaque, &q);
}

/* --parallel: every part into OUT.parts.PID/, then the assembly; the folder
 * goes whatever happens. Parts load the model on demand, once each. */
static int export_parallel(ReelJob *job, ReelExportOptions *eo, ReelExportStats *st, char *err)
{
    const char *out = eo->output_path;
    char dir[4200];
    char **paths = calloc((size_t)job->nb_clips, sizeof(*paths));
    int ret = 0;

    StepProgress sp = {eo->progress, eo->progress_opaque, 0, job->nb_clips + 1, job->nb_clips};

    if (!paths)
        return reel_fail(err, REEL_ERR(ENOMEM), "out of memory");
    if ((ret = reel_export_check_outputs(job, eo, err)) < 0) { /* before the parts' work */
        free(paths);
        return ret;
    }
    eo->progress = step_progress;
    eo->progress_opaque = &sp;
    snprintf(dir, sizeof(dir), "%s.parts.%d", out, (int)getpid());
    if (mkdir(dir, 0700) < 0) {
        free(paths);
        return reel_fail(err, REEL_ERR(errno), "%s: cannot create: %s", dir, strerror(errno));
    }
    for (int k = 0; k < job->nb_clips && ret >= 0; k++) {
        size_t n = strlen(dir) + 32;
        if (!(paths[k] = malloc(n))) {
            ret = reel_fail(err, REEL_ERR(ENOMEM), "out of memory");
            break;
        }
        snprintf(paths[k], n, "%s/part%d.nut", dir, k + 1);
        eo->output_path = paths[k];
        sp.step = k;
        ret = reel_export_part(job, k, eo, st, err);
    }
    eo->output_path = out;
    sp.step = job->nb_clips;
    if (ret >= 0)
        ret = reel_export_assemble(job, (const char *const *)paths, eo, st, err);
    for (int k = 0; k < job->nb_clips; k++) {
        if (paths[k])
            unlink(paths[k]);
        free(paths[k]);
    }
    free(paths);
    rmdir(dir);
    eo->progress = sp.fn;
    eo->progress_opaque = sp.opaque;
    return ret;
}

int reel_cli_export(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},  {"chapters", required_argument, 0, 'c'},
        {"models", required_argument, 0, 'm'},  {"upscale", required_argument, 0, 'u'},
        {"progress", required_argument, 0, 'p'}, {"threads", required_argument, 0, 't'},
        {"verbose", no_argument, 0, 'v'},        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},           {"part", required_argument, 0, 'P'},
        {"assemble", required_argument, 0, 'A'}, {"parallel", no_argument, 0, 'L'},
        {"part-crf", required_argument, 0, 'C'}, {"precision", required_argument, 0, 'R'},
        {"lanes", required_argument, 0, 'N'},   {0, 0, 0, 0}};
    const char *parts[REEL_CLI_MAX_PARTS];
    int nb_parts = 0, part = 0, parallel = 0;
    ReelExportOptions eo = {0};
    ReelCliProgressMode pmode = REEL_CLI_PROGRESS_BAR;
    ReelCliProgress prog;
    ReelExportStats st;
    ReelJob *job = NULL;
    const char *upscale = NULL;
    int bf16 = -1; /* -1: as the job says */
    char err[REEL_ERRMSG_SIZE] = "";
    int c, ret;

    optind = 1;
    while ((c = getopt_long(argc, argv, "o:vqh", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            eo.output_path = optarg;
            break;
        case 'c':
            eo.chapters_path = optarg;
            break;
        case 'm':
            eo.model_dir = optarg;
            break;
        case 'u':
            upscale = optarg;
            break;
        case 'R': {
            ReelUpscalePrecision pr;
            if (reel_upscale_precision_parse(optarg, &pr) < 0) {
                fprintf(stderr, "clipreel export: --precision must be fp32 or bf16\n");
                return 2;
            }
            bf16 = pr == REEL_UPSCALE_BF16;
            break;
        }
        case 'p':
            if (reel_cli_progress_parse_mode(optarg, &pmode) < 0) {
                fprintf(stderr, "clipreel export: --progress must be bar, json or none\n");
                return 2;
            }
            break;
        case 't': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 0 || n > 256) {
                fprintf(stderr, "clipreel export: --threads must be 0-256\n");
                return 2;
            }
            eo.threads = (int)n;
            break;
        }
        case 'N': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 0 || n > REEL_UPSCALE_MAX_LANES) {
                fprintf(stderr, "clipreel export: --lanes must be 0-%d\n", REEL_UPSCALE_MAX_LANES);
                return 2;
            }
            eo.lanes = (int)n;
            break;
        }
        case 'P':
        case 'C': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < (c == 'P' ? 1 : 0) || n > (c == 'P' ? 100000 : 51)) {
                fprintf(stderr, "clipreel export: --%s must be %s\n",
                        c == 'P' ? "part" : "part-crf", c == 'P' ? "a clip number from 1" : "0-51");
                return 2;
            }
            if (c == 'P')
                part = (int)n;
            else
                eo.part_crf = (int)n;
            break;
        }
        case 'A':
            if (nb_parts == REEL_CLI_MAX_PARTS) {
                fprintf(stderr, "clipreel export: more than %d --assemble parts\n",
                        REEL_CLI_MAX_PARTS);
                return 2;
            }
            parts[nb_parts++] = optarg;
            break;
        case 'L':
            parallel = 1;
            break;
        case 'v':
            reel_log_set_level(REEL_LOG_INFO);
            break;
        case 'q':
            reel_log_set_level(REEL_LOG_ERROR);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind + 1 != argc || !eo.output_path) {
        usage(stderr);
        return 2;
    }
    if ((part > 0) + (nb_parts > 0) + parallel > 1) {
        fprintf(stderr, "clipreel export: --part, --assemble and --parallel exclude each other\n");
        return 2;
    }
    av_log_set_level(reel_log_get_level() >= REEL_LOG_DEBUG ? AV_LOG_INFO : AV_LOG_ERROR);
    eo.job_path = argv[optind];
    if (reel_job_load(&job, argv[optind], NULL, err) < 0) {
        fprintf(stderr, "clipreel export: %s\n", err);
        return 1;
    }
    if (upscale) {
        if (!strcmp(upscale, "auto"))
            job->output.upscale_mode = REEL_UPSCALE_AUTO;
        else if (!strcmp(upscale, "always"))
            job->output.upscale_mode = REEL_UPSCALE_ALWAYS;
        else if (!strcmp(upscale, "off"))
            job->output.upscale_mode = REEL_UPSCALE_OFF;
        else {
            fprintf(stderr, "clipreel export: --upscale must be auto, always or off\n");
            reel_job_free(&job);
            return 2;
        }
    }
    if (bf16 >= 0)
        job->output.upscale_bf16 = bf16;
    if (job->output.upscale_mode != REEL_UPSCALE_OFF) {
        ReelUpscaleOptions uo;

        /* lanes of one thread each never start an OpenMP team: libgomp's wait
         * policy does not matter to them (src/cli/main.c) */
        reel_export_model_options(job, eo.model_dir, eo.threads, eo.lanes, &uo);
        if (reel_upscale_planned_lane_threads(&uo) > 1)
            reel_cli_omp_passive(); /* the process starts again here, or goes on */
    }
    reel_cli_progress_init(&prog, pmode);
    cancel_on_signals(&eo); /* after the restart above: exec resets handlers */
    eo.progress = reel_cli_progress_cb;
    eo.progress_opaque = &prog;
    if (part > 0)
        ret = reel_export_part(job, part - 1, &eo, &st, err);
    else if (nb_parts > 0 && nb_parts != job->nb_clips)
        ret = reel_fail(err, REEL_ERROR_INVALID_JOB, "--assemble: %d parts for %d clips",
                        nb_parts, job->nb_clips);
    else if (nb_parts > 0)
        ret = reel_export_assemble(job, parts, &eo, &st, err);
    else if (parallel)
        ret = export_parallel(job, &eo, &st, err);
    else
        ret = reel_export_run(job, &eo, &st, err);
    reel_cli_progress_end(&prog);
    if (ret < 0 && g_signal) {
        fprintf(stderr, "clipreel export: interrupted by %s: cancelled, nothing written\n",
                sig_name(g_signal));
        reel_job_free(&job);
        return die_of_signal();
    }
    if (ret < 0) {
        fprintf(stderr, "clipreel export: %s\n", err);
        reel_job_free(&job);
        return 1;
    }
    if (part > 0 && pmode != REEL_CLI_PROGRESS_JSON) {
        printf("part:      %s (clip %d of %d, %lld frames, %dx%d)\n", eo.output_path, part,
               job->nb_clips, (long long)st.frames, st.width, st.height);
    } else if (pmode != REEL_CLI_PROGRESS_JSON) {
        char vtt[4096];
        reel_export_chapters_path(&eo, vtt, sizeof(vtt));
        printf("reel:      %s\n", eo.output_path);
        if (job->output.chapters)
            printf("chapters:  %s (%d)\n", vtt, st.chapters);
        printf("duration:  %.3f s (%lld frames at %.3f fps), %dx%d\n", st.duration_s,
               (long long)st.frames, reel_job_fps(job), st.width, st.height);
        printf("size:      %.2f MB\n", st.size_bytes / 1e6);
        printf("upscaled:  %d of %d clips through the model%s%s\n", st.upscaled_clips,
               job->nb_clips, st.upscale_precision[0] ? ", " : "", st.upscale_precision);
        printf("time:      %.2f s total", st.total_s);
        for (int p = REEL_PHASE_LOADING_MODEL; p <= REEL_PHASE_FINALIZING; p++)
            if (st.phase_s[p] > 0.0005)
                printf(", %s %.2f s", reel_phase_name((ReelPhase)p), st.phase_s[p]);
        printf("\n");
    }
    reel_job_free(&job);
    return 0;
}
