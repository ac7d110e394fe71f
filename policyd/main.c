// SPDX-License-Identifier: GPL-2.0-only
/*
 * policyd: a host firewall for application payloads. One binary; the
 * subcommands are check, dump, test, run, reload and stats (see policyd(8)).
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "cli.h"
#include "escape.h"
#include "policy.h"

#ifndef PD_VERSION
#define PD_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: policyd check [-c FILE | FILE] [--json]\n"
		"       policyd dump  [-c FILE | FILE] [--json]\n"
		"       policyd test  [-c FILE] [--service NAME | --port N] [--split MARK]\n"
		"                     [--monitor] [--json] [FILE|-]...\n"
		"       policyd run   [-c FILE] [--cgroup DIR] [--pin-dir DIR] [--user NAME]\n"
		"                     [--foreground] [--monitor] [--verbose]\n"
		"       policyd reload [-c FILE] [--pin-dir DIR] [--pid PID]\n"
		"       policyd stats [--pin-dir DIR] [--json | --format FMT]\n"
		"       policyd --help | --version\n"
		"\n"
		"  -c, --config FILE  policy file (default %s; - reads standard input)\n"
		"      --cgroup DIR   cgroup v2 directory to police (default: the cgroup2 mount)\n"
		"      --pin-dir DIR  where the maps are pinned (default: daemon.pin_dir)\n"
		"      --user NAME    account to run as after setup (default: daemon.user)\n"
		"  -f, --foreground   also copy log lines to standard error\n"
		"      --monitor      log would-deny and would-redirect, change nothing\n"
		"      --service NAME test: the service the inputs are sent to\n"
		"      --port N       test: the service of port N\n"
		"      --split MARK   test: MARK (\\n, \\r, \\t, \\\\, \\xHH) ends a send\n"
		"      --pid PID      reload: the daemon to signal (checked against the pins)\n"
		"  -j, --json         machine-readable output\n"
		"      --format FMT   stats: text, json, openmetrics or prometheus\n"
		"  -v, --verbose      also print libbpf's messages\n"
		"  -h, --help         this summary\n"
		"  -V, --version      the version, policy language and map layout\n"
		"\n"
		"Exit status: 0 ok, 1 invalid policy, 2 usage, 3 runtime failure.\n"
		"See policyd(8) and policyd.conf(5).\n", PD_DEFAULT_CONFIG);
}

/* Each option once, with the commands it applies to. */
enum { O_CONFIG, O_JSON, O_CGROUP, O_PIN_DIR, O_USER, O_FOREGROUND, O_MONITOR, O_FORMAT,
       O_PID, O_VERBOSE, O_SERVICE, O_PORT, O_SPLIT, O_COUNT };
static const char *const opt_names[O_COUNT] = {
	"-c/--config", "--json", "--cgroup", "--pin-dir", "--user", "--foreground",
	"--monitor", "--format", "--pid", "--verbose", "--service", "--port", "--split",
};
#define B(o) (1u << (o))
static const struct { const char *name; unsigned opts; const char *takes; } commands[] = {
	{ "check", B(O_CONFIG) | B(O_JSON) | B(O_VERBOSE), "-c FILE (or FILE), --json" },
	{ "dump", B(O_CONFIG) | B(O_JSON) | B(O_VERBOSE), "-c FILE (or FILE), --json" },
	{ "run", B(O_CONFIG) | B(O_CGROUP) | B(O_PIN_DIR) | B(O_USER) | B(O_FOREGROUND) |
		 B(O_MONITOR) | B(O_VERBOSE),
	  "-c FILE, --cgroup, --pin-dir, --user, --foreground, --monitor, --verbose" },
	{ "reload", B(O_CONFIG) | B(O_PIN_DIR) | B(O_PID) | B(O_VERBOSE),
	  "-c FILE, --pin-dir, --pid" },
	{ "stats", B(O_PIN_DIR) | B(O_JSON) | B(O_FORMAT) | B(O_VERBOSE),
	  "--pin-dir, --json, --format" },
	{ "test", B(O_CONFIG) | B(O_JSON) | B(O_MONITOR) | B(O_SERVICE) | B(O_PORT) | B(O_SPLIT) |
		  B(O_VERBOSE),
	  "-c FILE, --service, --port, --split, --monitor, --json, input files" },
};

/* Diagnostics as [{"line": N, "message": "..."}]: each d line is
 * "FILE:LINE: message" or "FILE: message" (line 0). */
static void json_diags(const struct pd_diag *d)
{
	size_t flen = d->file ? strlen(d->file) : 0;

	putchar('[');
	for (size_t i = 0; i < d->n; i++) {
		const char *m = d->lines[i] + flen + 1;
		char *end;
		long line = strtol(m, &end, 10);

		if (end != m && *end == ':')
			m = end + 2;
		else
			line = 0;
		printf("%s{\"line\": %ld, \"message\": ", i ? ", " : "", line);
		pd_json_str(m);
		putchar('}');
	}
	putchar(']');
}

/* check: errors exit 1; warnings (pd_policy_lint) are printed and exit 0. */
static int cmd_check(const struct pd_opts *o)
{
	struct pd_diag d = { 0 }, w = { 0 };
	struct pd_policy p = { 0 };
	struct pd_image img = { 0 };
	double ms = 0;
	bool bad = pd_policy_build(o->config, &p, &img, &d, &ms) != 0;

	if (!bad)
		pd_policy_lint(&p, &w);
	if (o->json) {
		printf("{\"file\": ");
		pd_json_str(d.file ? d.file : o->config);
		printf(", \"ok\": %s", bad ? "false" : "true");
		if (!bad)
			printf(", \"services\": %u, \"rules\": %zu, \"states\": %u, "
			       "\"image_bytes\": %llu, \"compile_ms\": %.1f", img.nservices,
			       p.nrules, img.nstates, (unsigned long long)img.bytes, ms);
		printf(", \"errors\": ");
		json_diags(&d);
		printf(", \"warnings\": ");
		w.file = d.file;
		json_diags(&w);
		printf("}\n");
	} else if (bad) {
		pd_diag_print(&d, stderr);
	} else {
		pd_diag_print(&w, stderr);
		printf("%s: ok: %u services, %zu rules, %u automaton states, %llu image bytes "
		       "(%.1f MiB), compiled in %.1f ms%s\n", d.file ? d.file : o->config,
		       img.nservices, p.nrules, img.nstates, (unsigned long long)img.bytes,
		       img.bytes / 1048576.0, ms, w.n ? "; warnings above" : "");
	}
	pd_diag_free(&d);
	pd_diag_free(&w);
	if (bad)
		return PD_EXIT_POLICY;
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

static int __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "policyd: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry 'policyd --help'.\n");
	va_end(ap);
	return PD_EXIT_USAGE;
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
		{ "pid", required_argument, NULL, 'P' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "service", required_argument, NULL, 'S' },
		{ "port", required_argument, NULL, 'T' },
		{ "split", required_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct pd_opts o = { .config = PD_DEFAULT_CONFIG };
	const char *cmd;
	unsigned given = 0;
	size_t c;
	int ch;
	char *end;

	while ((ch = getopt_long(argc, argv, "+vhV", longopts, NULL)) != -1) {
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
	for (c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
		if (!strcmp(cmd, commands[c].name))
			break;
	if (c == sizeof(commands) / sizeof(commands[0]))
		return usage_error("unknown command '%s'", cmd);
	optind++;
	while ((ch = getopt_long(argc, argv, "c:jfvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o.config = optarg; o.config_given = true; given |= B(O_CONFIG); break;
		case 'j': o.json = true; given |= B(O_JSON); break;
		case 'g': o.cgroup = optarg; given |= B(O_CGROUP); break;
		case 'p': o.pin_dir = optarg; given |= B(O_PIN_DIR); break;
		case 'u': o.user = optarg; given |= B(O_USER); break;
		case 'f': o.foreground = true; given |= B(O_FOREGROUND); break;
		case 'm': o.monitor = true; given |= B(O_MONITOR); break;
		case 'v': o.verbose = true; given |= B(O_VERBOSE); break;
		case 'P':
			o.pid = (int)strtol(optarg, &end, 10);
			if (*end || o.pid <= 0)
				return usage_error("--pid takes a process id, not '%s'", optarg);
			given |= B(O_PID);
			break;
		case 'S': o.service = optarg; given |= B(O_SERVICE); break;
		case 'X': o.split = optarg; given |= B(O_SPLIT); break;
		case 'T':
			o.port = (int)strtol(optarg, &end, 10);
			if (*end || o.port <= 0 || o.port > 65535)
				return usage_error("--port takes a port number, 1 to 65535, not '%s'",
						   optarg);
			given |= B(O_PORT);
			break;
		case 'F':
			given |= B(O_FORMAT);
			if (!strcmp(optarg, "openmetrics"))
				o.openmetrics = true;
			else if (!strcmp(optarg, "prometheus"))
				o.prometheus = true;
			else if (!strcmp(optarg, "json"))
				o.json = true;
			else if (strcmp(optarg, "text"))
				return usage_error("--format is text, json, openmetrics or prometheus, "
						   "not '%s'",
						   optarg);
			break;
		case 'h':
			usage(stdout);
			return PD_EXIT_OK;
		default:
			usage(stderr);
			return PD_EXIT_USAGE;
		}
	}
	for (int k = 0; k < O_COUNT; k++)
		if ((given & B(k)) && !(commands[c].opts & B(k))) {
			fprintf(stderr, "policyd: %s does not apply to '%s', which takes %s\n",
				opt_names[k], cmd, commands[c].takes);
			return PD_EXIT_USAGE;
		}
	if ((given & B(O_JSON)) && (o.openmetrics || o.prometheus))
		return usage_error("give --json or --format, not both");
	if ((given & B(O_SERVICE)) && (given & B(O_PORT)))
		return usage_error("give --service or --port, not both");
	if (c == 5) {
		/* test: the inputs, each one connection's bytes */
		if (!strcmp(o.config, "-"))
			return usage_error("test reads its inputs from standard input: give the "
					   "policy as a file");
		o.inputs = argv + optind;
		o.ninputs = argc - optind;
		return pd_cmd_test(&o);
	}
	/* check and dump also take the policy file as their one argument */
	if (optind < argc && (c == 0 || c == 1) && !o.config_given && optind + 1 == argc) {
		o.config = argv[optind++];
		o.config_given = true;
	} else if (optind < argc && (c == 0 || c == 1) && o.config_given) {
		return usage_error("give the policy file once: -c FILE or FILE, not both "
				   "('%s')", argv[optind]);
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	switch (c) {
	case 0: return cmd_check(&o);
	case 1: return cmd_dump(&o);
	case 2:
		if (!strcmp(o.config, "-"))
			return usage_error("run re-reads its policy file on SIGHUP: give a file, "
					   "not -");
		return pd_cmd_run(&o);
	case 3: return pd_cmd_reload(&o);
	default: return pd_cmd_stats(&o);
	}
}
