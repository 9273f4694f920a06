/*
 * cli.h - the subcommands of the clipreel binary. main.c dispatches on argv[1];
 * each subcommand gets argc/argv with argv[0] = its own name and returns the
 * process exit status (0 ok, 1 failure, 2 usage error).
 */
#ifndef REEL_CLI_CLI_H
#define REEL_CLI_CLI_H

int reel_cli_export(int argc, char **argv);
int reel_cli_upscale(int argc, char **argv);
int reel_cli_serve(int argc, char **argv);
int reel_cli_submit(int argc, char **argv);
int reel_cli_plan(int argc, char **argv);
int reel_cli_worker(int argc, char **argv);

/**
 * Before a command first runs the upscaler: when OMP_WAIT_POLICY is unset,
 * sets it to passive and starts the process again with the same arguments
 * (libgomp reads it only when loaded); returns when it is already set or the
 * restart failed. main.c calls it for the commands that always upscale.
 */
void reel_cli_omp_passive(void);

#endif
