/*
 * cli_export.c - `clipreel export JOB.json -o reel.mp4`: the engine in this
 * process, with a progress bar (or JSON lines) and a summary at the end.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/log.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/error.h"
#include "core/job.h"
#include "core/log.h"
#include "media/export.h"

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
            "      --progress MODE        bar (default), json (JSON lines on stdout) or none\n"
            "      --threads N            worker threads (0 = all cores)\n"
            "  -v, --verbose / -q, --quiet\n"
            "\n"
            "The job (docs/job-format.md): {\"clips\": [{\"source\": \"a.mp4\", \"clipName\",\n"
            "\"trimRange\": {start, end}, \"segments\": {\"boundaries\": [...], \"segmentSpeeds\":\n"
            "{\"1\": 0.5}}, \"cropKeyframes\": [{time, x, y, width, height}], \"rotation\",\n"
            "\"interpolation\": \"catmull-rom|linear\"}], \"globalAspectRatio\": \"9:16\",\n"
            "\"transition\": {\"type\": \"cut|fade|dissolve\", \"duration\": 0.5}, \"output\":\n"
            "{width, height, fps, include_audio, crf, preset, audio_bitrate, chapters,\n"
            "\"upscale\": {\"model\": \"realesr-general-x4v3|RealESRGAN_x4plus\", \"mode\",\n"
            "\"tile\"}}}. Relative sources are relative to the job file.\n");
}

int reel_cli_export(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},  {"chapters", required_argument, 0, 'c'},
        {"models", required_argument, 0, 'm'},  {"upscale", required_argument, 0, 'u'},
        {"progress", required_argument, 0, 'p'}, {"threads", required_argument, 0, 't'},
        {"verbose", no_argument, 0, 'v'},        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    ReelExportOptions eo = {0};
    ReelCliProgressMode pmode = REEL_CLI_PROGRESS_BAR;
    ReelCliProgress prog;
    ReelExportStats st;
    ReelJob *job = NULL;
    const char *upscale = NULL;
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
    av_log_set_level(reel_log_get_level() >= REEL_LOG_DEBUG ? AV_LOG_INFO : AV_LOG_ERROR);
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
    reel_cli_progress_init(&prog, pmode);
    eo.progress = reel_cli_progress_cb;
    eo.progress_opaque = &prog;
    ret = reel_export_run(job, &eo, &st, err);
    reel_cli_progress_end(&prog);
    if (ret < 0) {
        fprintf(stderr, "clipreel export: %s\n", err);
        reel_job_free(&job);
        return 1;
    }
    if (pmode != REEL_CLI_PROGRESS_JSON) {
        char vtt[4096];
        if (eo.chapters_path)
            snprintf(vtt, sizeof(vtt), "%s", eo.chapters_path);
        else {
            size_t n = strlen(eo.output_path);
            if (n > 4 && !strcmp(eo.output_path + n - 4, ".mp4"))
                snprintf(vtt, sizeof(vtt), "%.*s.chapters.vtt", (int)(n - 4), eo.output_path);
            else
                snprintf(vtt, sizeof(vtt), "%s.chapters.vtt", eo.output_path);
        }
        printf("reel:      %s\n", eo.output_path);
        if (job->output.chapters)
            printf("chapters:  %s (%d)\n", vtt, st.chapters);
        printf("duration:  %.3f s (%lld frames at %.3f fps), %dx%d\n", st.duration_s,
               (long long)st.frames, reel_job_fps(job), st.width, st.height);
        printf("size:      %.2f MB\n", st.size_bytes / 1e6);
        printf("upscaled:  %d of %d clips through the model\n", st.upscaled_clips, job->nb_clips);
        printf("time:      %.2f s total", st.total_s);
        for (int p = REEL_PHASE_LOADING_MODEL; p <= REEL_PHASE_FINALIZING; p++)
            if (st.phase_s[p] > 0.0005)
                printf(", %s %.2f s", reel_phase_name((ReelPhase)p), st.phase_s[p]);
        printf("\n");
    }
    reel_job_free(&job);
    return 0;
}
