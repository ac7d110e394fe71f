// SPDX-License-Identifier: GPL-2.0-only
/*
 * policyd: a host firewall for application payloads. One binary; the
 * subcommands are check, dump, run and stats (see policyd(8)).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "policy.h"

#ifndef PD_VERSION
#define PD_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: policyd check [-c FILE]\n"
		"       policyd dump  [-c FILE] [--json]\n"
		"       policyd run   [-c FILE] [--cgroup DIR] [--pin-dir DIR] [--user NAME] [--foreground]\n"
		"       policyd stats [--pin-dir DIR] [--json]\n"
		"       policyd --help | --version\n"
		"\n"
		"  -c, --config FILE  policy file (default %s)\n"
		"  -j, --json         machine-readable output\n"
		"  -v, --verbose      also print libbpf's messages\n"
		"\n"
		"Exit status: 0 ok, 1 invalid policy, 2 usage, 3 runtime failure.\n"
		"See policyd(8) and policyd.conf(5).\n", PD_DEFAULT_CONFIG);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Parse and compile; on failure print every error and return PD_EXIT_POLICY. */
int pd_load_and_compile(const char *file, struct pd_policy *p, struct pd_image *img,
			double *ms)
{
	struct pd_diag d = { 0 };
	double t0 = now_ms();

	if (pd_policy_load(file, p, &d) || pd_compile(p, img, &d)) {
		pd_diag_print(&d, stderr);
		pd_diag_free(&d);
		if (p->file)
			pd_policy_free(p);
		return PD_EXIT_POLICY;
	}
	if (ms)
		*ms = now_ms() - t0;
	pd_diag_free(&d);
	return PD_EXIT_OK;
}

static int cmd_check(const struct pd_opts *o)
{
	struct pd_policy p;
	struct pd_image img;
	double ms;
	int ret = pd_load_and_compile(o->config, &p, &img, &ms);

	if (ret)
		return ret;
	printf("%s: ok: %u services, %zu rules, %u automaton states, %llu image bytes "
	       "(%.1f MiB), compiled in %.1f ms\n", o->config, img.nservices, p.nrules,
	       img.nstates, (unsigned long long)img.bytes, img.bytes / 1048576.0, ms);
	pd_image_free(&img);
	pd_policy_free(&p);
	return PD_EXIT_OK;
}

static int cmd_dump(const struct pd_opts *o)
{
	struct pd_policy p;
	struct pd_image img;
	int ret = pd_load_and_compile(o->config, &p, &img, NULL);

	if (ret)
		return ret;
	if (o->json)
		pd_dump_json(stdout, &p, &img);
	else
		pd_dump_text(stdout, &p, &img);
	pd_image_free(&img);
	pd_policy_free(&p);
	return PD_EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "cgroup", required_argument, NULL, 'g' },
		{ "pin-dir", required_argument, NULL, 'p' },
		{ "user", required_argument, NULL, 'u' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "monitor", no_argument, NULL, 'm' },
		{ "format", required_argument, NULL, 'F' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct pd_opts o = { .config = PD_DEFAULT_CONFIG };
	const char *cmd;
	int ch;

	while ((ch = getopt_long(argc, argv, "+c:jg:p:u:fvhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			usage(stdout);
			return PD_EXIT_OK;
		case 'V':
			printf("policyd %s (policy language version 1, map layout %d)\n",
			       PD_VERSION, PD_LAYOUT_VERSION);
			return PD_EXIT_OK;
		case 'v':
			o.verbose = true;
			break;
		default:
			usage(stderr);
			return PD_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return PD_EXIT_USAGE;
	}
	cmd = argv[optind];
	optind++;
	while ((ch = getopt_long(argc, argv, "c:jg:p:u:fvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o.config = optarg; o.config_given = true; break;
		case 'j': o.json = true; break;
		case 'g': o.cgroup = optarg; break;
		case 'p': o.pin_dir = optarg; break;
		case 'u': o.user = optarg; break;
		case 'f': o.foreground = true; break;
		case 'm': o.monitor = true; break;
		case 'F':
			if (!strcmp(optarg, "openmetrics"))
				o.openmetrics = true;
			else if (!strcmp(optarg, "json"))
				o.json = true;
			else if (strcmp(optarg, "text")) {
				fprintf(stderr, "policyd: --format is text, json or openmetrics, "
					"not '%s'\n", optarg);
				return PD_EXIT_USAGE;
			}
			break;
		case 'v': o.verbose = true; break;
		case 'h':
			usage(stdout);
			return PD_EXIT_OK;
		default:
			usage(stderr);
			return PD_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "policyd: unexpected argument '%s'\n", argv[optind]);
		return PD_EXIT_USAGE;
	}
	if (!strcmp(cmd, "check") && !o.json && !o.cgroup && !o.pin_dir && !o.user && !o.foreground && !o.monitor)
		return cmd_check(&o);
	if (!strcmp(cmd, "dump") && !o.cgroup && !o.pin_dir && !o.user && !o.foreground && !o.monitor)
		return cmd_dump(&o);
	if (!strcmp(cmd, "run") && !o.json)
		return pd_cmd_run(&o);
	if (!strcmp(cmd, "stats") && !o.cgroup && !o.user && !o.foreground && !o.monitor &&
	    !o.config_given)
		return pd_cmd_stats(&o);
	if (strcmp(cmd, "check") && strcmp(cmd, "dump") && strcmp(cmd, "run") &&
	    strcmp(cmd, "stats"))
		fprintf(stderr, "policyd: unknown command '%s'\n", cmd);
	else
		fprintf(stderr, "policyd: an option given does not apply to '%s'\n", cmd);
	usage(stderr);
	return PD_EXIT_USAGE;
}
