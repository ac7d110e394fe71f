/* SPDX-License-Identifier: GPL-2.0-only */
/* Command-line options and exit codes shared by the subcommands. */
#ifndef POLICYD_CLI_H
#define POLICYD_CLI_H

#include <stdbool.h>
#include <time.h>

#include "policy.h"

enum {
	PD_EXIT_OK = 0,
	PD_EXIT_POLICY = 1,     /* the policy is invalid */
	PD_EXIT_USAGE = 2,      /* bad command line */
	PD_EXIT_RUNTIME = 3,    /* kernel refused, no cgroup2, missing capability ... */
	PD_EXIT_CGROUP_GONE = 4, /* run: the policed cgroup was removed */
};

struct pd_opts {
	const char *config;
	bool config_given;      /* -c was on the command line */
	const char *cgroup;     /* NULL: daemon.cgroup, else the cgroup2 mount */
	const char *pin_dir;    /* NULL: daemon.pin_dir */
	const char *user;       /* NULL: daemon.user */
	bool json;
	bool foreground;
	bool verbose;
	bool monitor;           /* --monitor: mode "monitor" whatever the policy says */
	bool openmetrics;       /* stats --format openmetrics */
	bool prometheus;        /* stats --format prometheus (text format 0.0.4) */
	int pid;                /* reload --pid: 0 when not given */
	const char *service;    /* test --service */
	int port;               /* test --port: 0 when not given */
	const char *split;      /* test --split: the mark between sends */
	char **inputs;          /* test: the input files ("-": standard input) */
	int ninputs;
};

/* The monotonic clock in ms: the timings commands report, and the
 * daemon's once-a-second work. */
static inline double pd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int pd_cmd_run(const struct pd_opts *o);
int pd_cmd_stats(const struct pd_opts *o);
int pd_cmd_reload(const struct pd_opts *o);
int pd_cmd_test(const struct pd_opts *o);

#endif
