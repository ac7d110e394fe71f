// SPDX-License-Identifier: GPL-2.0-only
/*
 * `policyd reload`: SIGHUP to the running daemon, then wait for its
 * outcome in the pins (pd_config.reloads, last_reload) and exit with it,
 * so that a service manager's reload job fails when the policy is refused
 * (the unit's ExecReload). The daemon's own log has the details.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "build.h"
#include "cli.h"
#include "policyd.h"

/* How long a reload may take: compiling and writing a policy of the
 * largest size, on a slow or loaded machine. */
#define PD_RELOAD_WAIT_MS 60000

static int read_config(int fd, struct pd_config *c)
{
	uint32_t zero = 0;

	return bpf_map_lookup_elem(fd, &zero, c);
}

/* The pin directory: --pin-dir, else the one the policy file names (when
 * it can be read: a refused policy may not be), else the default. */
static void pin_dir_of(const struct pd_opts *o, char *out, size_t cap)
{
	struct pd_policy p;
	struct pd_diag d = { 0 };

	if (o->pin_dir) {
		snprintf(out, cap, "%s", o->pin_dir);
		return;
	}
	snprintf(out, cap, "%s", PD_DEFAULT_PIN_DIR);
	if (o->config_given && !pd_policy_load(o->config, &p, &d)) {
		snprintf(out, cap, "%s", p.daemon.pin_dir);
		pd_policy_free(&p);
	}
	pd_diag_free(&d);
}

int pd_cmd_reload(const struct pd_opts *o)
{
	char dir[4096], path[4200];
	struct pd_config before, now;
	struct timespec pause = { 0, 20 * 1000000 };
	int fd;

	pin_dir_of(o, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/pd_config", dir);
	fd = bpf_obj_get(path);
	if (fd < 0 || read_config(fd, &before)) {
		fprintf(stderr, "policyd reload: no running policyd pins in %s: %s%s\n", dir,
			strerror(errno), errno == EACCES || errno == EPERM ? " (run as root)" :
			"; give --pin-dir");
		return PD_EXIT_RUNTIME;
	}
	if (before.layout != PD_LAYOUT_VERSION || !before.pid) {
		fprintf(stderr, "policyd reload: the pins in %s are of another policyd (map "
			"layout %u, this one reads %d)\n", dir, before.layout, PD_LAYOUT_VERSION);
		return PD_EXIT_RUNTIME;
	}
	if (o->pid && (int)before.pid != o->pid) {
		fprintf(stderr, "policyd reload: the pins in %s belong to process %u, not %d; "
			"give the daemon's --pin-dir\n", dir, before.pid, o->pid);
		return PD_EXIT_RUNTIME;
	}
	if (kill((pid_t)before.pid, SIGHUP)) {
		fprintf(stderr, "policyd reload: cannot signal process %u: %s\n", before.pid,
			strerror(errno));
		return PD_EXIT_RUNTIME;
	}
	for (int waited = 0; waited < PD_RELOAD_WAIT_MS; waited += 20) {
		nanosleep(&pause, NULL);
		if (read_config(fd, &now))
			break;
		if (now.reloads == before.reloads)
			continue;
		close(fd);
		if (now.last_reload == PD_RELOAD_OK) {
			printf("policyd reload: policy generation %llu enforces (mode %s)\n",
			       (unsigned long long)now.generation,
			       pd_name(&pd_modes, now.mode));
			return PD_EXIT_OK;
		}
		fprintf(stderr, "policyd reload: refused; policy generation %llu keeps "
			"enforcing. The daemon's log says why%s\n",
			(unsigned long long)now.generation, o->config_given ?
			(access(o->config, R_OK) ? "" : "; `policyd check` of the file:") : "");
		if (o->config_given && !access(o->config, R_OK)) {
			struct pd_policy p;
			struct pd_image img;

			if (!pd_load_and_compile(o->config, &p, &img, NULL)) {
				pd_image_free(&img);
				pd_policy_free(&p);
			}
		}
		return PD_EXIT_POLICY;
	}
	close(fd);
	fprintf(stderr, "policyd reload: process %u did not answer within %d s; see its log\n",
		before.pid, PD_RELOAD_WAIT_MS / 1000);
	return PD_EXIT_RUNTIME;
}
