/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The wire: the socket's TCP stream against what was judged. How much
 * the send buffer takes now, whether another thread is inside a send,
 * and a send the kernel cut short, followed through the bytes kept in
 * pd_bytes. Names: wire_. Included by policyd.bpf.c only, after tail.h
 * and proto.bpf.h.
 */
#ifndef PD_WIRE_H
#define PD_WIRE_H

/* Whether a thread other than ours is inside a send on this socket with
 * bytes judged and not yet queued: one waits for room in the send buffer
 * (sk_stream_wait_memory(), with the socket lock released, counts it in
 * sk_write_pending until it holds the lock again). Threads that wait for
 * the lock itself are not counted: a sender there has had nothing judged
 * yet, and a reader (recv() in another thread) has nothing to do with
 * the stream sent. */
static __always_inline int wire_others_inside(const struct sock *sk)
{
	return sk->sk_write_pending > 0;
}

/* Bytes TCP takes from a push now without waiting for room in the send
 * buffer, at least: its buffer limit, TCP_NOTSENT_LOWAT, memory pressure.
 * A lower bound with a margin for the queue's own overhead: an estimate
 * too high costs a refused connection (the bytes left behind cannot be
 * followed), never an unjudged byte.
 *
 * The buffer limit counts each queued skb's true size: its data and at
 * most WIRE_SKB_COST bytes besides (the sk_buff pair, the shared info,
 * the header room: about 770 on 6.18 x86_64). TCP cuts a push into skbs
 * of at least one segment (mss_cache, less the options) but for the
 * last, and splits them at segment boundaries when it sends, so pushed
 * bytes cost at most (seg + WIRE_SKB_COST) / seg times themselves; the
 * slack covers the skbs a push leaves short of a segment. Where the
 * peer's window is small, so is the segment (at most half the largest
 * window the peer offered): a 4 KiB window gives 2 KiB segments, whose
 * overhead fills the buffer long before the data does. */
#define WIRE_ROOM_SLACK 16384
#define WIRE_SKB_COST 2048
static __always_inline __u32 wire_room(const struct tcp_sock *tp)
{
	const struct sock *sk = (const void *)tp;
	long room = (long)sk->sk_sndbuf - (long)sk->sk_wmem_queued - WIRE_ROOM_SLACK;
	__u32 lowat = tp->notsent_lowat, unsent = tp->write_seq - tp->snd_nxt;
	const struct net *net = sk->__sk_common.skc_net.net;
	const struct proto *prot = sk->__sk_common.skc_prot;
	unsigned long pressure = 0, *mp;
	__u64 seg = tp->mss_cache;

	if (room <= 0)
		return 0;
	room -= room >> 3;
	/* TCP options take up to 40 bytes of a segment */
	seg = seg > 128 ? seg - 64 : 64;
	room = (__u64)room * seg / (seg + WIRE_SKB_COST);
	if (!lowat && net)
		lowat = net->ipv4.sysctl_tcp_notsent_lowat;
	if (lowat && lowat != 0xffffffffu) {
		if (unsent >= lowat)
			return 0;
		if (room > lowat - unsent - 1)
			room = lowat - unsent - 1;
	}
	mp = prot ? prot->memory_pressure : NULL;
	if (mp && !bpf_probe_read_kernel(&pressure, sizeof(pressure), mp) && pressure)
		return 0;
	return room > 0x7fffffff ? 0x7fffffff : (__u32)room;
}

/* Walking kept bytes (pd_bytes) from a callback. */
struct wire_follow {
	struct pd_match *m;
	const struct pd_classmap *cm;
	const struct pd_bytes *b;
	__u32 resume;
	__u32 line;
	__u32 n;
	__u32 left;             /* bytes still inside the inspect window */
	__u32 err;
};

static long wire_follow_step(__u32 i, void *arg)
{
	struct wire_follow *f = arg;

	if (i >= f->n || !f->left)
		return 1;
	f->left--;
	if (pd_byte(f->m, f->cm, f->line, f->resume, f->b->bytes[i & (PD_BYTES_MAX - 1)],
		    NULL) < 0) {
		f->err = 1;
		return 1;
	}
	return 0;
}

/* The piece of a push the kernel cut short at wseq, as pd_bytes kept it:
 * 0 with its socket's state (cur set back to where the stream stood
 * before the piece), the kept bytes and k, how many of them left; -1
 * when they were not kept. */
static __always_inline int wire_cut_piece(struct sk_msg_md *msg, __u32 wseq, struct pd_sock **stp,
					  struct pd_bytes **bp, __u32 *kp)
{
	struct pd_bytes *b;
	struct pd_sock *st;
	__u32 k;

	if (!msg || !msg->sk)
		return -1;
	st = bpf_sk_storage_get(&pd_sk, msg->sk, 0, 0);
	b = bpf_sk_storage_get(&pd_bytes, msg->sk, 0, 0);
	if (!st || !b || b->kind != PD_BYTES_RISK)
		return -1;
	k = wseq - b->seq;
	if (k >= b->len || k > PD_BYTES_MAX)
		return -1;
	st->cur = b->from;
	*stp = st;
	*bp = b;
	*kp = k;
	return 0;
}

/* The piece cut short was followed: the stream is judged up to wseq. */
static __always_inline void wire_followed(struct pd_sock *st, struct pd_bytes *b, __u32 wseq)
{
	st->judged_end = wseq;
	st->replay = 0;
	b->kind = PD_BYTES_NONE;
	ev_trouble(PD_TR_RESYNC);
}

/* The kernel pushed only the first k bytes of the last piece (kept in
 * pd_bytes): walk those from where the stream stood before the piece,
 * so that the stream is followed as it left. Returns 0, -1 when the
 * bytes were not kept, 1 under a protocol framing (wire_proto_resync).
 * Global: verified once. */
__noinline int wire_resync(struct sk_msg_md *msg, __u32 wseq)
{
	const struct pd_classmap *cm;
	const struct pd_service *svc;
	struct wire_follow f = {};
	struct pd_bytes *b;
	struct pd_sock *st;
	__u32 k, key;

	if (wire_cut_piece(msg, wseq, &st, &b, &k))
		return -1;
	key = lookup_sock_key(st);
	svc = bpf_map_lookup_elem(&pd_services, &key);
	cm = bpf_map_lookup_elem(&pd_classes, &key);
	if (!svc || !cm)
		return -1;
	if (PD_FRAME_IS_PROTO(svc->framing))
		return 1;       /* wire_proto_resync's */
	f.m = &st->cur.m;
	f.cm = cm;
	f.b = b;
	f.resume = svc->resume;
	f.line = svc->framing == PD_FRAME_LINE;
	f.n = k;
	f.left = 0xffffffff;
	if (svc->inspect)
		f.left = svc->inspect > st->cur.m.seen ? svc->inspect - st->cur.m.seen : 0;
	bpf_loop(PD_BYTES_MAX, wire_follow_step, &f, 0);
	if (f.err)
		return -1;
	if (f.line) {
		/* the line goes on: its end did not leave */
		st->cur.msglen += k;
		if (k)
			st->cur.in_msg = 1;
	} else {
		/* framing none: the send that was cut short is the message */
		pd_end(&st->cur.m, svc, st->cur.m.seen >= k);
		tail_keep_piece(msg, st, svc, b, k);
	}
	wire_followed(st, b, wseq);
	return 0;
}

/* wire_resync under a protocol framing (wire_resync returned 1): the
 * kept bytes through the parser (proto_follow). Not called from
 * wire_resync: on 6.1 its frame, the walk's and pd_msg's would exceed
 * the 512 bytes the verifier allows a chain of calls. Global: verified
 * once. */
__noinline int wire_proto_resync(struct sk_msg_md *msg, __u32 wseq)
{
	struct pd_bytes *b;
	struct pd_sock *st;
	__u32 k;

	if (wire_cut_piece(msg, wseq, &st, &b, &k) || proto_follow(st, b, k))
		return -1;
	wire_followed(st, b, wseq);
	return 0;
}

/* Moving kept bytes to the front of pd_bytes, from a callback. */
struct wire_move {
	struct pd_bytes *b;
	__u32 from;
	__u32 n;
};

static long wire_move_step(__u32 i, void *arg)
{
	struct wire_move *m = arg;

	if (i >= m->n)
		return 1;
	m->b->bytes[i & (PD_BYTES_MAX - 1)] = m->b->bytes[(m->from + i) & (PD_BYTES_MAX - 1)];
	return 0;
}

/* A push cut short at wseq was followed (wire_resync): where it was cut
 * inside bytes that had been held and were put back in front of the
 * send (the piece kept in pd_bytes begins with them), the rest of them
 * left with no one to send them again: the sender's count covered its
 * own bytes only, which it sends again. They are held again, to be put
 * back in front of its next send. Global: verified once. */
__noinline int wire_reheld(struct sk_msg_md *msg, __u32 wseq)
{
	struct wire_move m = {};
	struct pd_bytes *b;
	__u32 h, k;

	if (!msg || !msg->sk)
		return 0;
	b = bpf_sk_storage_get(&pd_bytes, msg->sk, 0, 0);
	if (!b)
		return 0;
	h = b->held_end - b->seq;
	k = wseq - b->seq;
	b->held_end = b->seq;           /* used once */
	if (h <= k || h > b->len || h > PD_BYTES_MAX)
		return 0;
	m.b = b;
	m.from = k;
	m.n = h - k;
	bpf_loop(PD_BYTES_MAX, wire_move_step, &m, 0);
	b->len = h - k;
	b->kind = PD_BYTES_HELD;
	ev_trouble(PD_TR_HELD);
	return 0;
}

/* The sequence number after the last byte an adopted socket had queued
 * when its adoption began: adopted_end counts bytes from the stream's
 * start as bytes_acked does, and snd_una - bytes_acked stays the same
 * while the peer acknowledges. */
static __always_inline __u32 wire_adopted_seq(const struct pd_sock *st, const struct tcp_sock *tp)
{
	return tp->snd_una - (__u32)tp->bytes_acked + (__u32)st->adopted_end;
}

/* Compare the socket's stream with what was judged before this run.
 * Returns 0 when every byte TCP queued so far was judged, in order
 * (after following a send that was cut short, where the bytes were
 * kept), else the cause (enum pd_trouble) that makes this send
 * unjudgeable. */
static __always_inline int wire_sync(struct sk_msg_md *msg, struct pd_sock *st,
				     const struct tcp_sock *tp)
{
	const struct sock *sk = (const void *)tp;
	__u32 wseq = tp->write_seq;
	__s32 d;
	int r;

	if (st->flags & PD_SK_UNSYNCED) {
		/* adopted: what was queued before its adoption began was not
		 * ours to judge; what a send under way then (or one made
		 * while it was adopted) queued since, no one judged */
		st->judged_end = wire_adopted_seq(st, tp);
		if ((__s32)(wseq - st->judged_end) < 0)
			st->judged_end = wseq;
		st->flags &= ~PD_SK_UNSYNCED;
	}
	d = (__s32)(wseq - st->judged_end);
	if (!d)
		return 0;
	if (d > 0) {
		/* queued without a verdict; after shutdown(SHUT_WR) the FIN
		 * took a sequence number, and no data can follow */
		if (sk->sk_shutdown & SEND_SHUTDOWN) {
			st->judged_end = wseq;
			return 0;
		}
		return PD_TR_UNJUDGED;
	}
	/* fewer bytes queued than were judged: another thread's send is
	 * still under way, or the last send was cut short */
	if (wire_others_inside(sk))
		return PD_TR_CONCURRENT;
	r = wire_resync(msg, wseq);
	if (r == 1)
		r = wire_proto_resync(msg, wseq);
	if (r)
		return PD_TR_CUT;
	wire_reheld(msg, wseq);
	return 0;
}

#endif /* PD_WIRE_H */
