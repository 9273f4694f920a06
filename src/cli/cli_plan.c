/*
 * cli_plan.c - `clipreel plan JOB.json`: the planner's decision and the cost of
 * a single container against one container per clip, in the form of the seed's
 * cost comparison table (DESIGN section 7). Clips without a declared duration
 * are probed (container duration only: planning needs no frames).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <libavformat/avformat.h>

#include "cli/cli.h"
#include "core/error.h"
#include "core/job.h"
#include "core/log.h"
#include "jobs/planner.h"

static int probe_clip(ReelJob *job, int i, char *errmsg)
{
    const ReelClip *c = &job->clips[i];
    AVFormatContext *fmt = NULL;
    int ret, width = 0, height = 0;
    double duration;

    if (!c->source)
        return reel_fail(errmsg, REEL_ERROR_INVALID_JOB,
                         "clips[%d]: no duration and no source to probe", i);
    if ((ret = avformat_open_input(&fmt, c->source, NULL, NULL)) < 0)
        return reel_fail(errmsg, REEL_ERROR_MEDIA, "clips[%d].source: %s: cannot open", i,
                         c->source);
    if ((ret = avformat_find_stream_info(fmt, NULL)) < 0 || fmt->duration <= 0) {
        avformat_close_input(&fmt);
        return reel_fail(errmsg, REEL_ERROR_MEDIA, "clips[%d].source: %s: no duration", i,
                         c->source);
    }
    duration = fmt->duration / (double)AV_TIME_BASE;
    for (unsigned s = 0; s < fmt->nb_streams; s++) {
        if (fmt->streams[s]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) {
            width = fmt->streams[s]->codecpar->width;
            height = fmt->streams[s]->codecpar->height;
            break;
        }
    }
    avformat_close_input(&fmt);
    if (width <= 0)
        return reel_fail(errmsg, REEL_ERROR_MEDIA, "clips[%d].source: %s: no video stream", i,
                         c->source);
    return reel_job_apply_probe(job, i, width, height, duration, errmsg);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: clipreel plan JOB.json [--config PLAN.json] [--json]\n"
               "Prints the planner's decision (single container or one per clip + assemble,\n"
               "GPU class) and the estimated cost of both, from the cost model in\n"
               "docs/planner.md (cold start, model load, seconds per frame, price per second,\n"
               "storage transfers). --config overrides the model's numbers.\n");
}

int reel_cli_plan(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    char err[REEL_ERRMSG_SIZE] = "";
    const char *config = NULL;
    ReelPlanConfig cfg;
    ReelJob *job = NULL;
    ReelPlan plan;
    int json = 0, c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    reel_plan_config_default(&cfg);
    if (config && reel_plan_config_load(&cfg, config, err) < 0)
        goto fail;
    if (reel_job_load(&job, argv[optind], NULL, err) < 0)
        goto fail;
    for (int i = 0; i < job->nb_clips; i++)
        if (job->clips[i].nb_segments == 0 && probe_clip(job, i, err) < 0)
            goto fail;
    if (reel_plan_make(job, &cfg, &plan, err) < 0)
        goto fail;

    if (json) {
        printf("{\"parallel\":%s,\"gpu_class\":\"%s\",\"clips\":%d,\"frames\":%lld,"
               "\"output_s\":%.3f,\"reason\":\"%s\"",
               plan.parallel ? "true" : "false", plan.gpu->name, plan.nb_clips,
               (long long)plan.frames, plan.output_s, plan.reason);
        const ReelPlanCost *cs[2] = {&plan.single, &plan.per_clip};
        const char *names[2] = {"single", "per_clip"};
        for (int k = 0; k < 2; k++)
            printf(",\"%s\":{\"containers\":%d,\"transfers\":%d,\"gpu_s\":%.3f,\"wall_s\":%.3f,"
                   "\"cost\":%.6f}",
                   names[k], cs[k]->containers, cs[k]->transfers, cs[k]->gpu_s, cs[k]->wall_s,
                   cs[k]->cost);
        printf("}\n");
    } else {
        printf("Plan for %s: %d clips, %lld frames, %.1f s of output\n", argv[optind],
               plan.nb_clips, (long long)plan.frames, plan.output_s);
        printf("Decision: %s on %s (%s)\n\n",
               plan.parallel ? "one container per clip + assemble" : "single container",
               plan.gpu->name, plan.reason);
        printf("%-28s %18s %22s\n", "", "single container", "per-clip containers");
        printf("%-28s %18d %22d\n", "containers", plan.single.containers, plan.per_clip.containers);
        printf("%-28s %18d %22d\n", "storage transfers", plan.single.transfers,
               plan.per_clip.transfers);
        printf("%-28s %18.1f %22.1f\n", "GPU seconds", plan.single.gpu_s, plan.per_clip.gpu_s);
        printf("%-28s %18.1f %22.1f\n", "wall seconds", plan.single.wall_s, plan.per_clip.wall_s);
        char label[64], a[32], b[32];
        snprintf(label, sizeof(label), "cost (%s at $%.6f/s)", plan.gpu->name,
                 plan.gpu->price_per_s);
        snprintf(a, sizeof(a), "$%.4f", plan.single.cost);
        snprintf(b, sizeof(b), "$%.4f", plan.per_clip.cost);
        printf("%-28s %18s %22s\n", label, a, b);
        printf("\nModel: cold start %.0f s, model load %.0f s, %.3f s/frame on %s, %.1f s per "
               "transfer.\n",
               cfg.cold_start_s, cfg.model_load_s, plan.gpu->s_per_frame, plan.gpu->name,
               cfg.transfer_s);
    }
    reel_job_free(&job);
    return 0;

fail:
    fprintf(stderr, "clipreel plan: %s\n", err);
    reel_job_free(&job);
    return 1;
}
