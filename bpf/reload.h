/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Reloads: which policy slot judges a run, and a pattern split across a
 * reload judged by the policy it began under. Names: reload_. Included
 * by policyd.bpf.c only, after tail.h.
 */
#ifndef PD_RELOAD_H
#define PD_RELOAD_H

/* Walking the first bytes of a message from a callback. */
struct reload_carry {
	struct sk_msg_md *msg;
	struct pd_match m;
	const struct pd_classmap *cm;
	__u32 resume;
	__u32 n;
	__u32 err;
};

static long reload_carry_step(__u32 i, void *arg)
{
	struct reload_carry *c = arg;
	__u8 *p = (__u8 *)(long)c->msg->data, *end = (__u8 *)(long)c->msg->data_end;

	if (i >= c->n || c->m.deny || c->m.state == c->resume)
		return 1;
	p += i & (PD_MAX_PATTERN - 1);
	if (p + 1 > end || pd_byte(&c->m, c->cm, 0, c->resume, *p, NULL) < 0) {
		c->err = 1;
		return 1;
	}
	return 0;
}

/* Framing none, a new message after a reload: what the previous message
 * left half-matched is walked on through this one's first bytes in the
 * old slot's automaton, so that a pattern split across the reload is
 * judged by the policy it began under. Returns the old slot's deny rule
 * index when it completes one, 0 when none, -1 on an error. Global:
 * verified once. */
__noinline int reload_carry_over(struct sk_msg_md *msg)
{
	const struct pd_state_out *o;
	const struct pd_service *svc;
	struct reload_carry c = { .msg = msg };
	struct pd_sock *st;
	__u32 key, n;

	if (!msg || !msg->sk)
		return -1;
	st = bpf_sk_storage_get(&pd_sk, msg->sk, 0, 0);
	if (!st || st->service == PD_NO_SERVICE)
		return st ? 0 : -1;
	key = lookup_sock_key(st);
	svc = bpf_map_lookup_elem(&pd_services, &key);
	c.cm = bpf_map_lookup_elem(&pd_classes, &key);
	if (!svc || !c.cm)
		return -1;
	if (svc->framing != PD_FRAME_NONE || !svc->carry || st->cur.m.state == PD_NO_STATE)
		return 0;
	o = lookup_out(st->cur.m.state);
	if (!o)
		return -1;
	if (o->cont == svc->resume)
		return 0;
	n = msg->size < svc->carry ? msg->size : svc->carry;
	if (n > PD_MAX_PATTERN)
		n = PD_MAX_PATTERN;
	if (!n || bpf_msg_pull_data(msg, 0, n, 0))
		return n ? -1 : 0;
	c.m.state = o->cont;
	c.m.cont = PD_NO_STATE;
	c.resume = svc->resume;
	c.n = n;
	bpf_loop(PD_MAX_PATTERN, reload_carry_step, &c, 0);
	return c.err ? -1 : c.m.deny;
}

/* Which policy slot judges this run, after a reload. A message in
 * progress stays with the slot it began in while that slot is intact; a
 * new message moves to the active slot, its service found again by port
 * (a reload may reorder, add or remove services). A message whose slot
 * a second reload rewrote goes on under the active policy, from the
 * state its kept last bytes lead to (framing none: tail_rewalk), else from
 * where a message's middle starts.
 * Returns 0; 1 when the socket's port is no longer policed; 2 when the
 * old slot denies the message (reload_carry_over; the rule index in
 * st->run.ev_rule, st->cur.gen left on the old slot); -1 on an error. */
static __always_inline int reload_policy(struct sk_msg_md *msg, struct pd_sock *st)
{
	struct pd_config *c = lookup_config();
	__u32 gen, old = st->cur.gen & 1;
	int svc, r, lost = 1;

	if (!c)
		return -1;
	gen = c->active_gen & 1;
	if (st->cur.in_msg && c->slot_gen[old] == st->cur.slot_gen)
		return 0;
	if (!st->cur.in_msg && gen == old && c->slot_gen[gen] == st->cur.slot_gen)
		return st->service == PD_NO_SERVICE;
	if (!st->cur.in_msg && gen != old && c->slot_gen[old] == st->cur.slot_gen) {
		r = reload_carry_over(msg);
		if (r) {
			st->run.ev_rule = r > 0 ? (__u16)r : 0;
			return r > 0 ? 2 : -1;
		}
		lost = 0;
	}
	st->cur.gen = gen;
	st->cur.slot_gen = c->slot_gen[gen];
	st->cur.m.state = PD_NO_STATE;
	st->cur.m.cont = PD_NO_STATE;
	st->cur.m.cont_left = 0;
	st->cur.m.deny = st->cur.m.redirect = st->cur.m.allow = st->cur.m.audit = 0;
	svc = lookup_service_by_port(st->rport, st->lport, gen, !(st->flags & PD_SK_ACTIVE));
	st->service = svc < 0 ? PD_NO_SERVICE : (__u32)svc;
	if (svc < 0)
		return 1;
	if (lost && (st->tail_len || st->cur.in_msg) && tail_rewalk(msg))
		return -1;
	return 0;
}

#endif /* PD_RELOAD_H */
