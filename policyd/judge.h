/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The data plane's judgement of one connection, run on the host: the
 * sk_msg program's framing, holds and verdicts (pd_msg) over the kernel's
 * own scan (bpf/pd_scan.h) and automaton walk (bpf/pd_match.h), on a
 * compiled image laid out as the loader lays it out in a policy slot.
 * `policyd test` and the unit tests use it; no root, no kernel.
 */
#ifndef POLICYD_JUDGE_H
#define POLICYD_JUDGE_H

#include "policy.h"

enum pd_judged_kind {
	PD_J_DECIDED,           /* a message decided */
	PD_J_EVENT,             /* an event within a message (the redirect of a
	                         * line's first part) */
	PD_J_HELD,              /* end of the stream: a message held back (the kernel
	                         * refuses it after hold_timeout) */
	PD_J_UNFINISHED,        /* end of the stream: a message begun, its bytes so
	                         * far passed, not decided */
};

/* What one program run decided, or an event it sent: the fields of
 * struct pd_event that a log line shows, and where the bytes lie in the
 * connection's stream. */
struct pd_judged {
	uint8_t kind;           /* enum pd_judged_kind */
	uint8_t verdict;        /* enum pd_verdict */
	uint8_t logged;         /* the kernel sends an event: a log line */
	uint8_t monitor;        /* would-deny / would-redirect */
	uint8_t malformed;      /* a protocol framing's parser refused the message
	                         * (logged as rule=malformed) */
	uint32_t rule;          /* rule index that decided (0: the default); for a
	                         * held message what keeps it held (PD_HELD_LINE) */
	uint32_t audit;         /* audit rule index that matched, 0 none */
	uint32_t state;         /* the automaton's state when decided */
	uint64_t offset;        /* stream offset of the message's first byte */
	uint32_t len;           /* message length as the event reports it */
	uint64_t ex_off;        /* the excerpt the event quotes: stream bytes */
	uint32_t ex_len;
};

typedef void (*pd_judged_fn)(const struct pd_judged *j, const uint8_t *stream, void *arg);

struct pd_judge;

/* A judge of one connection of service (an index into img's services),
 * in monitor mode or not, over img laid out in a slot of slot_states rows
 * of width entries (0, 0: as the loader makes it for img alone; img is
 * widened to the rows, as the daemon widens it). img must outlive the
 * judge. Returns NULL when out of memory or when the slot cannot hold
 * img. */
struct pd_judge *pd_judge_new(struct pd_image *img, uint32_t service, bool monitor,
			      uint32_t slot_states, uint32_t width);
/* Pulls leave data_end slack bytes past the range asked for, where the
 * send has them (the kernel leaves none): the walk must not look there. */
void pd_judge_set_slack(struct pd_judge *j, uint32_t slack);
/* Pulls stop at multiples of piece bytes from a run's start, as the
 * data plane's stop where a scatterlist element ends (0: never). */
void pd_judge_set_piece(struct pd_judge *j, uint32_t piece);
void pd_judge_free(struct pd_judge *j);
/* One send() of len bytes at p, in scatterlist elements of the given
 * lengths (they add up to len; NULL: one element). Calls fn for each
 * decided message and each event, in order. Returns 0, 1 when the
 * connection is dead (a deny: the kernel refuses this send and every later
 * one; nothing of it is judged), or -1 (tables out of step, out of memory:
 * the kernel would refuse the send and abort). */
int pd_judge_send(struct pd_judge *j, const uint8_t *p, uint32_t len, const uint32_t *elems,
		  size_t nelems, pd_judged_fn fn, void *arg);
/* The end of the stream: a message held back is reported (held set). */
void pd_judge_end(struct pd_judge *j, pd_judged_fn fn, void *arg);

#endif
