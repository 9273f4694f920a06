/*
 * main.c - the clipreel binary: dispatch to a subcommand.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/log.h"

/* omp: the command runs the upscaler (OpenMP) whatever it is asked, so it starts
 * passive (reel_cli_omp_passive); export decides for itself, once it has read its job */
static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    int omp;
    const char *help;
} commands[] = {
    {"export", reel_cli_export, 0, "export JOB.json -o reel.mp4   render a reel"},
    {"upscale", reel_cli_upscale, 1,
     "upscale IN.png -o OUT.png     run the AI upscaler on one image"},
    {"serve", reel_cli_serve, 1,
     "serve [--port N] [--data DIR]  run the export service (HTTP + WebSocket)"},
    {"submit", reel_cli_submit, 0,
     "submit JOB.json --server URL  export on a server, follow it, download it"},
    {"plan", reel_cli_plan, 0,
     "plan JOB.json                 single vs per-clip containers, and their cost"},
    {"worker", reel_cli_worker, 1,
     "worker --redis URL --gpu-class t4  run exports from Redis Streams"},
};

static char **main_argv; /* for the restart */

static void usage(FILE *f)
{
    fprintf(f, "usage: clipreel <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %s\n", commands[i].help);
    fprintf(f, "\n`clipreel <command> --help` describes a command.\n");
}

/*
 * oneDNN runs on libgomp, whose threads by default spin at every barrier before
 * sleeping. On a small machine where the export's decode and encode threads and
 * other processes want the same cores, that spinning costs 1.4-1.8x on exports
 * with AI (docs/PERFORMANCE.md, Threads). libgomp reads OMP_WAIT_POLICY once,
 * when it is loaded, before main(): so when it is unset we set it to passive and
 * start ourselves again, once. An explicit OMP_WAIT_POLICY wins; if the restart
 * fails we go on with libgomp's default. Only a process that will run the
 * upscaler restarts: loading clipreel's libraries takes 55-60 ms on the VMs
 * this project runs on now, which an export without AI (or --version) need
 * not pay twice.
 */
void reel_cli_omp_passive(void)
{
    if (getenv("OMP_WAIT_POLICY") || !main_argv)
        return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) < 0)
        return;
    fflush(NULL);
    execv("/proc/self/exe", main_argv);
}

/*
 * libx264 asks for transparent huge pages on its large buffers (madvise), ~200
 * of them for a 1080x1920 encode, allocated afresh by every export. On VMs of
 * this kind a fresh huge page is expensive when the host has taken back the
 * memory the guest freed (what a process that starts after another has ended
 * meets): 9.8 us per 4 KiB against 1.7 us for a plain page, so a 6 s 1080p
 * export spent ~1.1 s in the kernel instead of ~0.35 s, 11 % of its time
 * (docs/PERFORMANCE.md, Huge pages). An export right after another pays ~0.15 s
 * more for its 4 KiB faults (~4 %, inside this VM's noise); exports mostly come
 * after a pause. Nothing else here asks for huge pages, so clipreel turns them
 * off for itself and its children; CLIPREEL_THP=on keeps the system's policy.
 * The flag survives the exec above.
 */
static void set_thp_policy(void)
{
    const char *v = getenv("CLIPREEL_THP");

    if (v && !strcmp(v, "on"))
        return;
    (void)prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0); /* refused: the system's policy stays */
}

int main(int argc, char **argv)
{
    set_thp_policy();
    main_argv = argv;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("clipreel 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name)) {
            if (commands[i].omp)
                reel_cli_omp_passive();
            return commands[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "clipreel: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
