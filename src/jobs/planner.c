/*
 * planner.c - the cost model and the single-versus-parallel decision; see
 * planner.h for the model and docs/planner.md for the numbers.
 */
#include "jobs/planner.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "core/error.h"
#include "core/timeline.h"

void reel_plan_config_default(ReelPlanConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->single_max_clips = 5;
    cfg->single_max_output_s = 180.0;
    cfg->cold_start_s = 7.0;
    cfg->model_load_s = 4.0;
    cfg->transfer_s = 0.5;
    cfg->assemble_s_per_frame = 0.004;
    /* T4: the seed's 3 x 10 s table (761 GPU-s for 900 frames in one container)
     * gives 750 s / 900 frames; L4 measured 1.36x slower per frame (167.1 s vs
     * 122.7 s for the same 180 frames) in the seed's benchmark. */
    cfg->classes[0] = (ReelGpuClass){"t4", 0.0, 750.0 / 900.0, 0.000164};
    cfg->classes[1] = (ReelGpuClass){"l4", 45.0, 750.0 / 900.0 * 167.1 / 122.7, 0.000222};
    cfg->nb_classes = 2;
}

static int get_num(json_t *o, const char *key, double *v)
{
    json_t *j = json_object_get(o, key);
    if (!j)
        return 0;
    if (!json_is_number(j) || json_number_value(j) < 0)
        return -1;
    *v = json_number_value(j);
    return 0;
}

int reel_plan_config_load(ReelPlanConfig *cfg, const char *path, char *errmsg)
{
    static const char *const keys[] = {"single_max_output_s", "cold_start_s", "model_load_s",
                                       "transfer_s", "assemble_s_per_frame"};
    double *dst[] = {&cfg->single_max_output_s, &cfg->cold_start_s, &cfg->model_load_s,
                     &cfg->transfer_s, &cfg->assemble_s_per_frame};
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr), *classes;
    double v;
    int ret = REEL_ERROR_INVALID_JOB;

    if (!root)
        return reel_fail(errmsg, REEL_ERROR_INVALID_JOB, "%s: line %d: %s", path, jerr.line,
                         jerr.text);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (get_num(root, keys[i], dst[i]) < 0) {
            reel_fail(errmsg, ret, "%s: %s must be a number >= 0", path, keys[i]);
            goto end;
        }
    }
    v = cfg->single_max_clips;
    if (get_num(root, "single_max_clips", &v) < 0) {
        reel_fail(errmsg, ret, "%s: single_max_clips must be a number >= 0", path);
        goto end;
    }
    cfg->single_max_clips = (int)v;
    classes = json_object_get(root, "classes");
    if (classes) {
        if (!json_is_array(classes) || json_array_size(classes) == 0 ||
            json_array_size(classes) > REEL_PLAN_MAX_CLASSES) {
            reel_fail(errmsg, ret, "%s: classes must be an array of 1-%d GPU classes", path,
                      REEL_PLAN_MAX_CLASSES);
            goto end;
        }
        cfg->nb_classes = 0;
        for (size_t i = 0; i < json_array_size(classes); i++) {
            json_t *c = json_array_get(classes, i), *name = json_object_get(c, "name");
            ReelGpuClass *g = &cfg->classes[cfg->nb_classes];
            memset(g, 0, sizeof(*g));
            if (!json_is_string(name) || json_string_length(name) >= sizeof(g->name) ||
                get_num(c, "min_output_s", &g->min_output_s) < 0 ||
                get_num(c, "s_per_frame", &g->s_per_frame) < 0 ||
                get_num(c, "price_per_s", &g->price_per_s) < 0) {
                reel_fail(errmsg, ret, "%s: classes[%zu] needs a name and numbers >= 0", path, i);
                goto end;
            }
            snprintf(g->name, sizeof(g->name), "%s", json_string_value(name));
            if (cfg->nb_classes > 0 && g->min_output_s < cfg->classes[cfg->nb_classes - 1].min_output_s) {
                reel_fail(errmsg, ret, "%s: classes must ascend by min_output_s", path);
                goto end;
            }
            cfg->nb_classes++;
        }
    }
    ret = 0;
end:
    json_decref(root);
    return ret;
}

int reel_plan_make(const ReelJob *job, const ReelPlanConfig *cfg, ReelPlan *plan, char *errmsg)
{
    ReelLayout layout;
    double slowest = 0.0;
    int ret;

    memset(plan, 0, sizeof(*plan));
    for (int i = 0; i < job->nb_clips; i++)
        if (job->clips[i].nb_segments == 0)
            return reel_fail(errmsg, REEL_ERROR_INVALID_JOB,
                             "clips[%d]: duration unknown (give duration or trimRange.end, or "
                             "let the source be probed)", i);
    if ((ret = reel_layout_init(&layout, job)) < 0)
        return reel_fail(errmsg, ret, "planner: out of memory");

    plan->nb_clips = job->nb_clips;
    plan->frames = layout.nb_frames;
    plan->output_s = (double)layout.nb_frames / layout.fps;
    plan->gpu = &cfg->classes[0];
    for (int c = 1; c < cfg->nb_classes; c++)
        if (plan->output_s > cfg->classes[c].min_output_s)
            plan->gpu = &cfg->classes[c];

    const ReelGpuClass *g = plan->gpu;
    int64_t clip_frames = 0;
    for (int i = 0; i < layout.nb_clips; i++)
        clip_frames += layout.clips[i].nb_frames;

    /* single: one container downloads every source, upscales every frame and
     * uploads one result */
    plan->single.containers = 1;
    plan->single.transfers = job->nb_clips + 1;
    plan->single.gpu_s = cfg->cold_start_s + cfg->model_load_s +
                         (double)clip_frames * g->s_per_frame +
                         plan->single.transfers * cfg->transfer_s;
    plan->single.wall_s = plan->single.gpu_s;

    /* per clip: each task downloads its source and uploads an intermediate;
     * the assemble task downloads them all, joins and uploads the result */
    plan->per_clip.containers = job->nb_clips + 1;
    plan->per_clip.transfers = 2 * job->nb_clips + job->nb_clips + 1;
    plan->per_clip.gpu_s = 0.0;
    for (int i = 0; i < layout.nb_clips; i++) {
        double t = cfg->cold_start_s + cfg->model_load_s +
                   (double)layout.clips[i].nb_frames * g->s_per_frame + 2 * cfg->transfer_s;
        plan->per_clip.gpu_s += t;
        if (t > slowest)
            slowest = t;
    }
    double assemble = cfg->cold_start_s + (double)layout.nb_frames * cfg->assemble_s_per_frame +
                      (job->nb_clips + 1) * cfg->transfer_s;
    plan->per_clip.gpu_s += assemble;
    plan->per_clip.wall_s = slowest + assemble;
    plan->single.cost = plan->single.gpu_s * g->price_per_s;
    plan->per_clip.cost = plan->per_clip.gpu_s * g->price_per_s;

    if (job->nb_clips <= cfg->single_max_clips) {
        snprintf(plan->reason, sizeof(plan->reason), "%d clips <= %d: single container",
                 job->nb_clips, cfg->single_max_clips);
    } else if (plan->output_s <= cfg->single_max_output_s) {
        snprintf(plan->reason, sizeof(plan->reason), "%.1f s of output <= %.0f s: single container",
                 plan->output_s, cfg->single_max_output_s);
    } else {
        plan->parallel = 1;
        snprintf(plan->reason, sizeof(plan->reason),
                 "%d clips > %d and %.1f s of output > %.0f s: one task per clip + assemble",
                 job->nb_clips, cfg->single_max_clips, plan->output_s, cfg->single_max_output_s);
    }
    reel_layout_uninit(&layout);
    return 0;
}
