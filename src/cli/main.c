/*
 * main.c - the clipreel binary: dispatch to a subcommand.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"export", reel_cli_export, "export JOB.json -o reel.mp4   render a reel"},
    {"upscale", reel_cli_upscale, "upscale IN.png -o OUT.png     run the AI upscaler on one image"},
    {"serve", reel_cli_serve, "serve [--port N] [--data DIR]  run the export service (HTTP + WebSocket)"},
    {"submit", reel_cli_submit, "submit JOB.json --server URL  export on a server, follow it, download it"},
    {"plan", reel_cli_plan, "plan JOB.json                 single vs per-clip containers, and their cost"},
    {"worker", reel_cli_worker, "worker --redis URL --gpu-class t4  run exports from Redis Streams"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: clipreel <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %s\n", commands[i].help);
    fprintf(f, "\n`clipreel <command> --help` describes a command.\n");
}

int main(int argc, char **argv)
{
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
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "clipreel: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
