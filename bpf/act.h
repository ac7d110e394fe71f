/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Verdicts carried out on an sk_msg: bytes let out (a redirect to the
 * socket itself, piece by piece through pd_replay when the send buffer
 * is short), dropped, diverted to a sink, or a send refused that cannot
 * be judged. Names: act_. Included by policyd.bpf.c only, after
 * wire.h.
 */
#ifndef PD_ACT_H
#define PD_ACT_H

/* Let bytes out on this socket: apply of them (0: the rest of the
 * sk_msg). By a redirect to the socket itself, not a plain pass: on a
 * redirect the kernel forgets the verdict before it pushes, so bytes it
 * then cannot push (a non-blocking send that meets a full buffer, a
 * signal) leave no verdict behind, which it would apply to the next
 * send unjudged. The next run finds them missing (wire_sync). A
 * redirect also replaces any earlier target of the same sk_msg (a sink). */
static __always_inline int act_push(struct sk_msg_md *msg, struct pd_sock *st, __u32 apply)
{
	__u64 self = st->cookie;

	bpf_msg_cork_bytes(msg, 0);
	bpf_msg_apply_bytes(msg, apply);
	return bpf_msg_redirect_hash(msg, &pd_sockets, &self, 0);
}

/* Drop or divert. Every run sets apply and cork bytes itself: the kernel
 * keeps the values of an earlier run on the same sk_msg. */
static __always_inline int act_block(struct sk_msg_md *msg, struct pd_sock *st,
				     const struct tcp_sock *tp, __u32 verdict, __u32 rule,
				     __u32 apply)
{
	__u32 rk = pd_rule_key(st->cur.gen & 1, rule & 0xffff);
	struct pd_rule *r;

	bpf_msg_cork_bytes(msg, 0);
	bpf_msg_apply_bytes(msg, apply);
	if (verdict == PD_V_DENY) {
		abort_conn(st, tp, st->judged_end);
		return SK_DROP;
	}
	r = bpf_map_lookup_elem(&pd_rules, &rk);
	return bpf_msg_redirect_map(msg, &pd_sinks,
				    (st->cur.gen & 1) * PD_MAX_SINKS + (r ? r->sink : 0),
				    BPF_F_INGRESS);
}

/* A send that cannot be judged. Closed: refused, logged once, the
 * connection aborted. Open: logged, and the stream taken as it stands.
 * Returns the verdict, or -1 to go on judging. */
static __always_inline int act_refuse(struct sk_msg_md *msg, struct pd_sock *st,
				      const struct tcp_sock *tp, __u32 cause)
{
	ev_trouble(cause);
	st->run.ev_rule = 0;
	st->run.ev_len = msg->size;
	st->run.ev_bytes = msg->size;
	st->run.ev_cause = (__u8)cause;
	if (lookup_fail_open()) {
		st->run.ev_verdict = PD_V_UNJUDGED;
		ev_send(msg);
		st->judged_end = tp->write_seq;
		st->replay = 0;
		return -1;
	}
	st->cause = (__u8)cause;
	st->run.ev_verdict = PD_V_REFUSE;
	ev_send(msg);
	abort_conn(st, tp, st->judged_end);
	bpf_msg_cork_bytes(msg, 0);
	bpf_msg_apply_bytes(msg, 0);
	return SK_DROP;
}

/* Go on in pd_replay. */
static __always_inline int act_replay(struct sk_msg_md *msg, struct pd_sock *st,
				      const struct tcp_sock *tp)
{
	bpf_tail_call(msg, &pd_progs, 0);
	/* not loaded: nothing judged can leave */
	ev_trouble(PD_TR_TABLES);
	abort_conn(st, tp, st->judged_end);
	return SK_DROP;
}

/* Let a decided range of apply bytes (0: the rest of the sk_msg) out:
 * at once when the send buffer takes it, else piece by piece
 * (pd_replay), walked again from where this run's walk began. */
static __always_inline int act_pass(struct sk_msg_md *msg, struct pd_sock *st,
				    const struct tcp_sock *tp, __u32 apply)
{
	__u32 n = apply ? apply : msg->size;

	if (n <= wire_room(tp)) {
		st->judged_end += n;
		return act_push(msg, st, apply);
	}
	/* swap (snap is free once a run decides: it serves holds only) */
	st->snap = st->cur;
	st->cur = st->alt;
	st->alt = st->snap;
	st->replay = n;
	return act_replay(msg, st, tp);
}

#endif /* PD_ACT_H */
