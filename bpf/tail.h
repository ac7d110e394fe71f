/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kept tail: the stream's last bytes while a pattern may be half
 * matched, in the socket's tail_ring or, for a service that keeps more,
 * in pd_tail; walked again through the active policy's automaton when
 * two reloads rewrote the slot the socket's state belonged to. Names:
 * tail_. Included by policyd.bpf.c only, after lookup.h.
 */
#ifndef PD_TAIL_H
#define PD_TAIL_H

/* Where byte seq of the kept tail is: in pd_tail (t) when big, else in
 * the socket's tail_ring; NULL when that one is missing. */
static __always_inline __u8 *tail_byte(struct pd_sock *st, struct pd_tail *t, __u32 big,
				       __u32 seq)
{
	if (big)
		return t ? &t->bytes[seq & (PD_TAIL_MAX - 1)] : NULL;
	return st ? &st->tail_ring[seq & (PD_TAIL_SMALL - 1)] : NULL;
}

/* How many of the last bytes walked to keep for state o: those that lead
 * to it (its deepest pattern progress), at most the service's tail and
 * what pd_tail holds. */
static __always_inline __u32 tail_depth(const struct pd_state_out *o,
					const struct pd_service *svc)
{
	__u32 n = PD_SF_DEPTH(o->flags);

	if (n > svc->tail)
		n = svc->tail;
	if (n > PD_TAIL_MAX - 1)
		n = PD_TAIL_MAX - 1;
	return n;
}

/* The kept tail is the n bytes before sequence number end, in pd_tail
 * when big. */
static __always_inline void tail_kept(struct pd_sock *st, __u32 end, __u32 n, __u32 big)
{
	st->tail_seq = end;
	st->tail_len = (__u16)n;
	st->tail_big = (__u8)big;
}

/* Copying the last bytes of a kept piece into the socket's kept bytes,
 * from a callback. */
struct tail_piece {
	const struct pd_bytes *b;
	struct pd_sock *st;
	struct pd_tail *t;
	__u32 from;             /* index in b->bytes of the first byte */
	__u32 seq;              /* its sequence number */
	__u32 n;
	__u32 big;
};

static long tail_piece_step(__u32 i, void *arg)
{
	struct tail_piece *c = arg;
	__u8 *q;

	if (i >= c->n)
		return 1;
	q = tail_byte(c->st, c->t, c->big, c->seq + i);
	if (q)
		*q = c->b->bytes[(c->from + i) & (PD_BYTES_MAX - 1)];
	return 0;
}

/* Framing none, a send cut short after k bytes of the kept piece: what
 * tail_keep kept ends past where the stream stopped, so keep the bytes
 * that lead to the state there from the piece instead (at most k). */
static __always_inline void tail_keep_piece(struct sk_msg_md *msg, struct pd_sock *st,
					    const struct pd_service *svc, const struct pd_bytes *b,
					    __u32 k)
{
	const struct pd_state_out *o = lookup_out(st->cur.m.state);
	struct tail_piece c = { .b = b, .st = st };
	__u32 n;

	st->tail_len = 0;
	if (!o || !svc->tail || o->cont == svc->resume)
		return;
	n = tail_depth(o, svc);
	if (n > k)
		n = k;
	if (!n)
		return;
	c.big = svc->tail >= PD_TAIL_SMALL;
	if (c.big) {
		c.t = bpf_sk_storage_get(&pd_tail, msg->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!c.t)
			return;
	}
	c.from = k - n;
	c.seq = b->seq + k - n;
	c.n = n;
	bpf_loop(PD_TAIL_MAX, tail_piece_step, &c, 0);
	tail_kept(st, b->seq + k, n, c.big);
}

/* Copying the end of a message into the kept bytes, or walking them,
 * from a callback: pd_tail when big, else the socket's tail_ring. */
struct tail_walk {
	struct sk_msg_md *msg;
	struct pd_sock *st;
	struct pd_tail *t;
	struct pd_match m;
	const struct pd_classmap *cm;
	__u32 seq;              /* sequence number of the first byte */
	__u32 n;
	__u32 big;
	__u32 err;
};

static long tail_copy_step(__u32 i, void *arg)
{
	struct tail_walk *w = arg;
	__u8 *p = (__u8 *)(long)w->msg->data, *end = (__u8 *)(long)w->msg->data_end, *q;

	if (i >= w->n)
		return 1;
	p += i & (PD_TAIL_MAX - 1);
	if (p + 1 > end) {
		w->err = 1;
		return 1;
	}
	q = tail_byte(w->st, w->t, w->big, w->seq + i);
	if (q)
		*q = *p;
	else
		w->err = 1;
	return 0;
}

/* tail_keep for the usual case, inline: framing none, a service whose
 * kept bytes fit the socket's ring, a message readable whole from where
 * the program stands, at least as long as the bytes to keep. Returns 0
 * (done), -1 on an error, 1 when tail_keep must do it. */
static __always_inline int tail_keep_fast(struct sk_msg_md *msg, struct pd_sock *st,
					  const struct pd_service *svc)
{
	const struct pd_state_out *o = lookup_out(st->cur.m.state);
	__u8 *data = (__u8 *)(long)msg->data, *end = (__u8 *)(long)msg->data_end;
	__u32 n, size = msg->size, seq, i, off;

	if (!o)
		return -1;
	n = PD_SF_DEPTH(o->flags);
	if (!n || o->cont == svc->resume) {
		st->tail_len = 0;
		return 0;
	}
	if (n > svc->tail || svc->tail >= PD_TAIL_SMALL || n > size || size > 0x7fff ||
	    data + size != end)
		return 1;
	seq = st->judged_end + size - n;
	for (i = 0; i < PD_TAIL_SMALL - 1; i++) {
		if (i >= n)
			break;
		off = (size - n + i) & 0x7fff;
		if (data + off + 1 > end)
			return 1;
		st->tail_ring[(seq + i) & (PD_TAIL_SMALL - 1)] = data[off];
	}
	tail_kept(st, st->judged_end + size, n, 0);
	return 0;
}

/* Bytes that go out while a pattern may be half matched: under framing
 * none, a message that ends with one; under line framing, a line that
 * goes on past this send and is not held. Keep the stream's last bytes
 * (up to the service's tail, with those kept before when they join up,
 * and under line framing none before the line's start) in pd_tail, and
 * for a line the ids of the rules it matched, so that all of it survives
 * two reloads before the next send (tail_rewalk). Else keep nothing. Returns
 * 0, or -1 when the bytes could not be kept. Global: verified once. */
__noinline int tail_keep(struct sk_msg_md *msg)
{
	const struct pd_state_out *o;
	const struct pd_service *svc;
	struct tail_walk w = { .msg = msg };
	__u32 key, n, take, old, size;
	struct pd_sock *st;
	int line;

	if (!msg || !msg->sk)
		return -1;
	st = bpf_sk_storage_get(&pd_sk, msg->sk, 0, 0);
	if (!st)
		return -1;
	key = lookup_sock_key(st);
	svc = bpf_map_lookup_elem(&pd_services, &key);
	o = lookup_out(st->cur.m.state);
	if (!svc || !o)
		return -1;
	size = msg->size;
	line = svc->framing == PD_FRAME_LINE;
	if (!size)
		return 0;
	if (line && st->cur.in_msg) {
		st->tail_ids[0] = lookup_rule_id(st->cur.gen, st->cur.m.allow);
		st->tail_ids[1] = lookup_rule_id(st->cur.gen, st->cur.m.audit);
		st->tail_ids[2] = lookup_rule_id(st->cur.gen, st->cur.m.redirect);
	}
	n = tail_depth(o, svc);
	if (!n || (line ? !st->cur.in_msg : o->cont == svc->resume)) {
		st->tail_len = 0;
		return 0;
	}
	if (line && n > st->cur.msglen)
		n = st->cur.msglen;
	take = size < n ? size : n;
	w.big = svc->tail >= PD_TAIL_SMALL;
	/* the bytes kept before, when they end where this send begins */
	old = st->tail_seq == st->judged_end && st->tail_big == w.big ? st->tail_len : 0;
	if (old > n - take)
		old = n - take;
	st->tail_len = 0;
	w.st = st;
	if (w.big) {
		w.t = bpf_sk_storage_get(&pd_tail, msg->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!w.t)
			return -1;
	}
	if (bpf_msg_pull_data(msg, size - take, size, 0))
		return -1;
	w.seq = st->judged_end + size - take;
	w.n = take;
	bpf_loop(PD_TAIL_MAX, tail_copy_step, &w, 0);
	if (w.err)
		return -1;
	tail_kept(st, st->judged_end + size, old + take, w.big);
	return 0;
}

static long tail_walk_step(__u32 i, void *arg)
{
	struct tail_walk *w = arg;
	const __u8 *q;

	if (i >= w->n)
		return 1;
	q = tail_byte(w->st, w->t, w->big, w->seq + i);
	if (!q || pd_byte(&w->m, w->cm, 0, PD_NO_STATE, *q, NULL) < 0) {
		w->err = 1;
		return 1;
	}
	return 0;
}

/* After two reloads rewrote the policy slot this socket's matching state
 * belonged to before this send: walk the bytes kept in pd_tail through
 * the active policy's automaton. Framing none: the half match, if the
 * active policy has it too, goes on into this message (pd_begin); what
 * completes inside the kept bytes went out before and is not acted on.
 * Line framing: from the line's start when every byte of it so far was
 * kept (else from where a message's middle starts), what it matches
 * counts for the line, and the rules it matched before are found again
 * by id. Sets st->cur.m; returns 0, or -1 on an error. Global: verified
 * once. */
__noinline int tail_rewalk(struct sk_msg_md *msg)
{
	const struct pd_service *svc;
	struct tail_walk w = { .msg = msg };
	struct pd_sock *st;
	__u32 key, d;
	int line;

	if (!msg || !msg->sk)
		return -1;
	st = bpf_sk_storage_get(&pd_sk, msg->sk, 0, 0);
	if (!st)
		return -1;
	key = lookup_sock_key(st);
	svc = bpf_map_lookup_elem(&pd_services, &key);
	w.cm = bpf_map_lookup_elem(&pd_classes, &key);
	if (!svc || !w.cm)
		return -1;
	line = svc->framing == PD_FRAME_LINE;
	if (line != st->cur.in_msg || !svc->tail)
		return 0;
	/* a send cut short ended the stream before the kept bytes did */
	d = st->tail_seq - st->judged_end;
	w.n = d < st->tail_len ? st->tail_len - d : 0;
	/* past the inspect window the line's bytes are not matched */
	if (line && svc->inspect && st->cur.msglen > svc->inspect)
		w.n = 0;
	w.m.state = svc->resume;
	if (line && st->cur.msglen <= w.n)
		w.m.state = svc->start;
	w.m.cont = PD_NO_STATE;
	if (w.n) {
		w.st = st;
		w.big = st->tail_big;
		if (w.big) {
			w.t = bpf_sk_storage_get(&pd_tail, msg->sk, 0, 0);
			if (!w.t)
				return -1;
		}
		w.seq = st->judged_end - w.n;
		bpf_loop(PD_TAIL_MAX, tail_walk_step, &w, 0);
		if (w.err)
			return -1;
	}
	st->cur.m.state = w.m.state;
	if (!line)
		return 0;
	st->cur.m.deny = w.m.deny;
	st->cur.m.allow = w.m.allow ? w.m.allow : lookup_rule_by_id(st->cur.gen, st->service,
							      st->tail_ids[0]);
	st->cur.m.audit = w.m.audit ? w.m.audit : lookup_rule_by_id(st->cur.gen, st->service,
							      st->tail_ids[1]);
	st->cur.m.redirect = w.m.redirect ? w.m.redirect :
			     lookup_rule_by_id(st->cur.gen, st->service, st->tail_ids[2]);
	return 0;
}

#endif /* PD_TAIL_H */
