/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the sk_msg program does with the outcome of a walk under a
 * protocol framing (proto_run, proto.bpf.h): the same exits as every
 * framing (ev_decided, ev_emit, act_block, hold_msg, act_pass). Included by
 * policyd.bpf.c just before pd_msg, where those exist.
 *
 * Monitor mode holds nothing and stops nothing: a message is judged at
 * its end (proto_tail walks on), logged as would-be, and passes.
 */
#ifndef PD_PROTO_MSG_BPF_H
#define PD_PROTO_MSG_BPF_H

/* A malformed message: counted, logged as rule=malformed. */
static __always_inline void proto_malformed(struct sk_msg_md *msg, struct pd_sock *st, __u32 size)
{
	ev_trouble(PD_TR_MALFORMED);
	st->run.ev_cause = PD_TR_MALFORMED;
	st->run.ev_verdict = PD_V_DENY;
	st->run.ev_rule = 0;
	st->run.ev_len = st->cur.msglen;
	st->run.ev_bytes = size;
	ev_send(msg);
}

/* Act on what proto_run found. */
static __always_inline int proto_msg(struct sk_msg_md *msg, struct pd_sock *st,
				     const struct tcp_sock *tp, const struct pd_service *svc)
{
	__u32 size = msg->size, verdict = PD_V_PASS, rule = 0, apply = 0;
	int r;

	if (!st->cur.in_msg)
		__builtin_memset(&st->cur.parse, 0, sizeof(st->cur.parse));
	if (proto_run(msg, st, 0))
		return -1;
	/* st->run.used read where needed, not kept: one live value less in
	 * pd_msg's frame, which 6.1 adds to the walk's */
	switch (st->run.outcome) {
	case PD_PO_PASS:
		apply = st->run.used < size ? st->run.used : 0;
		break;
	case PD_PO_ENDED:
		verdict = pd_verdict(&st->cur.m, svc, &rule);
		ev_decided(msg, st, verdict, rule, st->cur.msglen, st->run.used);
		st->cur.msglen = 0;
		__builtin_memset(&st->cur.parse, 0, sizeof(st->cur.parse));
		if ((verdict != PD_V_DENY || st->run.monitor) && st->run.used < size)
			apply = st->run.used;
		break;
	case PD_PO_DENY:
		verdict = pd_verdict(&st->cur.m, svc, &rule);
		ev_decided(msg, st, verdict, rule, st->cur.msglen, size);
		break;
	case PD_PO_BAD:
		/* what Redis (or memcached, or the web server) would read some
		 * other way than it was judged, or refuse */
		proto_malformed(msg, st, size);
		verdict = PD_V_DENY;
		break;
	case PD_PO_HOLD:
		st->held_rule = hold_rule(st, svc, st->run.hold_why);
		r = hold_msg(msg, st, svc->hold_ms);
		if (r >= 0)
			return r;
		/* longer than can be held: an allow list's message not allowed
		 * within it is refused; another leaves as it comes */
		ev_trouble(PD_TR_HOLD_FULL);
		if ((svc->hold & PD_HOLD_ALLOWLIST) && !st->cur.m.allow && !st->cur.m.redirect) {
			ev_decided(msg, st, PD_V_DENY, 0, st->cur.msglen, size);
			verdict = PD_V_DENY;
		}
		break;
	case PD_PO_REDIRECT:
		verdict = pd_verdict(&st->cur.m, svc, &rule);
		ev_emit(msg, st, verdict, rule, st->cur.msglen, size);
		break;
	default:
		return -1;
	}
	hold_disarm(st);
	if (st->run.monitor && (st->run.outcome == PD_PO_DENY || st->run.outcome == PD_PO_BAD)) {
		/* a malformed message: the server drops the connection or
		 * skips the line; what follows is read as new messages */
		pd_begin(&st->cur.m, svc, NULL);
		__builtin_memset(&st->cur.parse, 0, sizeof(st->cur.parse));
		st->cur.msglen = 0;
		st->cur.in_msg = 0;
		apply = 0;
	}
	if ((verdict == PD_V_DENY || verdict == PD_V_REDIRECT) && !st->run.monitor)
		return act_block(msg, st, tp, verdict, rule, apply);
	return act_pass(msg, st, tp, apply);
}

#endif
