// SPDX-License-Identifier: GPL-2.0-only
/*
 * `policyd run`: probe the kernel, load the programs sized for the policy,
 * write the policy, attach, pin, adopt open connections, then turn events
 * into log lines until a signal says stop (SIGTERM, SIGINT) or reload
 * (SIGHUP). Every step that fails undoes the ones before it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon.h"
#include "policyd.skel.h"

void pd_log(const struct pd_daemon *d, int prio, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	syslog(prio, "%s", line);
	if (!d || d->o->foreground)
		fprintf(stderr, "policyd: %s\n", line);
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static int libbpf_loud(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_DEBUG ? 0 : vfprintf(stderr, fmt, ap);
}

/* The cgroup2 mount point, from /proc/mounts. */
static int cgroup2_mount(char *out, size_t cap)
{
	char dev[256], dir[4096], type[64];
	FILE *f = fopen("/proc/mounts", "re");
	int found = -1;

	if (!f)
		return -1;
	while (fscanf(f, "%255s %4095s %63s %*[^\n]", dev, dir, type) == 3) {
		if (!strcmp(type, "cgroup2")) {
			snprintf(out, cap, "%s", dir);
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

static bool on_fs(const char *path, long magic)
{
	struct statfs sf;

	return !statfs(path, &sf) && (long)sf.f_type == magic;
}

/* Make sure dir is on a bpffs, mounting one at /sys/fs/bpf when that is
 * where dir lives and nothing is mounted there yet. */
static int ensure_bpffs(const char *dir)
{
	char parent[4096], *slash;

	snprintf(parent, sizeof(parent), "%s", dir);
	while (access(parent, F_OK)) {
		slash = strrchr(parent, '/');
		if (!slash || slash == parent)
			return -1;
		*slash = '\0';
	}
	if (on_fs(parent, BPF_FS_MAGIC))
		return 0;
	if (!strncmp(dir, "/sys/fs/bpf/", 12) && !on_fs("/sys/fs/bpf", BPF_FS_MAGIC)) {
		if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"))
			return -1;
		return 0;
	}
	errno = ENOTSUP;
	return -1;
}

/* What the data plane needs from the kernel, each with the sentence that
 * says so when it is missing. */
static int probe(void)
{
	static const struct { enum bpf_map_type t; const char *what; } maps[] = {
		{ BPF_MAP_TYPE_SOCKHASH, "SOCKHASH maps (CONFIG_BPF_STREAM_PARSER, CONFIG_NET_SOCK_MSG)" },
		{ BPF_MAP_TYPE_SK_STORAGE, "socket-local storage (Linux 5.2)" },
		{ BPF_MAP_TYPE_RINGBUF, "BPF ring buffers (Linux 5.8)" },
	};
	static const struct { enum bpf_func_id f; const char *what; } helpers[] = {
		{ BPF_FUNC_msg_pull_data, "bpf_msg_pull_data" },
		{ BPF_FUNC_msg_apply_bytes, "bpf_msg_apply_bytes" },
		{ BPF_FUNC_msg_cork_bytes, "bpf_msg_cork_bytes" },
		{ BPF_FUNC_loop, "bpf_loop (Linux 5.17)" },
	};

	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		if (libbpf_probe_bpf_map_type(maps[i].t, NULL) != 1) {
			fprintf(stderr, "policyd: this kernel lacks %s, which policyd needs\n",
				maps[i].what);
			return -1;
		}
	if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_MSG, NULL) != 1 ||
	    libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCK_OPS, NULL) != 1) {
		fprintf(stderr, "policyd: this kernel cannot run sk_msg or sock_ops programs "
			"(CONFIG_NET_SOCK_MSG, CONFIG_CGROUP_BPF)\n");
		return -1;
	}
	for (size_t i = 0; i < sizeof(helpers) / sizeof(helpers[0]); i++)
		if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_SK_MSG, helpers[i].f, NULL) != 1) {
			fprintf(stderr, "policyd: this kernel lacks the helper %s for sk_msg "
				"programs\n", helpers[i].what);
			return -1;
		}
	return 0;
}

/* Write service names of slot gen for `policyd stats`. */
static int write_names(const struct pd_daemon *d, const struct pd_policy *p, uint32_t gen)
{
	int fd = bpf_map__fd(d->l.skel->maps.pd_names);

	for (size_t i = 0; i < p->nservices; i++) {
		struct pd_name n = { { 0 } };
		uint32_t k = gen * PD_MAX_SERVICES + (uint32_t)i;

		snprintf(n.name, sizeof(n.name), "%s", p->services[i].name);
		if (bpf_map_update_elem(fd, &k, &n, BPF_ANY))
			return -errno;
	}
	if (p->nservices < PD_MAX_SERVICES) {
		struct pd_name none = { { 0 } };
		uint32_t k = gen * PD_MAX_SERVICES + (uint32_t)p->nservices;

		if (bpf_map_update_elem(fd, &k, &none, BPF_ANY))
			return -errno;
	}
	return 0;
}

static int write_config(const struct pd_daemon *d)
{
	struct pd_config c = {
		.active_gen = d->gen,
		.excerpt = d->pol.daemon.excerpt,
		.generation = d->generation,
		.layout = PD_LAYOUT_VERSION,
		.slot_states = d->l.slot_states,
		.row_width = d->l.row_width,
	};
	uint32_t zero = 0;

	if (c.excerpt > PD_EXCERPT_MAX)
		c.excerpt = PD_EXCERPT_MAX;
	return bpf_map_update_elem(bpf_map__fd(d->l.skel->maps.pd_config), &zero, &c,
				   BPF_ANY) ? -errno : 0;
}

/* Detach and unpin. After the privilege drop the reaper removes the pins,
 * once this process holds no BPF object any more: that frees the maps,
 * which detaches the sk_msg program and empties the socket map. */
static void teardown(struct pd_daemon *d)
{
	bool root = !d->reaper;

	if (d->sockops) {
		if (d->pinned && root)
			bpf_link__unpin(d->sockops);
		bpf_link__destroy(d->sockops);
		d->sockops = NULL;
	}
	if (d->msg_attached && root)
		bpf_prog_detach2(bpf_program__fd(d->l.skel->progs.pd_msg),
				 bpf_map__fd(d->l.skel->maps.pd_sockets), BPF_SK_MSG_VERDICT);
	d->msg_attached = false;
	if (d->pinned && root) {
		bpf_object__unpin_maps(d->l.skel->obj, d->pin_dir);
		rmdir(d->pin_dir);
		d->pinned = false;
	}
	if (d->rb) {
		ring_buffer__free(d->rb);
		d->rb = NULL;
	}
	pd_sinks_close(d->sinks, d->nsinks);
	d->nsinks = 0;
	if (d->l.skel)
		pd_bpf_unload(&d->l);
	if (d->cg_fd >= 0)
		close(d->cg_fd);
	d->cg_fd = -1;
	pd_reaper_finish(d, false);
	d->pinned = false;
}

/* Pins of an earlier instance are never overwritten or reused silently. */
static int pin_dir_free(const char *dir)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/pd_config", dir);
	if (!access(path, F_OK)) {
		fprintf(stderr, "policyd: %s holds the pins of another policyd (running, or "
			"stopped with on_exit = \"keep\"); stop it, or remove the directory to "
			"end its enforcement\n", dir);
		return -1;
	}
	return 0;
}

static int setup(struct pd_daemon *d)
{
	const struct pd_opts *o = d->o;
	const char *why = "";
	char path[4200];
	unsigned adopted = 0;
	int err;

	if (o->cgroup)
		snprintf(d->cgroup, sizeof(d->cgroup), "%s", o->cgroup);
	else if (d->pol.daemon.cgroup)
		snprintf(d->cgroup, sizeof(d->cgroup), "%s", d->pol.daemon.cgroup);
	else if (cgroup2_mount(d->cgroup, sizeof(d->cgroup))) {
		fprintf(stderr, "policyd: no cgroup2 file system is mounted (see /proc/mounts); "
			"mount one or give --cgroup\n");
		return -1;
	}
	snprintf(d->pin_dir, sizeof(d->pin_dir), "%s",
		 o->pin_dir ? o->pin_dir : d->pol.daemon.pin_dir ? d->pol.daemon.pin_dir :
		 PD_DEFAULT_PIN_DIR);
	if (!on_fs(d->cgroup, CGROUP2_SUPER_MAGIC)) {
		fprintf(stderr, "policyd: %s is not a cgroup v2 directory\n", d->cgroup);
		return -1;
	}
	d->cg_fd = open(d->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->cg_fd < 0) {
		fprintf(stderr, "policyd: cannot open %s: %s\n", d->cgroup, strerror(errno));
		return -1;
	}
	if (probe())
		return -1;
	if (ensure_bpffs(d->pin_dir)) {
		fprintf(stderr, "policyd: %s is not on a BPF file system and none could be "
			"mounted: %s\n", d->pin_dir, strerror(errno));
		return -1;
	}
	if (pin_dir_free(d->pin_dir))
		return -1;
	err = pd_bpf_load(&d->img, &d->l, &why);
	if (err) {
		fprintf(stderr, "policyd: %s: %s%s\n", why, strerror(-err),
			err == -EPERM ? " (run as root: loading needs CAP_BPF, CAP_NET_ADMIN "
			"and CAP_SYS_ADMIN)" : "");
		return -1;
	}
	d->gen = 0;
	d->generation = 1;
	if ((err = pd_bpf_write_image(&d->l, &d->img, d->gen)) ||
	    (err = write_names(d, &d->pol, d->gen)) || (err = write_config(d))) {
		fprintf(stderr, "policyd: cannot write the policy into the maps: %s\n",
			strerror(-err));
		return -1;
	}
	if (pd_sinks_open(d, &d->pol, d->sinks, &d->nsinks))
		return -1;
	for (size_t i = 0; i < d->nsinks; i++) {
		uint32_t k = (uint32_t)i;
		uint64_t fd = (uint64_t)d->sinks[i].rx;   /* the map's values are 64-bit */

		if (bpf_map_update_elem(bpf_map__fd(d->l.skel->maps.pd_sinks), &k, &fd, BPF_ANY)) {
			fprintf(stderr, "policyd: cannot set up sink %s: %s\n", d->sinks[i].name,
				strerror(errno));
			return -1;
		}
	}
	if (mkdir(d->pin_dir, 0700) && errno != EEXIST) {
		fprintf(stderr, "policyd: cannot create %s: %s\n", d->pin_dir, strerror(errno));
		return -1;
	}
	d->pinned = true;
	if (bpf_object__pin_maps(d->l.skel->obj, d->pin_dir)) {
		fprintf(stderr, "policyd: cannot pin the maps under %s: %s\n", d->pin_dir,
			strerror(errno));
		return -1;
	}
	if (bpf_prog_attach(bpf_program__fd(d->l.skel->progs.pd_msg),
			    bpf_map__fd(d->l.skel->maps.pd_sockets), BPF_SK_MSG_VERDICT, 0)) {
		fprintf(stderr, "policyd: cannot attach the sk_msg program: %s\n",
			strerror(errno));
		return -1;
	}
	d->msg_attached = true;
	d->sockops = bpf_program__attach_cgroup(d->l.skel->progs.pd_sockops, d->cg_fd);
	if (!d->sockops) {
		d->sockops = NULL;
		fprintf(stderr, "policyd: cannot attach the sock_ops program to %s: %s\n",
			d->cgroup, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/link_sockops", d->pin_dir);
	if (bpf_link__pin(d->sockops, path)) {
		fprintf(stderr, "policyd: cannot pin %s: %s\n", path, strerror(errno));
		return -1;
	}
	/* after the attach: a connection made meanwhile is caught by one or
	 * the other, and one caught by both is adopted once */
	if (pd_adopt(d, &adopted))
		return -1;
	d->rb = ring_buffer__new(bpf_map__fd(d->l.skel->maps.pd_events), pd_on_event, d, NULL);
	if (!d->rb) {
		fprintf(stderr, "policyd: cannot read the event ring buffer: %s\n",
			strerror(errno));
		return -1;
	}
	pd_log(d, LOG_NOTICE, "started: policy %s (%zu services, %zu rules, %u states), "
	       "cgroup %s, pins %s, %u open connections adopted", d->config,
	       d->pol.nservices, d->pol.nrules, d->img.nstates, d->cgroup, d->pin_dir, adopted);
	return 0;
}

/* SIGHUP: the new policy goes into the idle slot, then one write flips
 * the generation. A bad policy changes nothing. */
static void reload(struct pd_daemon *d)
{
	struct pd_policy p = { 0 };
	struct pd_image img = { 0 };
	struct pd_diag diag = { 0 };
	struct pd_sink_rt sinks[PD_MAX_SINKS];
	size_t nsinks = 0;
	uint32_t next = d->gen ^ 1;
	int err;

	if (pd_policy_load(d->config, &p, &diag) || pd_compile(&p, &img, &diag)) {
		for (size_t i = 0; i < diag.n; i++)
			pd_log(d, LOG_ERR, "%s", diag.lines[i]);
		pd_log(d, LOG_ERR, "reload refused: %s is invalid; policy generation %llu "
		       "keeps enforcing", d->config, (unsigned long long)d->generation);
		if (p.file)
			pd_policy_free(&p);
		pd_diag_free(&diag);
		return;
	}
	pd_diag_free(&diag);
	if (!pd_bpf_fits(&d->l, &img)) {
		pd_log(d, LOG_ERR, "reload refused: the new policy needs %u states of %u "
		       "classes, the running maps hold %u of %u; restart policyd to load it; "
		       "policy generation %llu keeps enforcing", img.nstates, img.row_width,
		       d->l.slot_states, d->l.row_width, (unsigned long long)d->generation);
		goto drop_new;
	}
	if (pd_sinks_open(d, &p, sinks, &nsinks))
		goto drop_new;
	if ((err = pd_bpf_write_image(&d->l, &img, next)) || (err = write_names(d, &p, next))) {
		pd_log(d, LOG_ERR, "reload failed writing the maps: %s; policy generation %llu "
		       "keeps enforcing", strerror(-err), (unsigned long long)d->generation);
		pd_sinks_close(sinks, nsinks);
		goto drop_new;
	}
	for (size_t i = 0; i < nsinks; i++) {
		uint32_t k = (uint32_t)i;
		uint64_t fd = (uint64_t)sinks[i].rx;

		if (bpf_map_update_elem(bpf_map__fd(d->l.skel->maps.pd_sinks), &k, &fd, BPF_ANY))
			pd_log(d, LOG_ERR, "reload: sink %s cannot take diverted messages: %s",
			       sinks[i].name, strerror(errno));
	}
	pd_policy_free(&d->pol);
	pd_image_free(&d->img);
	d->pol = p;
	d->img = img;
	d->gen = next;
	d->generation++;
	write_config(d);
	/* what was diverted before the flip is still read from the old sinks */
	ring_buffer__consume(d->rb);
	pd_sinks_close(d->sinks, d->nsinks);
	memcpy(d->sinks, sinks, sizeof(sinks));
	d->nsinks = nsinks;
	pd_log(d, LOG_NOTICE, "reloaded: policy %s is generation %llu (%zu services, %zu "
	       "rules, %u states)", d->config, (unsigned long long)d->generation,
	       p.nservices, p.nrules, img.nstates);
	return;
drop_new:
	pd_image_free(&img);
	pd_policy_free(&p);
}

static int loop(struct pd_daemon *d)
{
	struct pollfd pf[2] = {
		{ .fd = ring_buffer__epoll_fd(d->rb), .events = POLLIN },
		{ .fd = d->sigfd, .events = POLLIN },
	};
	struct signalfd_siginfo si;

	for (;;) {
		int n = poll(pf, 2, 1000);

		if (n < 0 && errno != EINTR) {
			pd_log(d, LOG_ERR, "poll: %s", strerror(errno));
			return -1;
		}
		ring_buffer__consume(d->rb);
		pd_tick(d);
		if (n > 0 && (pf[1].revents & POLLIN) &&
		    read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo == SIGHUP) {
				reload(d);
				continue;
			}
			pd_log(d, LOG_NOTICE, "stopping on %s: detaching", strsignal(si.ssi_signo));
			ring_buffer__consume(d->rb);
			return 0;
		}
	}
}

int pd_cmd_run(const struct pd_opts *o)
{
	struct pd_daemon d = { .o = o, .config = o->config, .cg_fd = -1, .sigfd = -1 };
	sigset_t set;
	int ret;

	libbpf_set_print(o->verbose ? libbpf_loud : libbpf_quiet);
	ret = pd_load_and_compile(o->config, &d.pol, &d.img, NULL);
	if (ret)
		return ret;
	d.log_rate = d.pol.daemon.log_rate;
	openlog("policyd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	d.sigfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (d.sigfd < 0 || setup(&d) ||
	    pd_drop_privileges(&d, o->user ? o->user : d.pol.daemon.user ?
			       d.pol.daemon.user : PD_DEFAULT_USER)) {
		teardown(&d);
		pd_image_free(&d.img);
		pd_policy_free(&d.pol);
		return PD_EXIT_RUNTIME;
	}
	ret = loop(&d) ? PD_EXIT_RUNTIME : PD_EXIT_OK;
	teardown(&d);
	pd_log(&d, LOG_NOTICE, "stopped: nothing attached, pins removed");
	pd_image_free(&d.img);
	pd_policy_free(&d.pol);
	close(d.sigfd);
	closelog();
	return ret;
}
