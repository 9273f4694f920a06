/*
 * planner.h - single container or one container per clip, which GPU class, and
 * what it costs (DESIGN section 7).
 *
 * The cost model is the seed's, with every number a configurable default:
 * a container pays a cold start (7 s) and, if it runs the model, a model load
 * (4 s); upscaled frames cost seconds-per-frame of the GPU class; each storage
 * transfer (a source download, an intermediate or result upload) costs
 * transfer_s; GPU seconds are billed at the class's price per second. The
 * planner decides with the same model it prints: single container when the job
 * has at most single_max_clips clips OR at most single_max_output_s seconds of
 * output, else parallel (one task per clip, then one assemble task that joins
 * the per-clip results; the assemble task runs no model).
 *
 * Thread-safety: pure functions over caller storage.
 */
#ifndef REEL_JOBS_PLANNER_H
#define REEL_JOBS_PLANNER_H

#include <stdint.h>

#include "core/job.h"

#define REEL_PLAN_MAX_CLASSES 8

typedef struct ReelGpuClass {
    char name[16];          /**< "t4", "l4", ... (stream names use it) */
    double min_output_s;    /**< chosen when the estimated output exceeds this */
    double s_per_frame;     /**< upscaled output frame cost on this class */
    double price_per_s;     /**< dollars per GPU second */
} ReelGpuClass;

typedef struct ReelPlanConfig {
    int single_max_clips;        /**< 5 */
    double single_max_output_s;  /**< 180 */
    double cold_start_s;         /**< 7 */
    double model_load_s;         /**< 4 */
    double transfer_s;           /**< 0.5 per storage transfer */
    double assemble_s_per_frame; /**< 0.004: decode + composite + encode, no model */
    ReelGpuClass classes[REEL_PLAN_MAX_CLASSES]; /**< ascending min_output_s */
    int nb_classes;
} ReelPlanConfig;

typedef struct ReelPlanCost {
    int containers;
    int transfers;
    double gpu_s;   /**< billed seconds, all containers together */
    double wall_s;  /**< time to the finished reel (parallel tasks overlap) */
    double cost;    /**< dollars */
} ReelPlanCost;

typedef struct ReelPlan {
    int parallel;             /**< 0 single container, 1 per clip + assemble */
    const ReelGpuClass *gpu;  /**< points into the config */
    double output_s;          /**< estimated reel duration */
    int64_t frames;           /**< reel frames */
    int nb_clips;
    ReelPlanCost single, per_clip;
    char reason[160];         /**< why this mode was chosen */
} ReelPlan;

/** The seed's defaults: T4 $0.000164/s, L4 $0.000222/s, L4 above 45 s. */
void reel_plan_config_default(ReelPlanConfig *cfg);

/**
 * Load a JSON config (same field names as ReelPlanConfig, classes as an array of
 * {name, min_output_s, s_per_frame, price_per_s}) over the defaults.
 */
int reel_plan_config_load(ReelPlanConfig *cfg, const char *path, char *errmsg);

/**
 * Plan a job. Every clip must have its segments resolved (declared durations or
 * reel_job_apply_probe).
 * @return 0, or REEL_ERROR_INVALID_JOB with errmsg when a clip is unresolved.
 */
int reel_plan_make(const ReelJob *job, const ReelPlanConfig *cfg, ReelPlan *plan,
                   char *errmsg);

#endif
