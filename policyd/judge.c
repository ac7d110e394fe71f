// SPDX-License-Identifier: GPL-2.0-only
/*
 * The data plane's judgement of a connection, on the host (judge.h). The
 * walk is the kernel's: bpf/pd_scan.h and bpf/pd_match.h compiled here,
 * over a copy of the slot the loader fills (pd_slot_shape, the table
 * widened to its rows, zero rows past the image). What pd_msg does around
 * the walk (framing, the inspect window, holds, what a verdict lets
 * through and what it logs) is followed step by step below, in the order
 * of bpf/policyd.bpf.c: a change there is a change here, and
 * tests/e2e/judge.t compares the two on the kernel. The protocol
 * framings (resp, memcache, http) run the kernel's parsers (bpf/proto.h)
 * as bpf/proto.bpf.h and bpf/proto_msg.bpf.h drive them: window by
 * window, whole pipelined messages in one run. Reloads, the
 * send buffer (pd_replay) and the wire checks do not change a verdict and
 * are left out.
 */
#include <stdlib.h>
#include <string.h>

#include "judge.h"

/* An sk_msg as the program sees it: the bytes of one run, and the length
 * of the scatterlist element the program starts in (small_walk reads
 * there without a pull). */
struct judge_msg {
	const uint8_t *p;
	uint32_t size;
	uint32_t first;
	uint32_t slack;         /* a pull leaves data_end this much further, where
	                         * the send has the bytes (tests) */
	uint32_t piece;         /* a pull stops at a multiple of this many bytes
	                         * from the run's start, as the BPF program's stops
	                         * at a scatterlist element's end (tests; 0: never) */
	uint8_t *win;           /* the pulled bytes, copied: a read past data_end is
	                         * a read past the allocation */
};

struct pd_judge {
	struct pd_image *img;
	const struct pd_service *svc;
	const struct pd_classmap *cm;
	uint32_t states, width, shift, last_row;
	uint32_t *tab;          /* the slot's table: states rows of width entries */
	bool monitor;
	uint32_t slack;
	uint32_t piece;
	/* what pd_sock holds for the connection */
	struct pd_progress cur, snap;
	struct pd_run run;
	bool dead;
	bool malformed;         /* the report is of a message its framing cannot parse */
	uint32_t held;          /* bytes at the stream's end held back */
	uint16_t held_rule;
	uint64_t msg_off;       /* stream offset of the current message */
	uint8_t *stream;
	uint64_t slen, scap;
};

/* The judge pd_match.h reads the tables of: its walk passes no context. */
static const struct pd_judge *the;
static const struct pd_state_out no_out;

static const __u32 *row_of(__u32 st)
{
	return st < the->states ? the->tab + (size_t)st * the->width : NULL;
}

/* past the image, the zeroed entries of the map */
static const struct pd_state_out *out_of(__u32 st)
{
	if (st < the->img->nstates)
		return &the->img->outs[st];
	return st < the->states ? &no_out : NULL;
}

/* The rule that keeps a held message held, as the data plane's
 * held_rule(): why 2 an unfinished line (PD_HELD_LINE), an allow list
 * that has not allowed it (0), else the prefix rule that may still match. */
static uint16_t held_rule(const struct pd_service *svc, const struct pd_match *m, int why)
{
	const struct pd_state_out *o;

	if (why == 2)
		return PD_HELD_LINE;
	if ((svc->hold & PD_HOLD_ALLOWLIST) && !m->allow && !m->redirect)
		return 0;
	o = out_of(m->state);
	return o && (o->flags & PD_SF_ANCHORED) ? (uint16_t)PD_SF_HOLD_RULE(o->flags) : 0;
}

struct pd_scan;
static __u32 pull(struct pd_scan *s, struct judge_msg *msg, __u32 start, __u32 end);

#define PD_ROW(ctx, st) row_of(st)
#define PD_OUT(ctx, st) out_of(st)
#define PD_ROW_MASK(ctx) (the->width - 1)
#define PD_ROW_SHIFT (the->shift)
#define PD_SLOT_LAST_ROW (the->last_row)
#define PD_SKIP2(s, off, n, k0, k1) pd_skip2_ascii((s)->data, (s)->data_end, off, n, k0, k1)
#define PD_SKIP4(s, off, n, svc) pd_skip4((s)->data, (s)->data_end, off, n, svc)
#define PD_DUAL_WALK pd_dual_walk
#define PD_STOP_WALK(s, off, n) pd_stop_walk((s)->data, (s)->data_end, off, n, (s)->cm->stop)
#define PD_FAST_WALK(s, off, n, f)						\
	pd_fast_walk(f, (s)->data, (s)->data_end, off, n, (s)->cm->cls, (s)->tab,		\
		     PD_SLOT_LAST_ROW + (PD_ROW_MASK(NULL) << 2))
#define PD_PULL(s, src, start, end) pull(s, src, start, end)
#define PD_LOOP(n, fn, ctx)							\
	do {									\
		for (__u32 i_ = 0; i_ < (__u32)(n); i_++)			\
			if ((fn)(i_, (ctx)))					\
				break;						\
	} while (0)
#define PD_LOAD64(q)								\
	({									\
		__u64 v_;							\
		memcpy(&v_, (q), 8);						\
		v_;								\
	})
#define PD_LOAD32(q)								\
	({									\
		__u32 v_;							\
		memcpy(&v_, (q), 4);						\
		v_;								\
	})
#define PD_GRAMS(s, off, n, stride)						\
	pd_grams((s)->data, (s)->data_end, off, n, stride, (s)->cm->grams)
#define barrier_var(x) asm volatile("" : "+r"(x))
#include "pd_scan.h"
#include "proto.h"

/* PD_PULL as the BPF program does it: bytes from start of the run, up to
 * end or the end of the piece that holds start (pieces of msg->piece
 * bytes from the run's start; 0: one piece), readable at data; data_end
 * is the range's end (and the slack past it). */
static __u32 pull(struct pd_scan *s, struct judge_msg *msg, __u32 start, __u32 end)
{
	uint32_t n;

	if (end <= start || start >= msg->size || end > msg->size)
		return 0;
	if (msg->piece && end > (start / msg->piece + 1) * msg->piece)
		end = (start / msg->piece + 1) * msg->piece;
	n = end + msg->slack < msg->size ? end + msg->slack - start : msg->size - start;
	free(msg->win);
	msg->win = malloc(n);
	if (!msg->win)
		return -1;
	memcpy(msg->win, msg->p + start, n);
	s->data = msg->win;
	s->data_end = msg->win + n;
	return end - start;
}

struct pd_judge *pd_judge_new(struct pd_image *img, uint32_t service, bool monitor,
			      uint32_t slot_states, uint32_t width)
{
	struct pd_judge *j;

	if (service >= img->nservices)
		return NULL;
	if (!slot_states)
		pd_slot_shape(img, &slot_states, &width);
	if (slot_states < img->nstates || pd_image_widen(img, width))
		return NULL;
	j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->tab = calloc((size_t)slot_states * width, sizeof(*j->tab));
	if (!j->tab) {
		free(j);
		return NULL;
	}
	memcpy(j->tab, img->trans, (size_t)img->nstates * width * sizeof(*j->tab));
	j->img = img;
	j->svc = &img->services[service].svc;
	j->cm = &img->services[service].classes;
	j->states = slot_states;
	j->width = width;
	j->shift = (uint32_t)__builtin_ctz(width * sizeof(uint32_t));
	j->last_row = (slot_states - 1) * width * (uint32_t)sizeof(uint32_t);
	j->monitor = monitor;
	j->cur.m.state = PD_NO_STATE;   /* as sock_ops leaves a new socket */
	return j;
}

void pd_judge_set_slack(struct pd_judge *j, uint32_t slack)
{
	j->slack = slack;
}

void pd_judge_set_piece(struct pd_judge *j, uint32_t piece)
{
	j->piece = piece;
}

void pd_judge_free(struct pd_judge *j)
{
	if (!j)
		return;
	free(j->tab);
	free(j->stream);
	free(j);
}

/* What one run reports: pd_emit's event, or a message that passed
 * unlogged. at: the run's first byte in the stream. */
static void report(struct pd_judge *j, const struct judge_msg *msg, uint64_t at, int kind,
		   uint32_t verdict, uint32_t rule, uint32_t len, uint32_t bytes, bool logged,
		   pd_judged_fn fn, void *arg)
{
	const struct pd_rule *exr = NULL;
	struct pd_judged r = { 0 };
	uint32_t ex;

	r.kind = (uint8_t)kind;
	r.verdict = (uint8_t)verdict;
	r.logged = logged;
	r.monitor = j->monitor && (verdict == PD_V_DENY || verdict == PD_V_REDIRECT);
	r.malformed = j->malformed;
	r.rule = rule;
	r.audit = j->cur.m.audit;
	r.state = j->cur.m.state;
	r.offset = j->msg_off;
	r.len = len;
	/* the excerpt: the deciding rule's (for an audited pass the audit
	 * rule's), else the service's; from the start of the sk_msg */
	if (rule && rule <= j->img->nrules)
		exr = &j->img->rules[rule];
	if (r.audit && r.audit <= j->img->nrules && verdict == PD_V_PASS)
		exr = &j->img->rules[r.audit];
	ex = exr ? exr->excerpt : j->svc->excerpt;
	if (ex > PD_EXCERPT_MAX)
		ex = PD_EXCERPT_MAX;
	if (ex > msg->size)
		ex = msg->size;
	if (bytes && ex > bytes)
		ex = bytes;
	if (at + ex > j->slen)
		ex = at < j->slen ? (uint32_t)(j->slen - at) : 0;
	r.ex_off = at;
	r.ex_len = ex;
	fn(&r, j->stream, arg);
}

/* small_walk: a send of framing none that lies in its first element. */
static int small_walk(struct pd_judge *j, const struct judge_msg *msg)
{
	uint32_t n = j->run.limit, last = j->last_row + ((j->width - 1) << 2);
	uint8_t *first;
	int r;

	if (n - 1 >= PD_SMALL)
		return -1;
	first = malloc(msg->first ? msg->first : 1);
	if (!first)
		return -1;
	memcpy(first, msg->p, msg->first);
	r = pd_small_walk(&j->cur.m, &j->run, j->svc, j->cm->cls, (const __u8 *)j->tab, 0, last,
			  first, first + msg->first, n);
	free(first);
	return r;
}

/* pd_scan */
static void scan(struct pd_judge *j, struct judge_msg *msg)
{
	struct pd_scan s = {
		.m = &j->cur.m,
		.run = &j->run,
		.cm = j->cm,
		.svc = j->svc,
		.tab = (const __u8 *)j->tab,
		.src = msg,
	};

	pd_scan_run(&s, &j->run);
	free(msg->win);
	msg->win = NULL;
}

/* A decided message: logged when the kernel logs it (decided()). */
static void decided(struct pd_judge *j, const struct judge_msg *msg, uint64_t at,
		    uint32_t verdict, uint32_t rule, uint32_t len, uint32_t bytes, pd_judged_fn fn,
		    void *arg)
{
	report(j, msg, at, PD_J_DECIDED, verdict, rule, len, bytes,
	       verdict != PD_V_PASS || j->cur.m.audit, fn, arg);
}

static int run_proto(struct pd_judge *j, struct judge_msg *msg, uint64_t at, pd_judged_fn fn,
		     void *arg);

/* One run of pd_msg over the sk_msg msg, whose first byte is the stream's
 * byte at. Returns the bytes it let out when the program runs again on
 * the rest (apply), 0 when it dealt with all of them, -1 on an error
 * (the kernel drops the send and aborts the connection). */
static int run_once(struct pd_judge *j, struct judge_msg *msg, uint64_t at, pd_judged_fn fn,
		    void *arg)
{
	const struct pd_service *svc = j->svc;
	struct pd_run *run = &j->run;
	struct pd_match *m = &j->cur.m;
	uint32_t size = msg->size, verdict, rule = 0, used, apply = 0, win_done;
	int must_hold;

	j->snap = j->cur;
	if (m->state == PD_NO_STATE)
		m->state = svc->resume;
	if (!j->cur.in_msg) {
		if (pd_begin(m, svc, NULL))
			return -1;
		j->cur.msglen = 0;
		j->msg_off = at;
	}
	run->line = svc->framing == PD_FRAME_LINE;
	run->ended = 0;
	run->err = 0;
	run->used = 0;
	run->match_left = 0xffffffff;
	run->monitor = j->monitor;
	if (svc->inspect)
		run->match_left = svc->inspect > j->cur.msglen ? svc->inspect - j->cur.msglen : 0;
	run->limit = size;
	if (!run->line && run->match_left < size)
		run->limit = run->match_left;
	if (PD_FRAME_IS_PROTO(svc->framing))
		return run_proto(j, msg, at, fn, arg);
	if (svc->noscan)
		run->used = run->limit;
	else if (run->line || small_walk(j, msg) < 0)
		scan(j, msg);
	if (run->err)
		return -1;
	used = run->used;

	if (!run->line) {
		pd_length(m, svc, size);
		verdict = pd_verdict(m, svc, &rule);
		pd_end(m, svc, used == size);
		decided(j, msg, at, verdict, rule, size, size, fn, arg);
		goto out;
	}
	j->cur.msglen += used;
	pd_length(m, svc, j->cur.msglen);
	win_done = svc->inspect && j->cur.msglen >= svc->inspect;
	if (run->ended || (m->deny && !run->monitor)) {
		verdict = pd_verdict(m, svc, &rule);
		j->cur.in_msg = 0;
		decided(j, msg, at, verdict, rule, j->cur.msglen, used, fn, arg);
		pd_end(m, svc, 1);
		if ((verdict != PD_V_DENY || run->monitor) && used < size)
			apply = used;
		goto out;
	}
	must_hold = win_done || run->monitor ? 0 : pd_must_hold(m, svc, NULL);
	if (must_hold < 0)
		return -1;
	if (!must_hold && !win_done && !run->monitor && (svc->hold & PD_HOLD_LINE))
		must_hold = 2;
	if (must_hold) {
		j->held_rule = held_rule(svc, m, must_hold);
		if (size && size <= PD_BYTES_MAX) {
			/* hold(): out of the send, judged again with the next */
			j->held = size;
			j->cur = j->snap;
			return 0;
		}
		if ((svc->hold & PD_HOLD_ALLOWLIST) && !m->allow && !m->redirect) {
			j->cur.in_msg = 0;
			decided(j, msg, at, PD_V_DENY, 0, j->cur.msglen, size, fn, arg);
			verdict = PD_V_DENY;
			rule = 0;
			goto out;
		}
	}
	j->cur.in_msg = 1;
	verdict = PD_V_PASS;
	rule = 0;
	if (!run->monitor && (win_done || m->redirect))
		verdict = pd_verdict(m, svc, &rule);
	if (verdict == PD_V_DENY)
		decided(j, msg, at, verdict, rule, j->cur.msglen, size, fn, arg);
	else if (verdict == PD_V_REDIRECT)
		report(j, msg, at, PD_J_EVENT, verdict, rule, j->cur.msglen, size, true, fn, arg);
	else
		verdict = PD_V_PASS;
out:
	if (verdict == PD_V_DENY && !run->monitor) {
		j->dead = true;         /* act(): dropped, the connection doomed */
		return 0;
	}
	return (int)apply;
}

/* ---- the protocol framings: proto.bpf.h and proto_msg.bpf.h ---- */

/* proto_next */
static void proto_next(struct pd_judge *j)
{
	pd_begin(&j->cur.m, j->svc, NULL);
	memset(&j->cur.parse, 0, sizeof(j->cur.parse));
	j->cur.msglen = 0;
	j->cur.in_msg = 0;
}

/* proto_stop: at stream position pos of the run (the byte after the one
 * that stopped it) */
static void proto_stop(struct pd_judge *j, uint32_t pos, uint32_t what)
{
	j->run.ended = 1;
	if (j->run.first) {
		j->run.outcome = (uint8_t)what;
		j->run.used = pos;
		return;
	}
	proto_next(j);
	j->run.outcome = PD_PO_PASS;
	j->run.used = j->run.mstart;
}

/* proto_end: a message that passes unlogged is counted and the walk goes
 * on with the next; any other stops the run. */
static void proto_end(struct pd_judge *j, uint32_t pos, const struct judge_msg *msg, uint64_t at,
		      pd_judged_fn fn, void *arg)
{
	uint32_t rule = 0, verdict;

	pd_length(&j->cur.m, j->svc, j->cur.msglen);
	verdict = pd_verdict(&j->cur.m, j->svc, &rule);
	if (verdict != PD_V_PASS || j->cur.m.audit) {
		j->cur.in_msg = 0;
		proto_stop(j, pos, PD_PO_ENDED);
		return;
	}
	/* counted, not logged: reported here as a pass, its excerpt its own */
	report(j, msg, at + j->run.mstart, PD_J_DECIDED, PD_V_PASS, 0, j->cur.msglen,
	       j->cur.msglen, false, fn, arg);
	j->msg_off = at + pos;
	proto_next(j);
	j->run.first = 0;
	j->run.mstart = pos;
}

/* proto_take: counted contents the automaton needs, up to PD_TAKE bytes
 * from i, within the window's n bytes. Returns the bytes taken, or -1. */
#define PD_TAKE 32
static int proto_take(struct pd_judge *j, const uint8_t *w, uint32_t i, uint32_t n,
		      struct pd_syms *o)
{
	uint32_t k;

	for (k = 0; k < PD_TAKE; k++) {
		if (i + k >= n || j->cur.m.deny || !pd_proto_counted(&j->cur.parse, j->svc->framing) ||
		    !pd_proto_feeds(&j->cur.m, j->svc, &j->cur.parse))
			break;
		pd_proto_take(&j->cur.parse, j->svc->framing, w[i + k], o);
		if (pd_proto_match(&j->cur.m, j->svc, j->cm, o, NULL))
			return -1;
	}
	j->cur.msglen += k;
	return (int)k;
}

/* after(): what a byte that gave symbols, or ended something (r), means.
 * *i: the window offset after the byte, moved on by what is taken. 0 go
 * on, 1 stop. */
static int proto_after(struct pd_judge *j, const uint8_t *w, uint32_t woff, uint32_t *i,
		       uint32_t n, struct pd_syms *o, int r, const struct judge_msg *msg,
		       uint64_t at, pd_judged_fn fn, void *arg)
{
	int k;

	if (r == PD_P_BAD) {
		proto_stop(j, woff + *i, j->cur.m.deny ? PD_PO_DENY : PD_PO_BAD);
		return 1;
	}
	if (pd_proto_feeds(&j->cur.m, j->svc, &j->cur.parse)) {
		if (pd_proto_match(&j->cur.m, j->svc, j->cm, o, NULL))
			goto err;
		k = proto_take(j, w, *i, n, o);
		if (k < 0)
			goto err;
		*i += (uint32_t)k;
	}
	if (j->cur.m.deny && !j->run.first) {
		proto_stop(j, woff + *i, PD_PO_DENY);
		return 1;
	}
	if (r == PD_P_DONE) {
		proto_end(j, woff + *i, msg, at, fn, arg);
		return j->run.ended ? 1 : 0;
	}
	return 0;
err:
	j->run.err = 1;
	return 1;
}

/* proto_tail: the sk_msg ended with a message in progress. */
static void proto_tail(struct pd_judge *j)
{
	struct pd_match *m = &j->cur.m;
	int h;

	j->run.used = j->run.limit;
	j->run.outcome = PD_PO_PASS;
	if (!j->cur.msglen) {
		j->cur.in_msg = 0;
		return;
	}
	j->cur.in_msg = 1;
	if (j->run.monitor)
		return;
	pd_length(m, j->svc, j->cur.msglen);
	if (m->deny) {
		proto_stop(j, j->run.limit, PD_PO_DENY);
		return;
	}
	h = pd_proto_must_hold(m, j->svc, &j->cur.parse, NULL);
	if (h < 0) {
		j->run.err = 1;
	} else if (h) {
		j->run.hold_why = (uint8_t)h;
		proto_stop(j, j->run.limit, PD_PO_HOLD);
	} else if (m->redirect) {
		proto_stop(j, j->run.limit, PD_PO_REDIRECT);
	} else if (!pd_proto_live(m, j->svc, &j->cur.parse) && !m->allow &&
		   j->svc->def == PD_DEF_DENY) {
		proto_stop(j, j->run.limit, PD_PO_DENY);
	}
}

/* proto_run: bytes [0, run.limit) of the sk_msg, window by window as the
 * kernel pulls them (PD_WINDOW bytes, at most PD_MAX_WINDOWS), each
 * element the way proto_step takes it. Messages that pass unlogged are
 * reported as they end. */
static void proto_run(struct pd_judge *j, const struct judge_msg *msg, uint64_t at,
		      pd_judged_fn fn, void *arg)
{
	const struct pd_service *svc = j->svc;
	struct pd_syms o;
	uint32_t woff, n, i, k;
	const uint8_t *w;
	int r, done;

	j->run.ended = 0;
	j->run.first = 1;
	j->run.mstart = 0;
	j->run.outcome = PD_PO_PASS;
	for (woff = 0; woff < j->run.limit && !j->run.ended && !j->run.err; woff += n) {
		if (woff >= PD_MAX_WINDOWS * PD_WINDOW) {
			j->run.err = 1;         /* longer than PD_MAX_WINDOWS windows */
			return;
		}
		n = j->run.limit - woff < PD_WINDOW ? j->run.limit - woff : PD_WINDOW;
		w = msg->p + woff;
		for (i = 0; i < n && !j->run.ended && !j->run.err;) {
			k = pd_proto_counted(&j->cur.parse, svc->framing);
			if (k && !pd_proto_feeds(&j->cur.m, svc, &j->cur.parse)) {
				if (k > n - i)
					k = n - i;
				pd_proto_pass(&j->cur.parse, svc->framing, k);
				j->cur.msglen += k;
				i += k;
				continue;
			}
			k = pd_proto_skip_unfed(&j->cur.m, svc, &j->cur.parse, w + i, w + n, n - i);
			if (k) {
				j->cur.msglen += k;
				i += k;
				continue;
			}
			/* headers at once where they end within the window */
			{
				struct pd_parse ps = j->cur.parse;

				k = pd_proto_headers(&ps, pd_proto_hmode(&j->cur.m, svc, &ps), w + i,
						     w + n, n - i, &done);
				if (k && k <= n - i) {
					j->cur.parse = ps;
					j->cur.msglen += k;
					i += k;
					if (done) {
						o.n = 0;
						proto_after(j, w, woff, &i, n, &o, PD_P_DONE, msg, at,
							    fn, arg);
					}
					continue;
				}
			}
			r = pd_proto_byte(&j->cur.parse, pd_proto_mode(svc), w[i], &o);
			i++;
			j->cur.msglen++;
			if (r != PD_P_MORE || o.n)
				proto_after(j, w, woff, &i, n, &o, r, msg, at, fn, arg);
		}
	}
	if (j->run.err || j->run.ended)
		return;
	proto_tail(j);
}

/* proto_msg: one run of pd_msg over the sk_msg msg under a protocol
 * framing. Returns as run_once does. */
static int run_proto(struct pd_judge *j, struct judge_msg *msg, uint64_t at, pd_judged_fn fn,
		     void *arg)
{
	const struct pd_service *svc = j->svc;
	struct pd_match *m = &j->cur.m;
	uint32_t size = msg->size, verdict = PD_V_PASS, rule = 0, apply = 0;

	if (!j->cur.in_msg)
		memset(&j->cur.parse, 0, sizeof(j->cur.parse));
	proto_run(j, msg, at, fn, arg);
	if (j->run.err)
		return -1;
	/* the message the outcome is about begins at the run's start */
	switch (j->run.outcome) {
	case PD_PO_PASS:
		apply = j->run.used < size ? j->run.used : 0;
		break;
	case PD_PO_ENDED:
		verdict = pd_verdict(m, svc, &rule);
		decided(j, msg, at, verdict, rule, j->cur.msglen, j->run.used, fn, arg);
		j->cur.msglen = 0;
		memset(&j->cur.parse, 0, sizeof(j->cur.parse));
		if ((verdict != PD_V_DENY || j->run.monitor) && j->run.used < size)
			apply = j->run.used;
		break;
	case PD_PO_DENY:
		verdict = pd_verdict(m, svc, &rule);
		decided(j, msg, at, verdict, rule, j->cur.msglen, size, fn, arg);
		break;
	case PD_PO_BAD:
		/* proto_malformed: logged as rule=malformed */
		j->malformed = true;
		report(j, msg, at, PD_J_DECIDED, PD_V_DENY, 0, j->cur.msglen, size, true, fn, arg);
		j->malformed = false;
		verdict = PD_V_DENY;
		break;
	case PD_PO_HOLD:
		j->held_rule = held_rule(svc, m, j->run.hold_why);
		if (size && size <= PD_BYTES_MAX) {
			j->held = size;
			j->cur = j->snap;
			return 0;
		}
		if ((svc->hold & PD_HOLD_ALLOWLIST) && !m->allow && !m->redirect) {
			decided(j, msg, at, PD_V_DENY, 0, j->cur.msglen, size, fn, arg);
			verdict = PD_V_DENY;
		}
		break;
	case PD_PO_REDIRECT:
		verdict = pd_verdict(m, svc, &rule);
		report(j, msg, at, PD_J_EVENT, verdict, rule, j->cur.msglen, size, true, fn, arg);
		break;
	default:
		return -1;
	}
	if (j->run.monitor && (j->run.outcome == PD_PO_DENY || j->run.outcome == PD_PO_BAD)) {
		/* the server drops the connection or skips the line: what
		 * follows is read as new messages */
		proto_next(j);
		apply = 0;
	}
	if (verdict == PD_V_DENY && !j->run.monitor) {
		j->dead = true;
		return 0;
	}
	return (int)apply;
}

static int stream_add(struct pd_judge *j, const uint8_t *p, uint32_t len)
{
	if (j->slen + len > j->scap) {
		uint64_t cap = (j->slen + len) * 2 + 4096;
		uint8_t *s = realloc(j->stream, cap);

		if (!s)
			return -1;
		j->stream = s;
		j->scap = cap;
	}
	memcpy(j->stream + j->slen, p, len);
	j->slen += len;
	return 0;
}

int pd_judge_send(struct pd_judge *j, const uint8_t *p, uint32_t len, const uint32_t *elems,
		  size_t nelems, pd_judged_fn fn, void *arg)
{
	struct judge_msg msg = { .slack = j->slack, .piece = j->piece };
	uint64_t at;
	int r = 0;

	if (j->dead)
		return 1;
	if (!len)
		return 0;
	if (stream_add(j, p, len))
		return -1;
	the = j;
	/* unhold(): the held bytes go in front, in an element of their own */
	at = j->slen - len - j->held;
	msg.size = len + j->held;
	msg.first = j->held ? j->held : nelems ? elems[0] : len;
	j->held = 0;
	while (msg.size && !j->dead) {
		msg.p = j->stream + at;
		r = run_once(j, &msg, at, fn, arg);
		if (r <= 0)
			break;
		/* the program runs again on the rest of the sk_msg */
		at += (uint32_t)r;
		msg.size -= (uint32_t)r;
		msg.first = msg.size;   /* read only by small_walk: framing none, one run */
		r = 0;
	}
	free(msg.win);
	if (r < 0)
		return -1;
	return j->dead ? 1 : 0;
}

void pd_judge_end(struct pd_judge *j, pd_judged_fn fn, void *arg)
{
	struct pd_judged r = { 0 };

	if (j->dead || (!j->held && !j->cur.in_msg))
		return;
	r.kind = j->held ? PD_J_HELD : PD_J_UNFINISHED;
	r.rule = j->held ? j->held_rule : 0;
	r.audit = j->cur.m.audit;
	r.offset = j->cur.in_msg ? j->msg_off : j->slen - j->held;
	r.len = (uint32_t)(j->slen - r.offset);
	r.ex_off = r.offset;
	r.ex_len = j->svc->excerpt < r.len ? j->svc->excerpt : r.len;
	if (r.ex_len > PD_EXCERPT_MAX)
		r.ex_len = PD_EXCERPT_MAX;
	fn(&r, j->stream, arg);
}
