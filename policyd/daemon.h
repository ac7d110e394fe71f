/* SPDX-License-Identifier: GPL-2.0-only */
/* The running daemon: its state, shared by run.c and the files it calls
 * on (events.c, sink.c, adopt.c, abort.c, privs.c, instance.c). */
#ifndef POLICYD_DAEMON_H
#define POLICYD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>
#include <sys/types.h>
#include <time.h>

#include "cli.h"
#include "escape.h"
#include "load.h"
#include "log.h"
#include "policy.h"

struct bpf_link;
struct ring_buffer;

/* The programs attached to the policed cgroup, each by a link pinned
 * under the pin directory as link_NAME. */
enum pd_cg_prog {
	PD_CG_SOCKOPS,          /* puts policed connections in the socket map */
	PD_CG_EGRESS,           /* drops bytes that leave without a verdict */
	PD_CG_SOCK_CREATE,      /* refuses Multipath TCP sockets */
	PD_CG_CONNECT4,         /* refuses Fast Open (and MPTCP) towards policed ports */
	PD_CG_CONNECT6,
	PD_CG_SETSOCKOPT,       /* refuses TCP_FASTOPEN_CONNECT */
	PD_CG_PROGS,
};

/* A sink file, shared by every sink (of either policy slot) that names
 * it; SIGHUP opens it again by its path. */
struct pd_sink_file {
	char *path;
	int fd;                 /* O_APPEND */
	unsigned refs;
	uint64_t failed;        /* records not written since the last report */
	int err;                /* errno of the last of them */
};

/* A redirect sink at run time: policyd's end of a loopback TCP pair sits
 * in pd_sinks, the data plane's redirect target; policyd drains it. The
 * record of a diverted message is made from its event and its bytes in
 * pd_sink_data. */
struct pd_sink_rt {
	char name[PD_NAME_MAX];
	struct pd_sink_file *file;
	int rx;                 /* policyd's socket in pd_sinks */
	int peer;               /* the other end, kept open */
};

struct pd_divert;

/* Lines of one kind suppressed by log_rate in the current second. */
#define PD_LOG_KINDS 8
struct pd_log_kind {
	char name[16];          /* the line's first word: deny, audit ... */
	uint64_t suppressed;
};

struct pd_daemon {
	const struct pd_opts *o;
	const char *config;
	struct pd_policy pol;
	struct pd_image img;
	struct pd_loaded l;
	char cgroup[4096];
	char pin_dir[4096];
	int cg_fd;
	/* the policed cgroup's identity, and an inotify watch on it: removing
	 * the directory takes the programs attached to it along (run.c:
	 * cgroup_gone) */
	dev_t cg_dev;
	ino_t cg_ino;
	int cg_watch;           /* on its parent directory; -1: none */
	char cg_name[256];      /* its name there */
	double cg_checked;      /* when its path was last compared (ms) */
	/* the programs attached to the policed cgroup (run.c: attach_link) */
	struct bpf_link *links[PD_CG_PROGS];
	bool msg_attached;
	bool pinned;            /* the pin directory is ours to clean up */
	bool kept;              /* set up over the pins of a kept instance */
	int lock_fd;            /* the pin directory, flock()ed while we run */
	struct ring_buffer *rb;
	int sigfd;
	uint32_t gen;           /* active policy slot */
	uint32_t slot_gen[2];   /* the generation each slot holds (pd_config) */
	uint64_t generation;    /* loads so far */
	/* published in pd_config for `policyd stats` */
	uint64_t started;       /* Unix s */
	uint64_t reloads, reloads_refused, last_reload_time;
	uint32_t last_reload;   /* enum pd_reload */
	double compile_ms;      /* reading and compiling the policy at start */
	/* the sinks of each policy slot (pd_sinks key pd_sink_key(slot,
	 * sink)), and the files they write */
	struct pd_sink_rt sinks[2][PD_MAX_SINKS];
	size_t nsinks[2];
	struct pd_sink_file *files[2 * PD_MAX_SINKS];
	size_t nfiles;
	/* diversions waiting for their event or their bytes */
	struct pd_divert *diverts;
	size_t ndiverts, capdiverts;
	size_t divert_bytes;    /* their bytes */
	uint64_t divert_lost;   /* records since the last report that miss bytes */
	/* log rate limiting: lines traffic caused in the current second */
	uint32_t log_rate;
	long window;            /* the current second (monotonic) */
	uint32_t in_window;
	struct pd_log_kind kinds[PD_LOG_KINDS];
	uint64_t trouble_seen[PD_TR_MAX];
	/* after the privilege drop: the process that removes the pins */
	pid_t reaper;
	int reaper_cmd;
	int reaper_done;
	/* the process that aborts doomed connections (abort.c) */
	pid_t aborter;
	int abort_fd;           /* the socket pair's daemon end; -1: no aborts */
	uint64_t abort_netns;   /* the network namespace it acts in (cookie; 0 unknown) */
	uint64_t abort_since;   /* when it started (ns): earlier requests were an
	                         * earlier daemon's */
	double abort_walk;      /* when pd_doomed was last walked (ms) */
	uint64_t abort_seen;    /* PD_TR_ABORTS then */
	bool abort_behind;      /* some entries were not named yet */
};

/* events.c: the ring buffer's records as log lines. */
int pd_on_event(void *ctx, void *data, size_t size);
/* Each pass of the event loop: drain the sinks' sockets, write the
 * records whose bytes are in (or overdue); once a second, report what
 * was suppressed, lost or left unpoliced. */
void pd_tick(struct pd_daemon *d);
/* A data-plane trouble counter (enum pd_trouble), summed over CPUs. */
uint64_t pd_trouble_total(const struct pd_daemon *d, uint32_t what);
/* Whether one more line of this kind (its first word) fits this second's
 * log_rate; if not it is counted for the once-a-second report. Every
 * line that traffic causes goes through here. */
bool pd_log_may(struct pd_daemon *d, const char *kind);
/* The common part of a log line and a sink record: service, process,
 * ends and length of the message an event is about. */
void pd_event_describe(const struct pd_daemon *d, const struct pd_event *e, char *out,
		       size_t cap);

/* sink.c: redirect sinks, their files and their records. */
/* pd_sink_data's records: the diverted bytes, piece by piece. */
int pd_on_sink_data(void *ctx, void *data, size_t size);
/* A redirect event: its diversion has its description now. */
void pd_sink_event(struct pd_daemon *d, const struct pd_event *e);
/* Each pass of the event loop (now: pd_now_ms()): drain the sinks'
 * sockets, write the records that waited too long for their bytes. */
void pd_sinks_tick(struct pd_daemon *d, double now);
/* Once a second: what went wrong with the sinks in the second that ended. */
void pd_sinks_report(struct pd_daemon *d);
/* Open the sinks of p into out (*n of them): their files (shared with
 * the open ones of the same path; a new file made as root is given to
 * the account policyd runs as, so that it can open it again) and their
 * sockets. Returns 0, or -1 with the reason in why. */
int pd_sinks_open(struct pd_daemon *d, const struct pd_policy *p, struct pd_sink_rt *out,
		  size_t *n, char *why, size_t cap);
/* Put the sinks opened for policy slot gen into pd_sinks, then make them
 * the slot's (closing the slot's earlier ones). Returns 0, or -errno with
 * the reason in why (and nothing changed but the slot's idle entries). */
int pd_sinks_install(struct pd_daemon *d, uint32_t gen, struct pd_sink_rt *s, size_t n,
		     char *why, size_t cap);
void pd_sinks_close(struct pd_daemon *d, struct pd_sink_rt *s, size_t n);
/* SIGHUP: open every sink file again by its path (after logrotate moved
 * or removed it); one that cannot be opened keeps its old descriptor. */
void pd_sinks_reopen(struct pd_daemon *d);
/* Stop: write the records still waiting, close every sink. */
void pd_sinks_finish(struct pd_daemon *d);

/* privs.c: drop to user, leaving a reaper that removes the pins when
 * the daemon ends (unless keep: on_exit = "keep"). */
int pd_drop_privileges(struct pd_daemon *d, const char *user, bool keep);
int pd_reaper_finish(struct pd_daemon *d, bool keep);
void pd_reaper_on_exit(struct pd_daemon *d, bool keep);

/* abort.c: aborting doomed connections. pd_aborter is the aborter's body
 * (privs.c starts it: fd its socket, err why its privileges could not be
 * set up, or 0); pd_abort_ready waits for its first answer (-1: it did
 * not start; 0 with abort_fd -1: this kernel cannot abort, said in a
 * warning). Each pass of the event loop (pd_abort_pass) reads its answers
 * and names it what pd_doomed holds; returns whether to look again soon.
 * pd_abort_stop names it what is left, which it aborts at once, and ends
 * it. */
void pd_aborter(int fd, int err) __attribute__((noreturn));
int pd_abort_ready(struct pd_daemon *d);
bool pd_abort_pass(struct pd_daemon *d);
void pd_abort_stop(struct pd_daemon *d);

/* instance.c: whether an instance polices a related cgroup (mount: the
 * cgroup2 mount point). 0, or -EBUSY with why naming it (as its
 * pd_instance does) and where it is. */
int pd_instance_check(const struct pd_daemon *d, const char *mount, char *why, size_t cap);

/* adopt.c: put connections open before policyd started under policy.
 * 0 with their number in *adopted, or -errno with why saying what failed
 * (to be followed by the errno's text). */
int pd_adopt(struct pd_daemon *d, unsigned *adopted, char *why, size_t cap);

#endif
