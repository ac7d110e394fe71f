/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Reading the policy in the maps: the settings (pd_config), the service
 * of a port, a state's transition row and what entering it reports
 * (which is what pd_match.h is given to walk), a rule by index or by id.
 * Names: lookup_. Included by policyd.bpf.c only, after maps.h.
 */
#ifndef PD_LOOKUP_H
#define PD_LOOKUP_H

/* The transition row of a global state (slot 1's states follow slot
 * 0's), or NULL past the slot's last row. */
static __always_inline const __u32 *lookup_row(__u32 state)
{
	__u32 gen = state >= pd_slot_states;
	__u64 off = (__u64)(state - gen * pd_slot_states) << pd_row_shift;
	const __u8 *tab;

	if (off > pd_slot_last_row)
		return NULL;
	tab = bpf_map_lookup_elem(&pd_trans, &gen);
	return tab ? (const __u32 *)(tab + off) : NULL;
}

/* What entering a global state reports, or NULL. */
static __always_inline const struct pd_state_out *lookup_out(__u32 state)
{
	return bpf_map_lookup_elem(&pd_outs, &state);
}

/* The state an entry of state from's row leads to: entries are row
 * offsets within the slot's table (see pd_trans). */
static __always_inline __u32 lookup_target(__u32 from, __u32 t)
{
	__u32 base = from >= pd_slot_states ? pd_slot_states : 0;

	return ((t & PD_T_STATE) >> pd_row_shift) + base;
}

#define PD_ROW(ctx, st) lookup_row(st)
#define PD_TARGET(ctx, st, t) lookup_target(st, t)
#define PD_OUT(ctx, st) lookup_out(st)
#define PD_ROW_MASK(ctx) pd_row_mask
#include "pd_match.h"

/* The daemon's settings (pd_config), or NULL. */
static __always_inline struct pd_config *lookup_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&pd_config, &zero);
}

/* The policy slot new messages are judged by. */
static __always_inline __u32 lookup_active_gen(void)
{
	struct pd_config *c = lookup_config();

	return c ? (c->active_gen & 1) : 0;
}

/* The generation policy slot gen holds (0 while being rewritten). */
static __always_inline __u32 lookup_slot_gen(__u32 gen)
{
	struct pd_config *c = lookup_config();

	return c ? c->slot_gen[gen & 1] : 0;
}

/* Monitor mode (pd_config.mode): denies and redirects are logged and
 * counted as would-be, and the message passes. */
static __always_inline __u8 lookup_monitor(void)
{
	struct pd_config *c = lookup_config();

	return c && c->mode == PD_MODE_MONITOR;
}

/* daemon.fail_mode = "open": what cannot be judged passes (logged) */
static __always_inline int lookup_fail_open(void)
{
	struct pd_config *c = lookup_config();

	return c && c->fail_open;
}

/* The key of the socket's service (and its class map) in the policy slot
 * of its message in progress. */
static __always_inline __u32 lookup_sock_key(const struct pd_sock *st)
{
	return pd_service_key(st->cur.gen & 1, st->service & (PD_MAX_SERVICES - 1));
}

/* The service a connection belongs to: remote port for "to", local port
 * for "from", in host byte order. Where both name a service, the one of
 * the connection's own side wins: "from" for one it accepted (its local
 * port is its server's), "to" for one it made; never the port the peer
 * chose (a client that connects from another service's "to" port must
 * not choose how a server's replies are judged). Returns -1 when it is
 * not policed. */
static __always_inline int lookup_service_by_port(__u16 rport, __u16 lport, __u32 gen,
						  int accepted)
{
	struct pd_port_key k = { .gen = (__u8)gen };
	__u32 *svc;

	k.port = accepted ? lport : rport;
	k.dir = accepted ? PD_DIR_FROM : PD_DIR_TO;
	svc = bpf_map_lookup_elem(&pd_ports, &k);
	if (svc)
		return *svc;
	k.port = accepted ? rport : lport;
	k.dir = accepted ? PD_DIR_TO : PD_DIR_FROM;
	svc = bpf_map_lookup_elem(&pd_ports, &k);
	return svc ? (int)*svc : -1;
}

/* The id of rule index i of policy slot gen, 0 for none. */
static __always_inline __u16 lookup_rule_id(__u32 gen, __u32 i)
{
	__u32 key = pd_rule_key(gen & 1, i & 0xffff);
	const struct pd_rule *r;

	if (!i)
		return 0;
	r = bpf_map_lookup_elem(&pd_rules, &key);
	return r ? r->id : 0;
}

/* Finding a rule of a service by its id in a policy slot. */
struct lookup_rule_find {
	__u32 base;             /* the slot's first key in pd_rules */
	__u32 service;
	__u16 id;
	__u16 index;            /* found: its index */
};

static long lookup_rule_find_step(__u32 i, void *arg)
{
	struct lookup_rule_find *f = arg;
	__u32 key = f->base + i + 1;
	const struct pd_rule *r = bpf_map_lookup_elem(&pd_rules, &key);

	if (!r || !r->id)
		return 1;       /* past the slot's last rule */
	if (r->id != f->id || r->service != f->service)
		return 0;
	f->index = (__u16)(i + 1);
	return 1;
}

/* The index of rule id in the active slot gen, for service svc; 0 when
 * the policy has no such rule for it. */
static __always_inline __u16 lookup_rule_by_id(__u32 gen, __u32 svc, __u16 id)
{
	struct lookup_rule_find f = { .base = pd_rule_key(gen & 1, 0), .service = svc, .id = id };

	if (!id)
		return 0;
	bpf_loop(PD_MAX_RULES, lookup_rule_find_step, &f, 0);
	return f.index;
}

#endif /* PD_LOOKUP_H */
