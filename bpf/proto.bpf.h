/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The sk_msg program's walk under a protocol framing (resp, memcache,
 * http): the parsers of proto.h over the bytes of an sk_msg, window by
 * window, or over bytes kept in pd_bytes. Included by policyd.bpf.c
 * (it uses its maps, ev_count() and ev_counter_slot()).
 *
 * A run decides its first message (which may have begun in an earlier
 * run), and goes on through whole messages after it as long as each
 * passes without an event, counting each: a pipeline of allowed
 * commands leaves in one push. At a message that needs more (an event, a
 * deny, a hold) it stops at that message's start, and the kernel runs
 * the program again on the rest of the sk_msg, with that message first.
 * The outcome is in st->run (outcome, used); st->cur is where the stream
 * stands after used bytes. Where the walk is (window offset, bytes of it
 * consumed, replay or not) lives in st->run too, so that the global
 * functions below need nothing but the socket's storage.
 */
#ifndef PD_PROTO_BPF_H
#define PD_PROTO_BPF_H

#include "proto.h"

/* What the callbacks get: pointers only (the window's bytes are read
 * from msg, its length is st->wlen, the symbols of a byte st->syms). On
 * 6.1 the frames of the callbacks and of the global functions they call
 * add up with the program's own in the verifier's 512-byte check, so
 * every frame of the walk is kept small. */
struct pwalk {
	struct pd_sock *st;
	const struct pd_service *svc;
	struct sk_msg_md *msg;
	const struct pd_bytes *kept;    /* the bytes walked, when not the sk_msg's */
	__u32 piece_end;        /* where the sk_msg's element that held the last
	                         * window's start ends (0: not known) */
};

/* The service of the socket's message in progress. */
static __always_inline const struct pd_service *proto_service(const struct pd_sock *st,
							      const struct pd_classmap **cm)
{
	__u32 key = (st->cur.gen & 1) * PD_MAX_SERVICES + (st->service & (PD_MAX_SERVICES - 1));

	*cm = bpf_map_lookup_elem(&pd_classes, &key);
	return bpf_map_lookup_elem(&pd_services, &key);
}

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
static __always_inline void proto_stop(struct pd_sock *st, const struct pd_service *svc,
				       __u32 what)
{
	st->run.ended = 1;
	if (st->run.replay) {
		st->run.err = 1;        /* a decided range walks through */
		return;
	}
	if (st->run.first) {
		st->run.outcome = (__u8)what;
		st->run.used = st->run.woff + st->run.wused;
		return;
	}
	proto_next(st, svc);
	st->run.outcome = PD_PO_PASS;
	st->run.used = st->run.mstart;
}

/* A message ended with the byte before window offset wused. */
static __always_inline void proto_end(struct pd_sock *st, const struct pd_service *svc)
{
	__u32 rule = 0, verdict;

	if (!st->run.replay) {
		pd_length(&st->cur.m, svc, st->cur.msglen);
		verdict = pd_verdict(&st->cur.m, svc, &rule);
		if (verdict != PD_V_PASS || st->cur.m.audit) {
			st->cur.in_msg = 0;
			proto_stop(st, svc, PD_PO_ENDED);
			return;
		}
		ev_count(ev_counter_slot(st, rule), st->cur.msglen, 0);
	}
	proto_next(st, svc);
	st->run.first = 0;
	st->run.mstart = st->run.woff + st->run.wused;
}

/* One byte through the parser (its symbols in o) under mode
 * (pd_proto_mode): a global function, so that the verifier checks the
 * parsers once, not once per byte of the loops that call it. */
__noinline int proto_parse(struct pd_parse *ps, __u32 mode, __u32 b, struct pd_syms *o)
{
	if (!ps || !o)
		return PD_P_BAD;
	return pd_proto_byte(ps, mode, (__u8)b, o);
}

/* Bytes the automaton needs that the parser takes without a state of
 * its own, walked on from window offset wused of the sk_msg msg, up to
 * PD_TAKE bytes: counted contents (a command's name) and runs of bytes
 * that give one symbol each (pd_proto_quick: an inline token, a path, a
 * header's name or value), their symbols through the automaton at once.
 * 0, or -1 on inconsistent tables. */
#define PD_TAKE 32
static __always_inline int proto_take(struct sk_msg_md *msg, struct pd_sock *st,
				      const struct pd_service *svc, const struct pd_classmap *cm,
				      __u32 n)
{
	const __u8 *p = (const __u8 *)(long)msg->data, *end = (const __u8 *)(long)msg->data_end;
	struct pd_syms *o = &st->syms;
	__u32 i = st->run.wused, k;
	__u8 sym;

	p += i & (PD_WINDOW - 1);
	for (k = 0; k < PD_TAKE; k++) {
		if (i + k >= n || p + k + 1 > end || st->cur.m.deny ||
		    !pd_proto_feeds(&st->cur.m, svc, &st->cur.parse))
			break;
		if (pd_proto_counted(&st->cur.parse, svc->framing)) {
			pd_proto_take(&st->cur.parse, svc->framing, p[k], o);
		} else if (pd_proto_quick(&st->cur.parse, svc->framing, p[k], &sym)) {
			o->s[0] = sym;
			o->n = 1;
		} else {
			break;
		}
		if (pd_proto_match(&st->cur.m, svc, cm, o, NULL))
			return -1;
	}
	st->run.wused = i + k;
	st->cur.msglen += k;
	return 0;
}

/* What a byte that gave symbols (st->syms), or ended something (r),
 * means: the symbols through the automaton (and, with the sk_msg msg of n window
 * bytes, the counted contents that follow, at once), then the message's
 * end, a deny, a malformed byte. 0 go on, 1 stop. Global: checked once. */
static __always_inline int after(struct sk_msg_md *msg, struct pd_sock *st, int r, __u32 n)
{
	const struct pd_syms *o = &st->syms;
	const struct pd_classmap *cm;
	const struct pd_service *svc;

	svc = proto_service(st, &cm);
	if (!svc || !cm) {
		st->run.err = 1;
		return 1;
	}
	if (r == PD_P_BAD) {
		proto_stop(st, svc, st->cur.m.deny ? PD_PO_DENY : PD_PO_BAD);
		return 1;
	}
	/* bytes are taken on only within the message: after the byte that
	 * ended it, the next ones are the next message's */
	if (pd_proto_feeds(&st->cur.m, svc, &st->cur.parse) && (pd_proto_match(&st->cur.m, svc, cm, o, NULL) ||
						  (msg && r == PD_P_MORE && proto_take(msg, st, svc, cm, n)))) {
		st->run.err = 1;
		return 1;
	}
	/* a message denied: another is walked again first in the next run;
	 * the first is walked on to its end where this sk_msg has it, so
	 * that its event tells its length */
	if (st->cur.m.deny && (!st->run.first || st->run.replay)) {
		proto_stop(st, svc, PD_PO_DENY);
		return 1;
	}
	if (r == PD_P_DONE) {
		proto_end(st, svc);
		return st->run.ended ? 1 : 0;
	}
	return 0;
}

__noinline int proto_after(struct sk_msg_md *msg, struct pd_sock *st, int r, __u32 n)
{
	if (!msg || !st)
		return 1;
	return after(msg, st, r, n);
}

/* The same over kept bytes (no sk_msg to read on from). */
__noinline int proto_after_kept(struct pd_sock *st, int r)
{
	if (!st)
		return 1;
	return after(NULL, st, r, 0);
}

/* Whether a byte the parser took (with outcome r and symbols st->syms)
 * needs proto_after: it ended or broke the message, or gave symbols the
 * automaton takes. Symbols it does not take (an HTTP header's bytes with
 * no header rule, an inline command's arguments once no rule can match)
 * would change nothing there: after() matches only what pd_proto_feeds
 * lets through, and a deny it could stop at was stopped at when it
 * matched. So most bytes of such parts cost one call, not two. */
static __always_inline int proto_after_due(const struct pd_sock *st,
					   const struct pd_service *svc, int r)
{
	return r != PD_P_MORE ||
	       (st->syms.n && pd_proto_feeds(&st->cur.m, svc, &st->cur.parse));
}

/* Pass over the counted bytes the automaton does not need, up to the
 * window's end (left bytes): how many. */
static __always_inline __u32 proto_pass(struct pd_sock *st, const struct pd_service *svc,
					__u32 left)
{
	__u32 k = pd_proto_counted(&st->cur.parse, svc->framing);

	if (!k || pd_proto_feeds(&st->cur.m, svc, &st->cur.parse))
		return 0;
	if (k > left)
		k = left;
	pd_proto_pass(&st->cur.parse, svc->framing, k);
	st->cur.msglen += k;
	return k;
}

/* Bytes that would give only symbols the automaton does not need
 * (pd_proto_skip), from window offset i of the sk_msg's window of n
 * bytes: how many. Global: checked once. */
__noinline int proto_skip(struct sk_msg_md *msg, struct pd_sock *st, __u32 i, __u32 n,
			  __u32 framing)
{
	const __u8 *p;

	if (!msg || !st || i >= n || n > PD_WINDOW)
		return 0;
	p = (const __u8 *)(long)msg->data + (i & (PD_WINDOW - 1));
	return pd_proto_skip(&st->cur.parse, framing, p, (const __u8 *)(long)msg->data_end,
			     n - i);
}

/* Headers at once (under mode PD_PM_SKIP with the contents they
 * announce), from window offset i of the sk_msg's window of n bytes: how
 * many bytes (pd_proto_headers), PD_HDR_DONE added when they end the
 * message. Global: checked once. */
#define PD_HDR_DONE 0x10000
__noinline int proto_headers(struct sk_msg_md *msg, struct pd_sock *st, __u32 i, __u32 n,
			     __u32 mode)
{
	const __u8 *p, *end;
	__u32 k;
	int done;

	if (!msg || !st || i >= n || n > PD_WINDOW)
		return 0;
	p = (const __u8 *)(long)msg->data + (i & (PD_WINDOW - 1));
	end = (const __u8 *)(long)msg->data_end;
	st->hdr = st->cur.parse;
	k = pd_proto_headers(&st->hdr, mode, p, end, n - i, &done);
	if (!k || k > n - i)
		return 0;       /* none, or past the window (readable beyond it) */
	st->cur.parse = st->hdr;
	st->cur.msglen += k;
	return k | (done ? PD_HDR_DONE : 0);
}

/* A RESP command whole at once (pd_resp_whole), or as much of it as
 * the window holds, from window offset st->run.wused of the sk_msg's
 * window of n bytes, on copies of the parser and the automaton (st->hdr,
 * st->mtry). Kept where no deny rule matched: wused then moves past what
 * was taken, and the result is 2 when the command ended there, 1 when
 * more of it follows. Else nothing changes (0, and the walk takes the
 * command piece by piece). Global: checked once. */
__noinline int proto_whole(struct sk_msg_md *msg, struct pd_sock *st, __u32 n)
{
	const struct pd_classmap *cm;
	const struct pd_service *svc;
	const __u8 *p, *end;
	__u32 i;
	long k;

	if (!msg || !st || n > PD_WINDOW)
		return 0;
	i = st->run.wused;
	if (i >= n)
		return 0;
	svc = proto_service(st, &cm);
	if (!svc || !cm)
		return 0;
	p = (const __u8 *)(long)msg->data + (i & (PD_WINDOW - 1));
	end = (const __u8 *)(long)msg->data_end;
	/* an inline command, or a malformed one, costs no more than this
	 * look */
	if (p + 1 > end || *p != (st->cur.parse.phase == PD_RESP_START ? '*' : '$'))
		return 0;
	st->hdr = st->cur.parse;
	st->mtry = st->cur.m;
	k = pd_resp_whole(&st->hdr, &st->mtry, svc, cm, p, end, n - i, &st->hvia, NULL);
	if (k <= 0 || k > n - i)
		return 0;
	st->cur.parse = st->hdr;
	st->cur.m = st->mtry;
	st->cur.msglen += (__u32)k;
	st->run.wused = i + (__u32)k;
	return st->cur.parse.phase == PD_RESP_DATA_LF ? 2 : 1;
}

/* Elements one callback walks at most: counted contents passed over,
 * headers taken at once, a byte walked one by one. */
#define PD_PSTEPS 8

/* One callback: a few elements of the message, each the fastest way it
 * allows; a byte that gives the automaton symbols or ends something is
 * finished by proto_after. */
static long proto_step(__u32 c, void *arg)
{
	struct pwalk *w = arg;
	struct pd_sock *st = w->st;
	__u32 i, k, j, n = st->wlen;
	const __u8 *p, *end;
	int r;

	for (j = 0; j < PD_PSTEPS; j++) {
		i = st->run.wused;
		if (i >= n || st->run.ended)
			return 1;
		k = proto_pass(st, w->svc, n - i);
		if (k) {
			st->run.wused = i + k;
			continue;
		}
		if (w->svc->framing == PD_FRAME_MEMCACHE &&
		    !pd_proto_feeds(&st->cur.m, w->svc, &st->cur.parse)) {
			k = proto_skip(w->msg, st, i, n, PD_FRAME_MEMCACHE);
			if (k) {
				st->run.wused = i + k;
				st->cur.msglen += k;
				continue;
			}
		}
		/* a RESP command whole where it can be, then its end; the
		 * rest of one the automaton needs no more of, likewise */
		if (w->svc->framing == PD_FRAME_RESP &&
		    (st->cur.parse.phase == PD_RESP_START ||
		     (st->cur.parse.phase == PD_RESP_HDR &&
		      !pd_proto_feeds(&st->cur.m, w->svc, &st->cur.parse)))) {
			k = proto_whole(w->msg, st, n);
			if (k == 2) {
				st->syms.n = 0;
				if (proto_after(w->msg, st, PD_P_DONE, n))
					return 1;
			}
			if (k)
				continue;
		}
		k = pd_proto_headed(&st->cur.parse, w->svc->framing) ?
		    proto_headers(w->msg, st, i, n,
				  pd_proto_hmode(&st->cur.m, w->svc, &st->cur.parse)) : 0;
		if (k) {
			st->run.wused = i + (k & (PD_HDR_DONE - 1));
			st->syms.n = 0;         /* headers give no symbols */
			if ((k & PD_HDR_DONE) && proto_after(w->msg, st, PD_P_DONE, n))
				return 1;
			continue;
		}
		/* the window's pointers, read again after each call: nothing
		 * here pulls, but the verifier forgets them over a call */
		p = (const __u8 *)(long)w->msg->data + (i & (PD_WINDOW - 1));
		end = (const __u8 *)(long)w->msg->data_end;
		if (p + 1 > end) {
			st->run.err = 1;
			return 1;
		}
		r = proto_parse(&st->cur.parse, pd_proto_mode(w->svc), *p, &st->syms);
		st->run.wused = i + 1;
		st->cur.msglen++;
		if (proto_after_due(st, w->svc, r) && proto_after(w->msg, st, r, n))
			return 1;
	}
	return 0;
}

/* One window: make it readable, then walk it. */
static long proto_window(__u32 idx, void *arg)
{
	struct pwalk *w = arg;
	struct pd_sock *st = w->st;
	__u32 n, off = st->run.woff;

	if (st->run.ended || st->run.err || off >= st->run.limit)
		return 1;
	n = st->run.limit - off;
	if (n > PD_WINDOW)
		n = PD_WINDOW;
	/* up to the end of the element that holds off: read in place */
	n = walk_window_end(w->msg, &w->piece_end, off, off + n) - off;
	if (bpf_msg_pull_data(w->msg, off, off + n, 0)) {
		st->run.err = 1;
		return 1;
	}
	st->wlen = n;
	st->run.wused = 0;
	bpf_loop(n, proto_step, w, 0);
	if (st->run.ended || st->run.err)
		return 1;
	if (st->run.wused < n) {
		st->run.err = 1;        /* the window was shorter than pulled */
		return 1;
	}
	st->run.woff = off + n;
	return 0;
}

/* The sk_msg (or the kept bytes) ended with a message in progress. */
static __always_inline void proto_tail(struct pd_sock *st, const struct pd_service *svc)
{
	struct pd_match *m = &st->cur.m;
	int h;

	st->run.used = st->run.limit;
	st->run.outcome = PD_PO_PASS;
	if (!st->cur.msglen) {
		st->cur.in_msg = 0;
		return;
	}
	st->cur.in_msg = 1;
	/* monitor mode: judged at the message's end */
	if (st->run.replay || st->run.monitor)
		return;
	pd_length(m, svc, st->cur.msglen);
	if (m->deny) {
		proto_stop(st, svc, PD_PO_DENY);
		return;
	}
	h = pd_proto_must_hold(m, svc, &st->cur.parse, NULL);
	if (h < 0) {
		st->run.err = 1;
	} else if (h) {
		st->run.hold_why = (__u8)h;
		proto_stop(st, svc, PD_PO_HOLD);
	} else if (m->redirect) {
		proto_stop(st, svc, PD_PO_REDIRECT);
	} else if (!pd_proto_live(m, svc, &st->cur.parse) && !m->allow && svc->def == PD_DEF_DENY) {
		/* an allow list's message that no allow rule can match any more */
		proto_stop(st, svc, PD_PO_DENY);
	}
}

/* Walk bytes [0, run.limit) of the sk_msg from st->cur; replay: a range
 * decided before, walked again only to know where the stream stands.
 * Global: the verifier checks it once. */
__noinline int proto_run(struct sk_msg_md *msg, struct pd_sock *st, __u32 replay)
{
	const struct pd_classmap *cm;
	struct pwalk w = {};

	if (!msg || !st)
		return -1;
	w.svc = proto_service(st, &cm);
	if (!w.svc || !cm) {
		st->run.err = 1;
		return -1;
	}
	w.st = st;
	w.msg = msg;
	st->run.replay = replay ? 1 : 0;
	st->run.ended = 0;
	st->run.first = 1;
	st->run.mstart = 0;
	st->run.woff = 0;
	st->run.outcome = PD_PO_PASS;
	/* most sends are one window: no loop of windows for them */
	if (proto_window(0, &w) == 0 && st->run.woff < st->run.limit)
		bpf_loop(PD_MAX_WINDOWS - 1, proto_window, &w, 0);
	if (st->run.err)
		return -1;
	if (!st->run.ended) {
		if (st->run.woff < st->run.limit) {
			st->run.err = 1;        /* longer than PD_MAX_WINDOWS windows */
			return -1;
		}
		proto_tail(st, w.svc);
	}
	return st->run.err ? -1 : 0;
}

/* Following kept bytes (wire_resync): one byte per callback. */
static long proto_follow_step(__u32 i, void *arg)
{
	struct pwalk *w = arg;
	struct pd_sock *st = w->st;
	__u32 k, n = st->wlen;
	int r;

	if (i >= n || st->run.ended)
		return 1;
	if (i < st->run.wused)
		return 0;               /* passed over by count */
	k = proto_pass(st, w->svc, n - i);
	if (k) {
		st->run.wused = i + k;
		return 0;
	}
	st->run.wused = i + 1;
	r = proto_parse(&st->cur.parse, pd_proto_mode(w->svc),
			w->kept->bytes[i & (PD_BYTES_MAX - 1)], &st->syms);
	st->cur.msglen++;
	if (proto_after_due(st, w->svc, r))
		return proto_after_kept(st, r) ? 1 : 0;
	return 0;
}

/* The first n of the bytes kept in b, walked from st->cur as a decided
 * range (wire_resync). 0, or -1. Global: checked once. */
__noinline int proto_follow(struct pd_sock *st, const struct pd_bytes *b, __u32 n)
{
	const struct pd_classmap *cm;
	struct pwalk w = {};

	if (!st || !b || n > PD_BYTES_MAX)
		return -1;
	w.svc = proto_service(st, &cm);
	if (!w.svc || !cm)
		return -1;
	w.st = st;
	w.kept = b;
	st->wlen = n;
	st->run.replay = 1;
	st->run.ended = 0;
	st->run.err = 0;
	st->run.wused = 0;
	st->run.woff = 0;
	st->run.limit = n;
	bpf_loop(PD_BYTES_MAX, proto_follow_step, &w, 0);
	if (st->run.err)
		return -1;
	proto_tail(st, w.svc);
	return 0;
}

#endif /* PD_PROTO_BPF_H */
