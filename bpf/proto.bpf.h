/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The sk_msg program's walk under a protocol framing (resp, memcache,
 * http): the parsers of proto.h over the bytes of an sk_msg, window by
 * window, or over bytes kept in pd_bytes. Included by policyd.bpf.c
 * (it uses its maps, count() and counter_slot()).
 *
 * A run decides its first message (which may have begun in an earlier
 * run), and goes on through whole messages after it as long as each
 * passes without an event, counting each: a pipeline of allowed
 * commands leaves in one push. At a message that needs more (an event, a
 * deny, a hold) it stops at that message's start, and the kernel runs
 * the program again on the rest of the sk_msg, with that message first.
 * The outcome is in st->run (outcome, used); st->cur is where the stream
 * stands after used bytes.
 */
#ifndef PD_PROTO_BPF_H
#define PD_PROTO_BPF_H

#include "proto.h"

struct pwalk {
	struct pd_sock *st;
	const struct pd_service *svc;
	const struct pd_classmap *cm;
	struct sk_msg_md *msg;
	const struct pd_bytes *kept;    /* the bytes walked, when not the sk_msg's */
	__u8 *data;                     /* the pulled window */
	__u8 *data_end;
	__u32 n;                        /* bytes of the window */
	__u32 off;                      /* the window's offset in the sk_msg */
	__u32 replay;                   /* walk a decided range: no verdict, no stop */
};

/* The next message begins. */
static __always_inline void proto_next(struct pd_sock *st, const struct pd_service *svc)
{
	pd_begin(&st->cur.m, svc, NULL);
	__builtin_memset(&st->cur.parse, 0, sizeof(st->cur.parse));
	st->cur.msglen = 0;
	st->cur.in_msg = 0;
}

/* Stop the walk with outcome what for the run's first message; any other
 * message is walked again first in the next run: the walk ends at its
 * start. */
static __always_inline void proto_stop(struct pwalk *w, __u32 what)
{
	struct pd_sock *st = w->st;

	st->run.ended = 1;
	if (w->replay) {
		st->run.err = 1;        /* a decided range walks through */
		return;
	}
	if (st->run.first) {
		st->run.outcome = (__u8)what;
		st->run.used = w->off + st->run.wused;
		return;
	}
	proto_next(st, w->svc);
	st->run.outcome = PD_PO_PASS;
	st->run.used = st->run.mstart;
}

/* A message ended with the byte before window offset wused. */
static __always_inline void proto_end(struct pwalk *w)
{
	struct pd_sock *st = w->st;
	const struct pd_service *svc = w->svc;
	__u32 rule = 0, verdict;

	if (!w->replay) {
		pd_length(&st->cur.m, svc, st->cur.msglen);
		verdict = pd_verdict(&st->cur.m, svc, &rule);
		if (verdict != PD_V_PASS || st->cur.m.audit) {
			st->cur.in_msg = 0;
			proto_stop(w, PD_PO_ENDED);
			return;
		}
		count(counter_slot(st, rule), st->cur.msglen, 0);
	}
	proto_next(st, svc);
	st->run.first = 0;
	st->run.mstart = w->off + st->run.wused;
}

/* One byte through the parser and the automaton: PD_P_*, or -2 on
 * inconsistent tables. */
static __always_inline int proto_feed(struct pd_sock *st, const struct pd_service *svc,
				      const struct pd_classmap *cm, __u8 b)
{
	struct pd_syms o;
	int r;

	r = pd_proto_byte(&st->cur.parse, svc->framing, b, &o);
	st->cur.msglen++;
	if (r == PD_P_BAD)
		return r;
	if (pd_proto_feeds(&st->cur.m, svc) && pd_proto_match(&st->cur.m, svc, cm, &o, NULL))
		return -2;
	return r;
}

/* What one byte's walk means for the run: 0 go on, 1 stop. */
static __always_inline int proto_after(struct pwalk *w, int r)
{
	struct pd_sock *st = w->st;

	if (r == -2) {
		st->run.err = 1;
		return 1;
	}
	if (r == PD_P_BAD) {
		proto_stop(w, st->cur.m.deny ? PD_PO_DENY : PD_PO_BAD);
		return 1;
	}
	/* a message denied: another is walked again first in the next run;
	 * the first is walked on to its end where this sk_msg has it, so
	 * that its event tells its length */
	if (st->cur.m.deny && (!st->run.first || w->replay)) {
		proto_stop(w, PD_PO_DENY);
		return 1;
	}
	if (r == PD_P_DONE) {
		proto_end(w);
		return st->run.ended ? 1 : 0;
	}
	return 0;
}

/* Pass over the counted bytes the automaton does not need, up to the
 * window's end (left bytes): how many. */
static __always_inline __u32 proto_pass(struct pd_sock *st, const struct pd_service *svc,
					__u32 left)
{
	__u32 k = pd_proto_counted(&st->cur.parse, svc->framing);

	if (!k || pd_proto_feeds(&st->cur.m, svc))
		return 0;
	if (k > left)
		k = left;
	pd_proto_pass(&st->cur.parse, svc->framing, k);
	st->cur.msglen += k;
	return k;
}

/* One callback: counted bytes passed over at once, else one byte. */
static long proto_step(__u32 c, void *arg)
{
	struct pwalk *w = arg;
	struct pd_sock *st = w->st;
	__u32 i = st->run.wused, k;
	__u8 *p;

	if (i >= w->n || st->run.ended)
		return 1;
	k = proto_pass(st, w->svc, w->n - i);
	if (k) {
		st->run.wused = i + k;
		return 0;
	}
	p = w->data + (i & (PD_WINDOW - 1));
	if ((void *)(p + 1) > (void *)w->data_end) {
		st->run.err = 1;
		return 1;
	}
	st->run.wused = i + 1;
	return proto_after(w, proto_feed(st, w->svc, w->cm, *p));
}

/* One window: make it readable, then walk it. */
static long proto_window(__u32 idx, void *arg)
{
	struct pwalk *w = arg;
	struct pd_sock *st = w->st;
	__u32 n;

	if (st->run.ended || st->run.err || w->off >= st->run.limit)
		return 1;
	n = st->run.limit - w->off;
	if (n > PD_WINDOW)
		n = PD_WINDOW;
	if (bpf_msg_pull_data(w->msg, w->off, w->off + n, 0)) {
		st->run.err = 1;
		return 1;
	}
	w->data = (__u8 *)(long)w->msg->data;
	w->data_end = (__u8 *)(long)w->msg->data_end;
	w->n = n;
	st->run.wused = 0;
	bpf_loop(n, proto_step, w, 0);
	if (st->run.ended || st->run.err)
		return 1;
	if (st->run.wused < n) {
		st->run.err = 1;        /* the window was shorter than pulled */
		return 1;
	}
	w->off += n;
	return 0;
}

/* The sk_msg ended with a message in progress. */
static __always_inline void proto_tail(struct pwalk *w)
{
	struct pd_sock *st = w->st;
	const struct pd_service *svc = w->svc;
	struct pd_match *m = &st->cur.m;
	int h;

	st->run.used = st->run.limit;
	st->run.outcome = PD_PO_PASS;
	if (!st->cur.msglen) {
		st->cur.in_msg = 0;
		return;
	}
	st->cur.in_msg = 1;
	if (w->replay)
		return;
	pd_length(m, svc, st->cur.msglen);
	if (m->deny) {
		proto_stop(w, PD_PO_DENY);
		return;
	}
	h = pd_proto_must_hold(m, svc, NULL);
	if (h < 0) {
		st->run.err = 1;
	} else if (h) {
		st->run.hold_why = (__u8)h;
		proto_stop(w, PD_PO_HOLD);
	} else if (m->redirect) {
		proto_stop(w, PD_PO_REDIRECT);
	} else if (!pd_proto_feeds(m, svc) && !m->allow && svc->def == PD_DEF_DENY) {
		/* an allow list's message that no allow rule can match any more */
		proto_stop(w, PD_PO_DENY);
	}
}

/* Walk bytes [0, run.limit) of the sk_msg from st->cur; replay: a range
 * decided before, walked again only to know where the stream stands.
 * Global: the verifier checks it once. */
__noinline int proto_run(struct sk_msg_md *msg, struct pd_sock *st, __u32 replay)
{
	struct pwalk w = {};
	__u32 key, gen;

	if (!msg || !st)
		return -1;
	gen = st->cur.gen & 1;
	key = gen * PD_MAX_SERVICES + (st->service & (PD_MAX_SERVICES - 1));
	w.svc = bpf_map_lookup_elem(&pd_services, &key);
	w.cm = bpf_map_lookup_elem(&pd_classes, &key);
	if (!w.svc || !w.cm) {
		st->run.err = 1;
		return -1;
	}
	w.st = st;
	w.msg = msg;
	w.replay = replay;
	st->run.ended = 0;
	st->run.first = 1;
	st->run.mstart = 0;
	st->run.outcome = PD_PO_PASS;
	bpf_loop(PD_MAX_WINDOWS, proto_window, &w, 0);
	if (st->run.err)
		return -1;
	if (!st->run.ended) {
		if (w.off < st->run.limit) {
			st->run.err = 1;        /* longer than PD_MAX_WINDOWS windows */
			return -1;
		}
		proto_tail(&w);
	}
	return st->run.err ? -1 : 0;
}

/* Following kept bytes (resync): one byte per callback. */
static long proto_follow_step(__u32 i, void *arg)
{
	struct pwalk *w = arg;
	struct pd_sock *st = w->st;
	__u32 k;

	if (i >= w->n || st->run.ended)
		return 1;
	if (i < st->run.wused)
		return 0;               /* passed over by count */
	k = proto_pass(st, w->svc, w->n - i);
	if (k) {
		st->run.wused = i + k;
		return 0;
	}
	st->run.wused = i + 1;
	return proto_after(w, proto_feed(st, w->svc, w->cm, w->kept->bytes[i & (PD_BYTES_MAX - 1)]));
}

/* The first n of the bytes kept in b, walked from st->cur as a decided
 * range (resync). 0, or -1. Global: checked once. */
__noinline int proto_follow(struct pd_sock *st, const struct pd_bytes *b, __u32 n)
{
	struct pwalk w = {};
	__u32 key;

	if (!st || !b || n > PD_BYTES_MAX)
		return -1;
	key = (st->cur.gen & 1) * PD_MAX_SERVICES + (st->service & (PD_MAX_SERVICES - 1));
	w.svc = bpf_map_lookup_elem(&pd_services, &key);
	w.cm = bpf_map_lookup_elem(&pd_classes, &key);
	if (!w.svc || !w.cm)
		return -1;
	w.st = st;
	w.kept = b;
	w.n = n;
	w.replay = 1;
	st->run.ended = 0;
	st->run.err = 0;
	st->run.wused = 0;
	st->run.limit = n;
	bpf_loop(PD_BYTES_MAX, proto_follow_step, &w, 0);
	if (st->run.err)
		return -1;
	proto_tail(&w);
	return 0;
}

#endif /* PD_PROTO_BPF_H */
