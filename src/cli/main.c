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
 * upscaler on OpenMP teams restarts: loading clipreel's libraries takes 55-60
 * ms on the VMs this project runs on now, which an export without AI (or
 * --version) need not pay twice, nor an export whose model lanes run one
 * thread each (the default on a 2-core machine): a one-thread lane starts no
 * team, so no thread of it ever waits at a barrier.
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
 * of them for a 1080x1920 encode, allocated afresh by every export. Whether
 * they pay depends on the host (docs/PERFORMANCE.md, Huge pages): on the KVM
 * guests (Zen 4) this project ran on until 2026-12-03 a fresh huge page cost
 * ~10x a plain page once the host had taken the memory back, 11 % of an
 * export after a pause, so clipreel turned them off for itself; on the PVM
 * guests (Zen 5) it runs on since, the same export takes as long either way
 * after a pause and 9 % less with them right after another. So clipreel
 * keeps the system's policy, as the ffmpeg CLI does; CLIPREEL_THP=off turns
 * them off for the process and its children (the flag survives the restart
 * above).
 */
static void set_thp_policy(void)
{
    const char *v = getenv("CLIPREEL_THP");

    if (v && !strcmp(v, "off"))
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
