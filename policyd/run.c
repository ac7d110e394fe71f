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
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/capability.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <systemd/sd-daemon.h>

#include "build.h"
#include "daemon.h"
#include "kernel.h"
#include "policyd.skel.h"

/* Say on stderr why setup stops (the log may not be open yet, and the
 * operator who started policyd reads it there) and return err, a
 * -errno; "%m" in fmt is err's text. Every step of setup reports this
 * way. */
static int __attribute__((format(printf, 2, 3))) fail(int err, const char *fmt, ...)
{
	char msg[8192];
	va_list ap;

	errno = -err;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "policyd: %s\n", msg);
	return err ? err : -EIO;        /* a call that failed without saying why */
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

/* The capabilities setup uses, named when missing (a run as an ordinary
 * user would otherwise fail at the first probe as if the kernel lacked
 * the feature). */
static int check_privileges(void)
{
	static const struct { cap_value_t cap; const char *name; } need[] = {
		{ CAP_BPF, "CAP_BPF" }, { CAP_NET_ADMIN, "CAP_NET_ADMIN" },
		{ CAP_SYS_ADMIN, "CAP_SYS_ADMIN" }, { CAP_SETUID, "CAP_SETUID" },
		{ CAP_SETGID, "CAP_SETGID" },
	};
	char missing[128] = "";
	cap_t caps = cap_get_proc();

	for (size_t i = 0; caps && i < sizeof(need) / sizeof(need[0]); i++) {
		cap_flag_value_t v = CAP_CLEAR;

		if (cap_get_flag(caps, need[i].cap, CAP_EFFECTIVE, &v) || v != CAP_SET)
			snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing),
				 "%s%s", missing[0] ? ", " : "", need[i].name);
	}
	cap_free(caps);
	if (!missing[0])
		return 0;
	return fail(-EPERM, "run needs root, and this process (uid %u) lacks %s: loading and "
		    "attaching the BPF programs takes CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN, "
		    "dropping to the unprivileged user CAP_SETUID and CAP_SETGID; start it as root",
		    (unsigned)geteuid(), missing);
}

static bool monitoring(const struct pd_daemon *d)
{
	return d->o->monitor || d->pol.daemon.monitor;
}

/* What pd_config says of d: the data plane's settings, and what
 * `policyd stats` and `policyd reload` read. */
static void config_of(const struct pd_daemon *d, struct pd_config *c)
{
	*c = (struct pd_config){
		.active_gen = d->gen,
		.excerpt = d->pol.daemon.excerpt,
		.generation = d->generation,
		.layout = PD_LAYOUT_VERSION,
		.slot_states = d->l.slot_states,
		.row_width = d->l.row_width,
		.fail_open = d->pol.daemon.fail_open,
		.slot_gen = { d->slot_gen[0], d->slot_gen[1] },
		.mode = monitoring(d) ? PD_MODE_MONITOR : PD_MODE_ENFORCE,
		.started = d->started,
		.reloads = d->reloads,
		.reloads_refused = d->reloads_refused,
		.last_reload_time = d->last_reload_time,
		.last_reload = d->last_reload,
		.pid = (__u32)getpid(),
	};
	if (c->excerpt > PD_EXCERPT_MAX)
		c->excerpt = PD_EXCERPT_MAX;
}

/* Publish d in pd_config. */
static int write_config(const struct pd_daemon *d)
{
	struct pd_config c;

	config_of(d, &c);
	return pd_bpf_write_config(&d->l, &c);
}

/* Stop. With unpin (on_exit = "detach"), detach and remove the pins; after
 * the privilege drop the reaper removes them, once this process holds no
 * BPF object any more: that frees the maps, which detaches the sk_msg
 * program and empties the socket map. Without, the pinned link and maps
 * go on enforcing: only this process's descriptors close. */
static int teardown(struct pd_daemon *d, bool unpin)
{
	bool root = !d->reaper;
	int left;

	/* first the aborts still due: the maps are still there */
	pd_abort_stop(d);
	for (int i = 0; i < PD_CG_PROGS; i++) {
		if (!d->links[i])
			continue;
		if (d->pinned && root && unpin)
			bpf_link__unpin(d->links[i]);
		bpf_link__destroy(d->links[i]);
		d->links[i] = NULL;
	}
	if (d->msg_attached && root && unpin)
		bpf_prog_detach2(bpf_program__fd(d->l.skel->progs.pd_msg),
				 bpf_map__fd(d->l.skel->maps.pd_sockets), BPF_SK_MSG_VERDICT);
	d->msg_attached = false;
	if (d->pinned && root && unpin) {
		if (d->l.skel)
			bpf_object__unpin_maps(d->l.skel->obj, d->pin_dir);
		rmdir(d->pin_dir);
	}
	d->pinned = false;
	if (d->rb) {
		ring_buffer__consume(d->rb);
		ring_buffer__free(d->rb);
		d->rb = NULL;
	}
	pd_sinks_finish(d);
	if (d->l.skel)
		pd_bpf_unload(&d->l);
	if (d->cg_fd >= 0)
		close(d->cg_fd);
	d->cg_fd = -1;
	if (d->cg_watch >= 0)
		close(d->cg_watch);
	d->cg_watch = -1;
	left = pd_reaper_finish(d, !unpin);
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	d->lock_fd = -1;
	return left;
}

/* Take the pin directory: create it if need be and hold a lock on it for
 * as long as this instance (and its reaper) runs. A second instance on
 * the same pins is refused while the first one lives. */
static int lock_pin_dir(struct pd_daemon *d)
{
	bool made = !mkdir(d->pin_dir, 0700);

	if (!made && errno != EEXIST)
		return fail(-errno, "cannot create %s: %m", d->pin_dir);
	d->lock_fd = open(d->pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->lock_fd < 0)
		return fail(-errno, "cannot open %s: %m", d->pin_dir);
	if (flock(d->lock_fd, LOCK_EX | LOCK_NB))
		return fail(-errno, "%s holds the pins of another policyd that is still running; "
			    "stop it first (or give this one other pins: --pin-dir)", d->pin_dir);
	d->pinned = made;
	return 0;
}

/* The pins of an instance that stopped with on_exit = "keep": 0 and *c
 * filled when there are some this policyd can run over, 1 when there are
 * none, -errno (said why) when they must not be touched. */
static int read_kept(const struct pd_daemon *d, struct pd_config *c)
{
	char path[4200];
	uint32_t zero = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/pd_config", d->pin_dir);
	if (access(path, F_OK))
		return 1;
	fd = bpf_obj_get(path);
	if (fd < 0 || bpf_map_lookup_elem(fd, &zero, c)) {
		int err = -errno;

		if (fd >= 0)
			close(fd);
		return fail(err, "cannot read the kept state %s: %m; it is left as it is", path);
	}
	close(fd);
	if (c->layout != PD_LAYOUT_VERSION)
		return fail(-EPROTO, "the pins under %s have layout %u, this policyd reads layout "
			    "%u; they are left enforcing as they are. To replace them, remove the "
			    "directory (that ends their enforcement) and start again", d->pin_dir,
			    c->layout, PD_LAYOUT_VERSION);
	if (c->active_gen > 1 || !c->slot_states || !c->row_width ||
	    (c->row_width & (c->row_width - 1)))
		return fail(-EPROTO, "the pins under %s hold an inconsistent pd_config; they are "
			    "left as they are", d->pin_dir);
	return 0;
}

/* The cgroup programs: their link pins' names, and the program each is. */
static const char *const cg_name[PD_CG_PROGS] = {
	[PD_CG_SOCKOPS] = "sockops",
	[PD_CG_EGRESS] = "egress",
	[PD_CG_SOCK_CREATE] = "sock_create",
	[PD_CG_CONNECT4] = "connect4",
	[PD_CG_CONNECT6] = "connect6",
	[PD_CG_SETSOCKOPT] = "setsockopt",
};

static struct bpf_program *cg_prog(const struct pd_daemon *d, int i)
{
	struct policyd_bpf *s = d->l.skel;
	struct bpf_program *p[PD_CG_PROGS] = {
		[PD_CG_SOCKOPS] = s->progs.pd_sockops,
		[PD_CG_EGRESS] = s->progs.pd_egress,
		[PD_CG_SOCK_CREATE] = s->progs.pd_sock_create,
		[PD_CG_CONNECT4] = s->progs.pd_connect4,
		[PD_CG_CONNECT6] = s->progs.pd_connect6,
		[PD_CG_SETSOCKOPT] = s->progs.pd_setsockopt,
	};

	return p[i];
}

/* A link of the kept state, switched to our program. It must be attached
 * to the cgroup this instance is told to police. */
static int take_link(struct pd_daemon *d, int i, const char *path)
{
	struct bpf_link_info info;
	uint32_t len = sizeof(info);
	struct stat st;

	d->links[i] = bpf_link__open(path);
	if (!d->links[i]) {
		d->links[i] = NULL;
		return fail(-errno, "cannot open the kept link %s: %m", path);
	}
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(bpf_link__fd(d->links[i]), &info, &len) ||
	    fstat(d->cg_fd, &st))
		return fail(-errno, "cannot inspect %s: %m", path);
	if (info.type != BPF_LINK_TYPE_CGROUP || info.cgroup.cgroup_id != st.st_ino)
		return fail(-EXDEV, "the kept link %s polices another cgroup (id %llu), not %s; the "
			    "kept state is left as it is. To move policyd, remove the pin directory "
			    "(that ends its enforcement) and start again", path,
			    (unsigned long long)info.cgroup.cgroup_id, d->cgroup);
	if (bpf_link__update_program(d->links[i], cg_prog(d, i)))
		return fail(-errno, "cannot switch the kept link %s to this policyd's program: %m",
			    path);
	return 0;
}

/* Attach cgroup program i to the policed cgroup (or take its kept link
 * over) and pin its link. */
static int attach_link(struct pd_daemon *d, int i)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/link_%s", d->pin_dir, cg_name[i]);
	if (d->kept)
		return take_link(d, i, path);
	d->links[i] = bpf_program__attach_cgroup(cg_prog(d, i), d->cg_fd);
	if (!d->links[i]) {
		d->links[i] = NULL;
		return fail(-errno, "cannot attach the %s program to %s: %m", cg_name[i],
			    d->cgroup);
	}
	if (bpf_link__pin(d->links[i], path))
		return fail(-errno, "cannot pin %s: %m", path);
	return 0;
}

static const char *mode_name(const struct pd_daemon *d)
{
	return monitoring(d) ? "monitor (nothing is dropped, diverted or aborted: "
	       "would-deny and would-redirect are logged)" : "enforce";
}

/* Watch the policed cgroup for its removal. rmdir of a cgroup detaches
 * every program attached to it (once its last socket is gone), and a
 * cgroup made again at the same path is another one, with nothing
 * attached: the daemon must not run on as if it enforced. Two signs,
 * each enough: inotify on the parent directory says at once that the
 * entry of the cgroup's name was removed (IN_DELETE; the cgroup file
 * system sends no IN_DELETE_SELF for the directory itself), which needs
 * no permission after the privilege drop; and once a second the path is
 * compared with the directory setup opened (st_dev, st_ino: a cgroup's
 * inode number is its 64-bit id, never reused), which needs no watch that
 * could fail or overflow, and also sees a cgroup2 file system mounted
 * anew. The cgroup2 root has no parent cgroup and cannot be removed: no
 * watch. */
static int watch_cgroup(struct pd_daemon *d)
{
	char parent[4096], *slash;
	size_t len = strlen(d->cgroup);
	struct stat st;

	if (fstat(d->cg_fd, &st))
		return fail(-errno, "cannot stat %s: %m", d->cgroup);
	d->cg_dev = st.st_dev;
	d->cg_ino = st.st_ino;
	while (len > 1 && d->cgroup[len - 1] == '/')
		len--;
	snprintf(parent, sizeof(parent), "%.*s", (int)len, d->cgroup);
	slash = strrchr(parent, '/');
	if (!slash || !slash[1])
		return 0;
	snprintf(d->cg_name, sizeof(d->cg_name), "%s", slash + 1);
	*slash = '\0';
	if (!on_fs(parent[0] ? parent : "/", CGROUP2_SUPER_MAGIC))
		return 0;
	d->cg_watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (d->cg_watch >= 0 &&
	    inotify_add_watch(d->cg_watch, parent, IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR) < 0) {
		close(d->cg_watch);
		d->cg_watch = -1;
	}
	if (d->cg_watch < 0)
		pd_log(d, LOG_WARNING, "warning: cannot watch %s with inotify (%s): the removal "
		       "of %s is noticed within a second instead of at once", parent,
		       strerror(errno), d->cgroup);
	return 0;
}

/* Whether the inotify events in buf say the cgroup's directory was
 * removed; *lost: events were lost (the path must be looked at). */
static bool names_cgroup(const struct pd_daemon *d, const char *buf, ssize_t n, bool *lost)
{
	const struct inotify_event *ev;

	for (ssize_t i = 0; i + (ssize_t)sizeof(*ev) <= n; i += sizeof(*ev) + ev->len) {
		ev = (const struct inotify_event *)(buf + i);
		*lost |= !!(ev->mask & IN_Q_OVERFLOW);
		if (ev->len && !strncmp(ev->name, d->cg_name, ev->len))
			return true;
	}
	return false;
}

/* Whether the policed cgroup is gone: removed, or made again (another
 * cgroup at the same path). Looked at once a second, or now. now: the
 * monotonic time in ms. */
static bool cgroup_gone(struct pd_daemon *d, bool look, double now)
{
	struct stat st;

	if (!look && now - d->cg_checked < 1000)
		return false;
	d->cg_checked = now;
	if (stat(d->cgroup, &st))
		return errno == ENOENT || errno == ENOTDIR;
	return st.st_dev != d->cg_dev || st.st_ino != d->cg_ino;
}

/* The cgroup to police and the pin directory: from the command line,
 * else the policy, else the cgroup2 mount and the default pins. */
static int choose_places(struct pd_daemon *d)
{
	const struct pd_opts *o = d->o;

	if (o->cgroup)
		snprintf(d->cgroup, sizeof(d->cgroup), "%s", o->cgroup);
	else if (d->pol.daemon.cgroup)
		snprintf(d->cgroup, sizeof(d->cgroup), "%s", d->pol.daemon.cgroup);
	else if (cgroup2_mount(d->cgroup, sizeof(d->cgroup)))
		return fail(-ENOENT, "no cgroup2 file system is mounted (see /proc/mounts); mount "
			    "one or give --cgroup");
	snprintf(d->pin_dir, sizeof(d->pin_dir), "%s",
		 o->pin_dir ? o->pin_dir : d->pol.daemon.pin_dir ? d->pol.daemon.pin_dir :
		 PD_DEFAULT_PIN_DIR);
	if (!on_fs(d->cgroup, CGROUP2_SUPER_MAGIC))
		return fail(-ENOTDIR, "%s is not a cgroup v2 directory", d->cgroup);
	return 0;
}

/* Open the policed cgroup, and watch for its removal. */
static int open_cgroup(struct pd_daemon *d)
{
	d->cg_fd = open(d->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->cg_fd < 0)
		return fail(-errno, "cannot open %s: %m", d->cgroup);
	return watch_cgroup(d);
}

/* What this kernel lacks: a feature policyd needs stops setup; one it
 * can do without, and a kernel below the floor, are warned of at every
 * start. */
static int probe_kernel(const struct pd_daemon *d)
{
	const char *old, *why;
	int err = pd_probe(&why);

	if (err == -EOPNOTSUPP)
		return fail(err, "%s", why);
	if (err)
		return fail(err, "%s: %m%s", why, err == -EPERM ? " (run as root: loading needs "
			    "CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN)" : "");
	if ((old = pd_kernel_old()))
		pd_log(d, LOG_WARNING, "warning: %s", old);
	for (size_t i = 0; pd_probe_missing(i); i++)
		pd_log(d, LOG_WARNING, "warning: %s", pd_probe_missing(i));
	return 0;
}

/* Take the pin directory (on a bpffs, locked), refuse to start beside an
 * instance on a related cgroup, and read what a kept instance left there
 * (d->kept, and its pd_config in *kept). mount: the cgroup2 mount. */
static int take_pins(struct pd_daemon *d, char *mount, size_t cap, struct pd_config *kept)
{
	char why[10000];
	int err;

	if (ensure_bpffs(d->pin_dir))
		return fail(-errno, "%s is not on a BPF file system and none could be mounted: %m",
			    d->pin_dir);
	if ((err = lock_pin_dir(d)))
		return err;
	if (cgroup2_mount(mount, cap))
		return fail(-ENOENT, "no cgroup2 file system is mounted (see /proc/mounts)");
	if ((err = pd_instance_check(d, mount, why, sizeof(why))))
		return fail(err, "%s", why);
	err = read_kept(d, kept);
	if (err < 0)
		return err;
	d->kept = !err;
	return 0;
}

/* Load the programs with maps sized for the policy, or over the kept
 * maps; choose the slot the policy goes into: over kept pins the idle
 * one, which takes over with one write once everything else is in place. */
static int load_programs(struct pd_daemon *d, const struct pd_config *kept)
{
	const char *why = "";
	int err;

	err = pd_bpf_load(&d->img, d->kept ? &(struct pd_kept){ d->pin_dir, kept->slot_states,
					 kept->row_width } : NULL,
			  d->pol.daemon.max_connections, &d->l, &why);
	if (err)
		return fail(err, "%s: %m%s", why, err == -EPERM ? " (run as root: loading needs "
			    "CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)" : "");
	d->gen = d->kept ? kept->active_gen ^ 1 : 0;
	d->generation = d->kept ? kept->generation + 1 : 1;
	if (!d->kept)
		return 0;
	if (!pd_bpf_fits(&d->l, &d->img))
		return fail(-E2BIG, "the policy needs %u states of %u classes, the kept maps under "
			    "%s hold %u of %u; the kept policy keeps enforcing. To load this one, "
			    "remove the pin directory (that ends enforcement) and start again",
			    d->img.nstates, d->img.row_width, d->pin_dir, d->l.slot_states,
			    d->l.row_width);
	d->slot_gen[0] = kept->slot_gen[0];
	d->slot_gen[1] = kept->slot_gen[1];
	return 0;
}

/* Put policy p, compiled into img, into the idle slot gen, as start and
 * SIGHUP do before their flip: fit img to the maps' rows, open its sinks,
 * mark the slot as being rewritten (now: what pd_config holds; NULL when
 * nothing enforces yet), write its tables and names, put its sinks in
 * pd_sinks. *t_write: when the writing began. Returns 0, or -errno with
 * the reason in why; what enforces is left as it was. */
static int apply_policy(struct pd_daemon *d, const struct pd_policy *p, struct pd_image *img,
			uint32_t gen, const struct pd_config *now, double *t_write, char *why,
			size_t cap)
{
	struct pd_sink_rt sinks[PD_MAX_SINKS];
	size_t nsinks = 0;
	int err = 0;

	if (!pd_bpf_fits(&d->l, img)) {
		snprintf(why, cap, "the new policy needs %u states of %u classes, the running maps "
			 "hold %u of %u; restart policyd to load it", img->nstates, img->row_width,
			 d->l.slot_states, d->l.row_width);
		return -E2BIG;
	}
	if (pd_image_widen(img, d->l.row_width)) {
		snprintf(why, cap, "out of memory while encoding the policy for rows of %u classes",
			 d->l.row_width);
		return -ENOMEM;
	}
	if (pd_sinks_open(d, p, sinks, &nsinks, why, cap))
		return -EIO;
	*t_write = pd_now_ms();
	if (now) {
		/* a message still under the idle slot (two policies back)
		 * must not walk the new tables */
		struct pd_config c = *now;

		c.slot_gen[gen] = 0;
		d->slot_gen[gen] = 0;
		err = pd_bpf_write_config(&d->l, &c);
	}
	if (err || (err = pd_bpf_write_image(&d->l, img, gen)) ||
	    (err = pd_bpf_write_names(&d->l, p, gen))) {
		snprintf(why, cap, "cannot write the policy into the maps: %s", strerror(-err));
		pd_sinks_close(d, sinks, nsinks);
		return err;
	}
	if ((err = pd_sinks_install(d, gen, sinks, nsinks, why, cap))) {
		pd_sinks_close(d, sinks, nsinks);
		return err;
	}
	return 0;
}

/* Pin the maps and attach the programs; adopt the connections open
 * before, in between, so that none goes unpoliced. */
static int attach(struct pd_daemon *d, unsigned *adopted)
{
	char why[256];
	int err;

	if (!d->kept && bpf_object__pin_maps(d->l.skel->obj, d->pin_dir))
		return fail(-errno, "cannot pin the maps under %s: %m", d->pin_dir);
	if (bpf_prog_attach(bpf_program__fd(d->l.skel->progs.pd_msg),
			    bpf_map__fd(d->l.skel->maps.pd_sockets), BPF_SK_MSG_VERDICT, 0))
		return fail(-errno, "cannot attach the sk_msg program: %m");
	d->msg_attached = true;
	if ((err = attach_link(d, PD_CG_SOCKOPS)))
		return err;
	/* after the attach: a connection made meanwhile is caught by one or
	 * the other, and one caught by both is adopted once */
	if ((err = pd_adopt(d, adopted, why, sizeof(why))))
		return fail(err, "%s: %m", why);
	/* then the programs that refuse what cannot be judged: a connection
	 * open before policyd started is adopted by now */
	for (int i = PD_CG_SOCKOPS + 1; i < PD_CG_PROGS; i++)
		if ((err = attach_link(d, i)))
			return err;
	return 0;
}

/* The ring buffers of events and of diverted bytes. */
static int open_events(struct pd_daemon *d)
{
	d->rb = ring_buffer__new(bpf_map__fd(d->l.skel->maps.pd_events), pd_on_event, d, NULL);
	if (!d->rb || ring_buffer__add(d->rb, bpf_map__fd(d->l.skel->maps.pd_sink_data),
				       pd_on_sink_data, d))
		return fail(-errno, "cannot read the event ring buffer: %m");
	return 0;
}

/* Everything from the cgroup to the first event, step by step; a step
 * that fails says why (fail) and returns -errno, and pd_cmd_run undoes
 * what was done. */
static int setup(struct pd_daemon *d)
{
	struct pd_config kept = { 0 };
	char mount[4096], why[1024];
	unsigned adopted = 0;
	double t_load, t_write, t_done;
	int err;

	if ((err = choose_places(d)) || (err = check_privileges()) || (err = open_cgroup(d)) ||
	    (err = probe_kernel(d)) || (err = take_pins(d, mount, sizeof(mount), &kept)))
		return err;
	t_load = pd_now_ms();
	if ((err = load_programs(d, &kept)))
		return err;
	if ((err = apply_policy(d, &d->pol, &d->img, d->gen, d->kept ? &kept : NULL, &t_write,
				why, sizeof(why))))
		return fail(err, "%s%s", why, d->kept ? "; the kept policy keeps enforcing" : "");
	d->slot_gen[d->gen] = (uint32_t)d->generation;
	if ((err = pd_bpf_write_instance(&d->l, d->pin_dir, d->cgroup)) ||
	    (!d->kept && (err = write_config(d))))
		return fail(err, "cannot write the policy into the maps: %m");
	t_done = pd_now_ms();
	if ((err = attach(d, &adopted)))
		return err;
	/* the flip: from here on the kept state enforces this policy */
	if (d->kept && (err = write_config(d)))
		return fail(err, "cannot switch the kept state to the policy: %m; the kept policy "
			    "keeps enforcing");
	if ((err = open_events(d)))
		return err;
	if (d->kept)
		pd_log(d, LOG_NOTICE, "took over the enforcement kept under %s (policy "
		       "generation %llu, layout %u) without a gap; this policy is generation %llu",
		       d->pin_dir, (unsigned long long)kept.generation, kept.layout,
		       (unsigned long long)d->generation);
	/* what stays open on this host (policyd(8), WHAT IS POLICED) */
	pd_log(d, LOG_NOTICE, "boundary: every send of the cgroup's TCP sockets on a policed port "
	       "is judged or %s (fail_mode %s); not covered: UDP, Unix sockets%s%s%s",
	       d->pol.daemon.fail_open ? "passed and logged" : "refused",
	       pd_fail_mode_name(d->pol.daemon.fail_open),
	       pd_kernel_has_smc() ? ", SMC over RDMA or shared memory" : "",
	       strcmp(d->cgroup, mount) ? ", TCP sockets made outside " : "",
	       strcmp(d->cgroup, mount) ? d->cgroup : "");
	pd_log(d, LOG_NOTICE, "started: policy %s (%zu services, %zu rules, %u states), "
	       "cgroup %s, pins %s, %u open connections adopted, on_exit %s, mode %s; "
	       "compiled in %.1f ms, loaded in %.1f ms, written in %.1f ms", d->config,
	       d->pol.nservices, d->pol.nrules, d->img.nstates, d->cgroup, d->pin_dir, adopted,
	       pd_on_exit_name(d->pol.daemon.keep), mode_name(d), d->compile_ms,
	       t_write - t_load, t_done - t_write);
	return 0;
}

/* A reload that stops short: said in one line, like a policy that does
 * not parse, and nothing changed for the enforcing policy. */
static void refuse(const struct pd_daemon *d, const char *fmt, ...)
{
	char why[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	pd_log(d, LOG_ERR, "reload refused: %s; policy generation %llu keeps enforcing", why,
	       (unsigned long long)d->generation);
}

/* A reload that changed nothing: counted for `policyd stats` and
 * `policyd reload`. */
static void count_refused(struct pd_daemon *d)
{
	d->reloads++;
	d->reloads_refused++;
	d->last_reload = PD_RELOAD_REFUSED;
	d->last_reload_time = (uint64_t)time(NULL);
	write_config(d);
}

/* SIGHUP: the sink files are opened again (log rotation); the new policy
 * goes into the idle slot with its sinks, then one write flips the
 * generation (and the mode). Any failure changes nothing that enforces. */
static void reload(struct pd_daemon *d)
{
	struct pd_policy p = { 0 };
	struct pd_image img = { 0 };
	struct pd_diag diag = { 0 };
	struct pd_config now;
	struct pd_policy old_pol;
	struct pd_image old_img;
	uint32_t next = d->gen ^ 1;
	double t0 = pd_now_ms(), t1, t2, t3;
	char why[1024];
	int err;

	pd_sinks_reopen(d);
	if (pd_policy_build(d->config, &p, &img, &diag, NULL)) {
		for (size_t i = 0; i < diag.n; i++)
			pd_log(d, LOG_ERR, "%s", diag.lines[i]);
		refuse(d, "%s is invalid", d->config);
		pd_diag_free(&diag);
		count_refused(d);
		goto out;
	}
	pd_diag_free(&diag);
	config_of(d, &now);
	if (apply_policy(d, &p, &img, next, &now, &t1, why, sizeof(why))) {
		refuse(d, "%s", why);
		goto drop_new;
	}
	/* the flip: d describes the new policy for write_config, and the
	 * old one again if the write fails */
	old_pol = d->pol;
	old_img = d->img;
	d->pol = p;
	d->img = img;
	d->gen = next;
	d->generation++;
	d->slot_gen[next] = (uint32_t)d->generation;
	/* published with the flip: `policyd reload` waits for reloads to move */
	d->reloads++;
	d->last_reload = PD_RELOAD_OK;
	d->last_reload_time = (uint64_t)time(NULL);
	t2 = pd_now_ms();
	if ((err = write_config(d))) {
		d->pol = old_pol;
		d->img = old_img;
		d->gen = next ^ 1;
		d->generation--;
		d->slot_gen[next] = 0;
		d->reloads--;           /* counted as refused below */
		refuse(d, "cannot switch to the new policy: %s", strerror(-err));
		goto drop_new;
	}
	t3 = pd_now_ms();
	ring_buffer__consume(d->rb);
	if (p.daemon.keep != old_pol.daemon.keep)
		pd_reaper_on_exit(d, p.daemon.keep);
	pd_policy_free(&old_pol);
	pd_image_free(&old_img);
	d->log_rate = p.daemon.log_rate;
	pd_log(d, LOG_NOTICE, "reloaded: policy %s is generation %llu (%zu services, %zu "
	       "rules, %u states), mode %s; compiled in %.1f ms, written in %.1f ms, switched "
	       "in %.3f ms", d->config, (unsigned long long)d->generation, p.nservices,
	       p.nrules, img.nstates, mode_name(d), t1 - t0, t2 - t1, t3 - t2);
	goto out;
drop_new:
	pd_image_free(&img);
	pd_policy_free(&p);
	count_refused(d);
out:
	/* a large policy's compilation leaves freed heap behind: give it
	 * back, refused or not */
	malloc_trim(0);
}

/* systemd (Type=notify): a reload begins; it ends with notify_status().
 * Without NOTIFY_SOCKET these do nothing. */
static void notify_reloading(const struct pd_daemon *d)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
		   (unsigned long long)ts.tv_sec * 1000000ull +
		   (unsigned long long)ts.tv_nsec / 1000, d->config);
}

/* systemd: ready (after start or a reload), and what enforces now. */
static void notify_status(const struct pd_daemon *d)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s%spolicy generation %llu enforcing, mode %s",
		   d->last_reload == PD_RELOAD_REFUSED ? "reload refused (see the log); " : "",
		   d->last_reload == PD_RELOAD_OK ? "reloaded; " : "",
		   (unsigned long long)d->generation, pd_mode_name(monitoring(d)));
}

/* The policed cgroup was removed: say so once, plainly, and stop. */
static void cgroup_removed(const struct pd_daemon *d)
{
	pd_log(d, LOG_ERR, "cgroup %s was removed (or removed and made again): the programs "
	       "attached to it went with it, nothing is policed any more; exiting with "
	       "status %d so that the service manager starts policyd again on the cgroup "
	       "now at that path%s", d->cgroup, PD_EXIT_CGROUP_GONE,
	       d->pol.daemon.keep ? "; on_exit = keep: the kept pins would no longer enforce "
	       "anything (their cgroup is gone), so they are removed" : "");
}

/* Returns 0 on a stop by signal, PD_EXIT_CGROUP_GONE when the cgroup was
 * removed, -1 on an error. */
static int loop(struct pd_daemon *d)
{
	struct pollfd pf[4] = {
		{ .fd = ring_buffer__epoll_fd(d->rb), .events = POLLIN },
		{ .fd = d->sigfd, .events = POLLIN },
		{ .fd = -1, .events = POLLIN },         /* the aborter's answers */
		{ .fd = d->cg_watch, .events = POLLIN },
	};
	struct signalfd_siginfo si;
	bool behind = false;
	struct stat st;

	/* as the unprivileged user now: a path it may not look up leaves
	 * the inotify watch alone to notice */
	if (stat(d->cgroup, &st))
		pd_log(d, LOG_WARNING, "warning: cannot look up %s after dropping privileges "
		       "(%s): %s", d->cgroup, strerror(errno), d->cg_watch >= 0 ?
		       "its removal is noticed through inotify only" :
		       "its removal cannot be noticed");
	for (;;) {
		bool removed = false, lost = false;
		int n;

		/* while connections to abort wait to be named, look again soon */
		pf[2].fd = d->abort_fd;
		n = poll(pf, 4, behind ? 20 : 1000);

		if (n < 0 && errno != EINTR) {
			pd_log(d, LOG_ERR, "poll: %s", strerror(errno));
			return -1;
		}
		ring_buffer__consume(d->rb);
		if (n > 0 && (pf[3].revents & POLLIN)) {
			char ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
			ssize_t got;

			/* the parent's other entries come and go too */
			while ((got = read(d->cg_watch, ev, sizeof(ev))) > 0)
				removed |= names_cgroup(d, ev, got, &lost);
		}
		if (removed || cgroup_gone(d, lost, pd_now_ms())) {
			cgroup_removed(d);
			return PD_EXIT_CGROUP_GONE;
		}
		behind = pd_abort_pass(d);
		pd_tick(d);
		if (n > 0 && (pf[1].revents & POLLIN) &&
		    read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo == SIGHUP) {
				notify_reloading(d);
				reload(d);
				notify_status(d);
				continue;
			}
			pd_log(d, LOG_NOTICE, "stopping on %s: %s", strsignal(si.ssi_signo),
			       d->pol.daemon.keep ? "on_exit = keep: the pinned programs and "
			       "maps go on enforcing" : "detaching");
			ring_buffer__consume(d->rb);
			return 0;
		}
	}
}

/* The name on every log line: daemon.name, else the pin directory's last
 * component (what tells instances apart on one host). */
static void instance_name(const struct pd_daemon *d, char *out, size_t cap)
{
	const char *pin = d->o->pin_dir ? d->o->pin_dir : d->pol.daemon.pin_dir ?
			  d->pol.daemon.pin_dir : PD_DEFAULT_PIN_DIR;
	const char *base;
	size_t len;

	if (d->pol.daemon.name) {
		snprintf(out, cap, "%s", d->pol.daemon.name);
		return;
	}
	len = strlen(pin);
	while (len > 1 && pin[len - 1] == '/')
		len--;
	base = pin + len;
	while (base > pin && base[-1] != '/')
		base--;
	snprintf(out, cap, "%.*s", (int)(pin + len - base), base);
	/* one token in a key=value line */
	for (char *c = out; *c; c++)
		if (*c <= ' ' || *c == '"' || *c == '=' || *c >= 0x7f)
			*c = '_';
}

int pd_cmd_run(const struct pd_opts *o)
{
	struct pd_daemon d = { .o = o, .config = o->config, .cg_fd = -1, .cg_watch = -1,
			       .sigfd = -1, .lock_fd = -1, .abort_fd = -1 };
	bool unpin;
	char name[PD_NAME_MAX];
	sigset_t set;
	int ret, left;

	pd_log_libbpf(o->verbose);
	pd_bpf_verifier_stats(o->verbose);
	ret = pd_load_and_compile(o->config, &d.pol, &d.img, &d.compile_ms);
	d.started = (uint64_t)time(NULL);
	if (ret)
		return ret;
	d.log_rate = d.pol.daemon.log_rate;
	instance_name(&d, name, sizeof(name));
	pd_log_open(name, o->foreground);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	d.sigfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (d.sigfd < 0 || setup(&d) ||
	    pd_drop_privileges(&d, o->user ? o->user : d.pol.daemon.user ?
			       d.pol.daemon.user : PD_DEFAULT_USER, d.pol.daemon.keep)) {
		/* a kept state stays as it was (or under this policy, if the
		 * flip happened): failing never ends enforcement */
		teardown(&d, !d.kept);
		pd_image_free(&d.img);
		pd_policy_free(&d.pol);
		pd_log_close();
		return PD_EXIT_RUNTIME;
	}
	if ((ret = pd_log_start())) {
		pd_log(&d, LOG_ERR, "cannot start the log writer: %s", strerror(-ret));
		ret = PD_EXIT_RUNTIME;
		goto out;
	}
	notify_status(&d);
	ret = loop(&d);
	ret = ret == PD_EXIT_CGROUP_GONE ? ret : ret ? PD_EXIT_RUNTIME : PD_EXIT_OK;
	sd_notify(0, "STOPPING=1");
out:
	/* the reload may have changed on_exit; pins of a removed cgroup
	 * enforce nothing, and kept they would stop the next start, whose
	 * takeover finds links on another cgroup */
	unpin = !d.pol.daemon.keep || ret == PD_EXIT_CGROUP_GONE;
	left = teardown(&d, unpin);
	if (!unpin)
		pd_log(&d, LOG_NOTICE, "stopped: the pins under %s keep enforcing policy "
		       "generation %llu", d.pin_dir, (unsigned long long)d.generation);
	else if (left)
		pd_log(&d, LOG_NOTICE, "stopped: not everything under %s could be "
		       "removed (above)", d.pin_dir);
	else
		pd_log(&d, LOG_NOTICE, "stopped: nothing attached, pins removed");
	pd_image_free(&d.img);
	pd_policy_free(&d.pol);
	close(d.sigfd);
	pd_log_close();
	return ret;
}
