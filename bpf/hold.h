/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Holding a message back: the unfinished end of a message that may
 * still be denied is taken out of the send and kept in pd_bytes, put
 * back in front of the socket's next send, and judged with it; a timer
 * (pd_held) refuses what stays held past its service's hold_timeout.
 * Names: hold_. Included by policyd.bpf.c only, after abort.h and
 * lookup.h.
 */
#ifndef PD_HOLD_H
#define PD_HOLD_H

/* The message held so far is decided (or its socket closes). */
static __always_inline void hold_disarm(struct pd_sock *st)
{
	if (!st->held_since)
		return;
	st->held_since = 0;
	bpf_map_delete_elem(&pd_held, &st->cookie);
}

/* Whether the socket's held message ran past its hold_timeout. */
static __always_inline int hold_expired(const struct pd_sock *st)
{
	struct pd_held *h;

	if (!st->held_since)
		return 0;
	h = bpf_map_lookup_elem(&pd_held, &st->cookie);
	return h && h->expired;
}

/* The socket's connection ends (close, shutdown, connect(AF_UNSPEC))
 * while the end of a message is held: no send can put it back any more.
 * Logged as refused (cause closed_held) with its length, and forgotten;
 * its timer goes. Unless it was refused already: held past its
 * hold_timeout, or on a connection refused or denied. From sock_ops. */
static __always_inline void hold_lost(struct bpf_sock *sk, struct pd_sock *st)
{
	struct pd_bytes *b = bpf_sk_storage_get(&pd_bytes, sk, 0, 0);

	if (b && b->kind == PD_BYTES_HELD) {
		b->kind = PD_BYTES_NONE;
		if (!(st->flags & PD_SK_DEAD) && !hold_expired(st)) {
			ev_trouble(PD_TR_CLOSED_HELD);
			ev_emit_sock(sk, PD_V_REFUSE, PD_TR_CLOSED_HELD, st->service, st->tgid,
				     st->uid, b->len, 1);
		}
	}
	hold_disarm(st);
}

/* What keeps the message held (pd_sock.held_rule): the default of an
 * allow list not yet satisfied, the lowest prefix rule that may still
 * match, or the bound on unfinished lines (why 2). */
static __always_inline __u16 hold_rule(const struct pd_sock *st, const struct pd_service *svc,
				       int why)
{
	const struct pd_state_out *o;

	if (why == 2)
		return PD_HELD_LINE;
	if ((svc->hold & PD_HOLD_ALLOWLIST) && !st->cur.m.allow && !st->cur.m.redirect)
		return 0;
	o = lookup_out(st->cur.m.state);
	return o && (o->flags & PD_SF_ANCHORED) ? (__u16)PD_SF_HOLD_RULE(o->flags) : 0;
}

/* A message held longer than its service's hold_timeout: refused, logged
 * with the rule that kept it held, and the connection aborted (its sender
 * waits for a reply that cannot come). With fail_mode = "open" it is
 * logged, and waits on. A timer callback: runs in softirq. */
static int hold_timed_out(void *map, __u64 *cookie, struct pd_held *h)
{
	struct pd_event *e = bpf_ringbuf_reserve(&pd_events, sizeof(*e), 0);
	__u64 now = bpf_ktime_get_ns();
	int open = lookup_fail_open();
	long err;

	ev_trouble(PD_TR_HOLD_TIMEOUT);
	if (e) {
		__builtin_memset(e, 0, sizeof(*e));
		e->verdict = open ? PD_V_UNJUDGED : PD_V_REFUSE;
		e->cause = PD_TR_HOLD_TIMEOUT;
		e->service = h->service;
		e->tgid = e->pid = h->tgid;
		e->uid = h->uid;
		e->len = h->len;
		e->audit_id = h->rule;          /* the rule index that kept it held */
		e->family = h->doom.family;
		__builtin_memcpy(e->saddr, h->doom.saddr, sizeof(e->saddr));
		__builtin_memcpy(e->daddr, h->doom.daddr, sizeof(e->daddr));
		e->sport = h->doom.sport;
		e->dport = h->doom.dport;
		bpf_ringbuf_submit(e, 0);
	} else {
		ev_trouble(PD_TR_RINGBUF);
	}
	if (!open) {
		/* the socket's next send records it where this finds no room */
		h->expired = 1;
		h->doom.when = now;
		err = h->doom.family ? bpf_map_update_elem(&pd_doomed, cookie, &h->doom,
							   BPF_NOEXIST) : -1;
		if (!err)
			ev_trouble(PD_TR_ABORTS);
		else if (err != -17 /* EEXIST: doomed already */)
			ev_trouble(PD_TR_ABORT_FULL);
	}
	return 0;
}

/* The first hold of a message: a timer for its hold_timeout. */
static __always_inline void hold_arm(struct sk_msg_md *msg, struct pd_sock *st, __u32 hold_ms)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(msg->sk);
	struct pd_held h = {}, *v;

	h.cookie = st->cookie;
	h.service = st->service;
	h.tgid = st->tgid;
	h.uid = st->uid;
	h.len = st->cur.msglen + msg->size;
	h.rule = st->held_rule;
	if (!tp || bpf_map_update_elem(&pd_held, &st->cookie, &h, BPF_ANY))
		return;                 /* full: it waits for its line's end */
	v = bpf_map_lookup_elem(&pd_held, &st->cookie);
	if (!v)
		return;
	/* nothing passes while the message is held: what the peer must
	 * acknowledge before an abort is known now */
	abort_describe(&v->doom, tp, st->judged_end);
	if (bpf_timer_init(&v->timer, &pd_held, 1 /* CLOCK_MONOTONIC */) ||
	    bpf_timer_set_callback(&v->timer, hold_timed_out))
		return;
	bpf_timer_start(&v->timer, (__u64)hold_ms * 1000000, 0);
}

/* Hold the rest of the sk_msg (a message's unfinished end) back: take
 * it out of the send and keep it in pd_bytes, to be put back in front
 * of the next bytes the socket sends (hold_restore) and judged with them;
 * nothing of it leaves meanwhile. The sender's send() succeeds, as for
 * any held message. Returns SK_PASS (nothing is left to pass), or -1
 * when it cannot be held (longer than PD_BYTES_MAX). */
static __always_inline int hold_msg(struct sk_msg_md *msg, struct pd_sock *st, __u32 hold_ms)
{
	__u32 n = msg->size;
	struct pd_bytes *b;
	void *data, *end;

	if (!n || n > PD_BYTES_MAX)
		return -1;
	b = bpf_sk_storage_get(&pd_bytes, msg->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!b || bpf_msg_pull_data(msg, 0, n, 0))
		return -1;
	data = (void *)(long)msg->data;
	end = (void *)(long)msg->data_end;
	n &= 2 * PD_BYTES_MAX - 1;
	if (n > PD_BYTES_MAX || data + n > end || bpf_probe_read_kernel(b->bytes, n, data))
		return -1;
	if (bpf_msg_pop_data(msg, 0, n, 0))
		return -1;
	b->len = n;
	b->kind = PD_BYTES_HELD;
	if (!st->held_since) {
		st->held_since = bpf_ktime_get_ns();
		hold_arm(msg, st, hold_ms);
	}
	st->cur = st->snap;
	ev_trouble(PD_TR_HELD);
	bpf_msg_cork_bytes(msg, 0);
	bpf_msg_apply_bytes(msg, 0);
	return SK_PASS;
}

/* Writing kept bytes into the sk_msg (no helper writes into it), 8 at a
 * time, from a callback. */
struct hold_restore {
	struct sk_msg_md *msg;
	const struct pd_bytes *b;
	__u32 n;
	__u32 err;
};

static long hold_restore_step(__u32 i, void *arg)
{
	struct hold_restore *u = arg;
	__u32 off = i * 8;
	__u8 *p = (__u8 *)(long)u->msg->data, *end = (__u8 *)(long)u->msg->data_end;

	if (off >= u->n)
		return 1;
	off &= PD_BYTES_MAX - 1;
	p += off;
	if (off + 8 <= u->n) {
		if (p + 8 > end) {
			u->err = 1;
			return 1;
		}
		*(__u64 *)p = *(const __u64 *)&u->b->bytes[off];
		return 0;
	}
	for (int k = 0; k < 7; k++) {
		if (off + k >= u->n)
			break;
		if (p + k + 1 > end || off + k >= PD_BYTES_MAX) {
			u->err = 1;
			return 1;
		}
		p[k] = u->b->bytes[off + k];
	}
	return 1;
}

/* Put held bytes back in front of this sk_msg, whose first byte is
 * sequence number seq. Returns 0, or -1 when the kernel could not make
 * room for them. */
static __always_inline int hold_restore(struct sk_msg_md *msg, __u32 seq)
{
	struct pd_bytes *b = bpf_sk_storage_get(&pd_bytes, msg->sk, 0, 0);
	struct hold_restore u = { .msg = msg };

	if (!b || b->kind != PD_BYTES_HELD)
		return 0;
	b->kind = PD_BYTES_NONE;
	b->held_end = seq + b->len;
	u.b = b;
	u.n = b->len;
	if (!u.n || u.n > PD_BYTES_MAX || bpf_msg_push_data(msg, 0, u.n, 0) ||
	    bpf_msg_pull_data(msg, 0, u.n, 0))
		return -1;
	bpf_loop(PD_BYTES_MAX / 8 + 1, hold_restore_step, &u, 0);
	return u.err ? -1 : 0;
}

#endif /* PD_HOLD_H */
