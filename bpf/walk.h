/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The scan of pd_scan.h over the maps and the sk_msg: the macros it is
 * configured with, and the global functions the verifier checks once
 * each (the word tests, the gram filter, the two walks, the small send's
 * walk). Names:
 * walk_. Included by policyd.bpf.c only, after lookup.h.
 */
#ifndef PD_WALK_H
#define PD_WALK_H

struct pd_scan;
struct pd_dual;
static __always_inline __u32 walk_pull(struct pd_scan *s, struct sk_msg_md *msg, __u32 start,
				       __u32 end);
__noinline __u32 walk_piece_end(struct sk_msg_md *msg, __u32 start);
__noinline int walk_skip2_msg(struct sk_msg_md *msg, __u32 off, __u32 n, __u64 k0, __u64 k1);
__noinline int walk_skip4_msg(struct sk_msg_md *msg, __u32 off, __u32 n,
			      const struct pd_service *svc);
static __noinline __u32 walk_dual_call(struct pd_dual *d, const __u8 *p, const __u8 *cls,
				       const __u8 *tab);
__noinline int walk_grams_msg(struct sk_msg_md *msg, __u32 off, __u32 n, __u32 stride,
			      const struct pd_classmap *cm);
__noinline int walk_line_pass(struct sk_msg_md *msg, struct pd_sock *st, __u32 end);
struct pd_fast;
__noinline int walk_stop_msg(struct sk_msg_md *msg, __u32 off, __u32 n,
			     const struct pd_classmap *cm);
__noinline int walk_fast_msg(struct sk_msg_md *msg, __u32 off, __u32 n, struct pd_fast *f,
			     const struct pd_classmap *cm);
/* The socket's storage from the automaton the scan walks (pd_scan.m is
 * &st->cur.m, at its start): one pointer less on the walk's stack. */
_Static_assert(__builtin_offsetof(struct pd_sock, cur.m) == 0, "cur.m begins pd_sock");
#define walk_sock(m) ((struct pd_sock *)(m))

#define PD_ROW_SHIFT pd_row_shift
#define PD_SLOT_LAST_ROW pd_slot_last_row
#define PD_SKIP2(s, off, n, k0, k1) walk_skip2_msg((s)->src, off, n, k0, k1)
#define PD_SKIP4(s, off, n, svc) walk_skip4_msg((s)->src, off, n, svc)
#define PD_GRAMS(s, off, n, stride) walk_grams_msg((s)->src, off, n, stride, (s)->cm)
#define PD_DUAL_WALK walk_dual_call
#define PD_FAST_WALK(s, off, n, f) walk_fast_msg((s)->src, off, n, f, (s)->cm)
#define PD_STOP_WALK(s, off, n) walk_stop_msg((s)->src, off, n, (s)->cm)
#define PD_PULL(s, src, start, end) walk_pull(s, src, start, end)
#define PD_LOOP(n, fn, ctx) bpf_loop(n, fn, ctx, 0)
#define PD_LINE_PASS(s, end) walk_line_pass((s)->src, walk_sock((s)->m), end)
#include "pd_scan.h"

/* Elements in the ring of an sk_msg, at most (MAX_SKB_FRAGS + 1 in the
 * kernels policyd runs on; the running kernel's is read from its BTF). */
#define WALK_RING_MAX 64

/* Where the scatterlist element that holds byte start of the sk_msg ends
 * (an offset in the send), read from the kernel's struct sk_msg behind
 * the context; 0 when it cannot be read. A pull up to there reads the
 * bytes in place: past it, the kernel would copy the elements (see
 * PD_WINDOW). Global: verified once. */
__noinline __u32 walk_piece_end(struct sk_msg_md *msg, __u32 start)
{
	__u32 ring = bpf_core_field_size(struct sk_msg, sg.data) /
		     bpf_core_type_size(struct scatterlist);
	__u32 step = bpf_core_type_size(struct scatterlist);
	__u32 i, end, len, n, at = 0;
	const char *base = (const char *)msg;

	if (!msg || ring < 2 || ring > WALK_RING_MAX + 1)
		return 0;
	ring--;                 /* the ring's ids; the array has one more */
	if (bpf_probe_read_kernel(&i, sizeof(i), base + bpf_core_field_offset(struct sk_msg,
									    sg.start)) ||
	    bpf_probe_read_kernel(&end, sizeof(end), base + bpf_core_field_offset(struct sk_msg,
										sg.end)) ||
	    i >= ring || end >= ring)
		return 0;
	/* the elements in use, from start up to end, which wraps */
	n = end >= i ? end - i : end + ring - i;
	for (int k = 0; k < WALK_RING_MAX; k++) {
		if (k >= n)
			return 0;
		if (bpf_probe_read_kernel(&len, sizeof(len),
					  base + bpf_core_field_offset(struct sk_msg, sg.data) +
					  (__u64)i * step +
					  bpf_core_field_offset(struct scatterlist, length)))
			return 0;
		at += len;
		if (start < at)
			return at;
		if (++i == ring)
			i = 0;
	}
	return 0;
}

/* The end of a window [start, end) that a pull reads in place: end, or
 * the end of the element that holds start where that comes first.
 * *piece caches that element's end across a walk's windows: it is read
 * again only once a window starts past it (a pull inside an element
 * leaves the ring as it is). */
static __always_inline __u32 walk_window_end(struct sk_msg_md *msg, __u32 *piece, __u32 start,
					     __u32 end)
{
	if (start >= *piece)
		*piece = walk_piece_end(msg, start);
	return *piece > start && *piece < end ? *piece : end;
}

/* PD_PULL: bytes [start, end) of the sk_msg readable at s->data, or
 * fewer (walk_window_end). Returns how many (0: the pull failed). */
static __always_inline __u32 walk_pull(struct pd_scan *s, struct sk_msg_md *msg, __u32 start,
				       __u32 end)
{
	end = walk_window_end(msg, &s->piece_end, start, end);
	if (end <= start || bpf_msg_pull_data(msg, start, end, 0))
		return 0;
	s->data = msg->data;
	s->data_end = msg->data_end;
	return end - start;
}

/* A line ended: nothing of it is kept for a walk again after two
 * reloads (tail_keep keeps a line's bytes only while it goes on). */
static __always_inline void walk_tail_forget(struct pd_sock *st)
{
	st->tail_len = 0;
	st->tail_ids[0] = st->tail_ids[1] = st->tail_ids[2] = 0;
}

/* PD_LINE_PASS: the line that ended before byte end of the send passes
 * with nothing to log (no rule but an allow one, the default pass, no
 * audit): counted as pd_msg counts a line, and the automaton and the
 * socket's line state set for the next line, which begins at
 * run.mstart. The walk then goes on in the same run, and the lines that
 * pass leave together. Global: verified once, not once per path into
 * the walk's callback. */
__noinline int walk_line_pass(struct sk_msg_md *msg, struct pd_sock *st, __u32 end)
{
	const struct pd_service *svc;
	__u32 rule = 0, len, key;

	if (!msg || !st || st->run.err)
		return 0;
	/* after a reload the next line may obey another policy: the next
	 * run's reload_policy decides */
	if (lookup_active_gen() != (st->cur.gen & 1) ||
	    lookup_slot_gen(st->cur.gen) != st->cur.slot_gen)
		return 0;
	key = lookup_sock_key(st);
	svc = bpf_map_lookup_elem(&pd_services, &key);
	if (!svc)
		return 0;
	len = st->cur.msglen + end - st->run.mstart;
	pd_length(&st->cur.m, svc, len);
	if (pd_verdict(&st->cur.m, svc, &rule) != PD_V_PASS || st->cur.m.audit)
		return 0;
	ev_count(ev_counter_slot(st, rule), len, 0);
	pd_end(&st->cur.m, svc, 1);
	if (pd_begin(&st->cur.m, svc, NULL)) {
		st->run.err = 1;
		return 0;
	}
	st->cur.msglen = 0;
	walk_tail_forget(st);
	st->run.ended = 0;
	st->run.mstart = end;
	st->run.match_left = svc->inspect ? svc->inspect : 0xffffffff;
	return 1;
}

/* The word tests as global functions, verified once each: they keep the
 * keys and constants in registers (inlined into pd_scan_fast, with all
 * its values live, they were read back from the stack for every word),
 * and the verifier checks them once instead of once per path into
 * pd_scan_fast. */
__noinline int walk_skip2_msg(struct sk_msg_md *msg, __u32 off, __u32 n, __u64 k0, __u64 k1)
{
	if (!msg)
		return 0;
	return pd_skip2_ascii((const __u8 *)(long)msg->data, (const __u8 *)(long)msg->data_end,
			      off, n, k0, k1);
}

__noinline int walk_skip4_msg(struct sk_msg_md *msg, __u32 off, __u32 n,
			      const struct pd_service *svc)
{
	if (!msg || !svc)
		return 0;
	return pd_skip4((const __u8 *)(long)msg->data, (const __u8 *)(long)msg->data_end, off, n,
			svc);
}

__noinline int walk_grams_msg(struct sk_msg_md *msg, __u32 off, __u32 n, __u32 stride,
			      const struct pd_classmap *cm)
{
	if (!msg || !cm)
		return 0;
	return pd_grams((const __u8 *)(long)msg->data, (const __u8 *)(long)msg->data_end, off, n,
			stride, cm->grams);
}

/* The two walks as a function of their own, called with the bounds in a
 * struct: inlined, the walks' values did not fit in the registers. */
static __noinline __u32 walk_dual_call(struct pd_dual *d, const __u8 *p, const __u8 *cls,
				       const __u8 *tab)
{
	return pd_dual_walk(d, p, cls, tab);
}

/* pd_stop_walk over the bytes at window offset off: global, so that the
 * verifier checks it once. */
__noinline int walk_stop_msg(struct sk_msg_md *msg, __u32 off, __u32 n,
			     const struct pd_classmap *cm)
{
	if (!msg || !cm)
		return 0;
	return pd_stop_walk((const __u8 *)(long)msg->data, (const __u8 *)(long)msg->data_end, off,
			    n, cm->stop);
}

/* pd_fast_walk over the bytes at window offset off, in the table of
 * policy slot f->gen: global, so that the verifier checks it once. */
__noinline int walk_fast_msg(struct sk_msg_md *msg, __u32 off, __u32 n, struct pd_fast *f,
			     const struct pd_classmap *cm)
{
	__u32 last = pd_slot_last_row + (pd_row_mask << 2), gen;
	const __u8 *tab;

	if (!msg || !f || !cm)
		return 0;
	gen = f->gen & 1;
	tab = bpf_map_lookup_elem(&pd_trans, &gen);
	if (!tab)
		return 0;
	return pd_fast_walk(f, (const __u8 *)(long)msg->data, (const __u8 *)(long)msg->data_end,
			    off, n, cm->cls, tab, last);
}

/* The common small send, framing none, in one pass (pd_small_walk):
 * global, so that the verifier checks it once. */
__noinline int walk_small_msg(struct sk_msg_md *msg, struct pd_sock *st)
{
	__u32 last = pd_slot_last_row + (pd_row_mask << 2);
	const struct pd_classmap *cm;
	const struct pd_service *svc;
	const __u8 *tab, *p, *end;
	__u32 gen, key, n;

	if (!msg || !st)
		return -1;
	n = st->run.limit;
	if (n - 1 >= PD_SMALL)  /* 0, or more than PD_SMALL */
		return -1;
	gen = st->cur.gen & 1;
	key = pd_service_key(gen, st->service & (PD_MAX_SERVICES - 1));
	cm = bpf_map_lookup_elem(&pd_classes, &key);
	svc = bpf_map_lookup_elem(&pd_services, &key);
	tab = bpf_map_lookup_elem(&pd_trans, &gen);
	if (!cm || !svc || !tab)
		return -1;
	p = (const __u8 *)(long)msg->data;
	end = (const __u8 *)(long)msg->data_end;
	return pd_small_walk(&st->cur.m, &st->run, svc, cm->cls, tab, gen * pd_slot_states, last,
			     p, end, n);
}

/* Consume bytes [0, run.limit) of this sk_msg (pd_scan_run); under line
 * framing, lines that end within the first pass_to bytes and pass with
 * nothing to log do not end the walk (walk_line_pass). Inline, with the
 * caller's socket storage: a global function would look the storage up
 * again. */
static __always_inline int walk_msg(struct sk_msg_md *msg, struct pd_sock *st, __u32 pass_to)
{
	struct pd_scan s = {};
	__u32 key, gen;

	gen = st->cur.gen & 1;
	key = pd_service_key(gen, st->service & (PD_MAX_SERVICES - 1));
	s.cm = bpf_map_lookup_elem(&pd_classes, &key);
	s.svc = bpf_map_lookup_elem(&pd_services, &key);
	s.tab = bpf_map_lookup_elem(&pd_trans, &gen);
	if (!s.cm || !s.svc || !s.tab) {
		st->run.err = 1;
		return -1;
	}
	s.base = gen * pd_slot_states;
	s.gen = gen;
	s.m = &st->cur.m;
	s.run = &st->run;
	s.src = msg;
	s.pass_to = pass_to;
	pd_scan_run(&s, &st->run);
	return 0;
}

#endif /* PD_WALK_H */
