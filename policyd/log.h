/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Log lines of the running daemon. A line is queued in memory and written
 * by a thread of its own (to the journal, syslog's /dev/log or stderr), so
 * that a log reader that stops reading never holds up the event loop: the
 * queue is bounded, and what does not fit is counted and reported.
 * libbpf's own messages are routed here too (pd_log_libbpf).
 */
#ifndef POLICYD_LOG_H
#define POLICYD_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

struct pd_daemon;

/* A structured field of an event line, for the journal: POLICYD_<key>. */
struct pd_log_field {
	const char *key;        /* upper case, e.g. "RULE" */
	const char *value;
};

/* Where the lines go: chosen at start, said on stderr when it is not
 * where the operator would look. */
enum pd_log_target {
	PD_LOG_STDERR,          /* no syslog and no journal: stderr */
	PD_LOG_SYSLOG,          /* /dev/log, facility daemon, ident policyd */
	PD_LOG_JOURNAL,         /* the systemd journal, with structured fields */
};

/* Choose the target (the journal if its socket is there, else /dev/log,
 * else stderr with a warning), and the instance name that every line
 * carries. foreground: copy every line to stderr too. Lines logged
 * before pd_log_start() wait in the queue. */
void pd_log_open(const char *instance, bool foreground);
enum pd_log_target pd_log_target(void);
/* Start the writer thread (after the privilege drop, so that it has the
 * dropped credentials and no_new_privs). */
int pd_log_start(void);
/* Write what is queued (waiting at most a moment for a stuck reader),
 * then stop the writer. */
void pd_log_close(void);

/* Queue one line; fields (may be NULL) go to the journal as
 * POLICYD_<key>=<value>. Returns false when the queue was full (the line
 * is counted as dropped). */
bool pd_log_fields(int prio, const struct pd_log_field *f, size_t nf, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A line to the log (and to stderr with --foreground). d is unused and
 * may be NULL: kept so that every part of the daemon logs one way. */
void pd_log(const struct pd_daemon *d, int prio, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Once a second: one line for the lines the queue had no room for. */
void pd_log_report_drops(void);
/* libbpf's own messages: none, since every failure is said in one line
 * of policyd's; verbose (-v): on stderr, with of its debug messages only
 * the verifier's log (its statistics). */
void pd_log_libbpf(bool verbose);

#endif
