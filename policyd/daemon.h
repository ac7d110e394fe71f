/* SPDX-License-Identifier: GPL-2.0-only */
/* The running daemon: its state, shared by run.c, events.c and adopt.c. */
#ifndef POLICYD_DAEMON_H
#define POLICYD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>
#include <sys/types.h>
#include <time.h>

#include "cli.h"
#include "load.h"
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

/* A redirect sink at run time: policyd's end of a loopback TCP pair sits
 * in pd_sinks; what the data plane diverts arrives on it. */
struct pd_sink_rt {
	char name[PD_NAME_MAX];
	char *path;
	int file;               /* the sink file, O_APPEND */
	int rx;                 /* policyd's socket in pd_sinks: diverted bytes */
	int peer;               /* the other end, kept open */
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
	/* the programs attached to the policed cgroup (run.c: cg_progs) */
	struct bpf_link *links[PD_CG_PROGS];
	struct bpf_link *abort_iter;    /* pd_abort: ends connections after a drop;
					 * NULL where the kernel's TCP iterator is unsafe */
	double abort_last;              /* when pd_abort last ran (ms) */
	bool msg_attached;
	bool pinned;            /* the pin directory is ours to clean up */
	bool kept;              /* set up over the pins of a kept instance */
	int lock_fd;            /* the pin directory, flock()ed while we run */
	struct ring_buffer *rb;
	int sigfd;
	uint32_t gen;           /* active policy slot */
	uint32_t slot_gen[2];   /* the generation each slot holds (pd_config) */
	uint64_t generation;    /* loads so far */
	double compile_ms;      /* reading and compiling the policy at start */
	struct pd_sink_rt sinks[PD_MAX_SINKS];
	size_t nsinks;
	/* log rate limiting: events logged in the current second */
	uint32_t log_rate;
	time_t window;
	uint32_t in_window;
	uint64_t suppressed;
	uint64_t trouble_seen[PD_TR_MAX];
	/* after the privilege drop: the process that removes the pins */
	pid_t reaper;
	int reaper_cmd;
	int reaper_done;
};

/* A line to syslog (and to stderr with --foreground). */
void pd_log(const struct pd_daemon *d, int prio, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* events.c: the ring buffer's records as log lines and sink records. */
int pd_on_event(void *ctx, void *data, size_t size);
void pd_tick(struct pd_daemon *d);
/* A data-plane trouble counter (enum pd_trouble), summed over CPUs. */
uint64_t pd_trouble_total(const struct pd_daemon *d, uint32_t what);
/* Open the sinks of p into out; a sink whose name and file match one in
 * d->sinks shares its file and sockets (a reload after the privilege
 * drop could not open them again). */
int pd_sinks_open(struct pd_daemon *d, const struct pd_policy *p, struct pd_sink_rt *out,
		  size_t *n);
void pd_sinks_close(struct pd_sink_rt *s, size_t n);
/* Escape bytes for a log line: printable ASCII as is, '"' and '\\'
 * escaped, the rest as \r \n \t or \xHH. Returns the length written. */
size_t pd_escape(char *out, size_t cap, const uint8_t *p, size_t n);

/* privs.c: drop to user, leaving a reaper that removes the pins when
 * the daemon ends (unless keep: on_exit = "keep"). */
int pd_drop_privileges(struct pd_daemon *d, const char *user, bool keep);
void pd_reaper_finish(struct pd_daemon *d, bool keep);
void pd_reaper_on_exit(struct pd_daemon *d, bool keep);

/* instance.c: refuse to start beside an instance on a related cgroup
 * (mount: the cgroup2 mount point); publish this instance's pins and
 * cgroup for others to read. */
int pd_instance_check(const struct pd_daemon *d, const char *mount);
int pd_instance_write(const struct pd_daemon *d);

/* adopt.c: put connections open before policyd started under policy. */
int pd_adopt(struct pd_daemon *d, unsigned *adopted);

#endif
