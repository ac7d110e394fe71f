/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Connections to abort: what the daemon's aborter needs to find a
 * socket (pd_doomed), read from the kernel's socket through the CO-RE
 * types of pd_kern.h, and the mark that drops every later send. Names:
 * abort_. Included by policyd.bpf.c only, after events.h.
 */
#ifndef PD_ABORT_H
#define PD_ABORT_H

/* The socket as the aborter finds it, and how far its peer must have
 * acknowledged the stream before the abort (an abort discards what is
 * still queued): up to end, the sequence number after the last byte let
 * out before the drop, and no further than what is queued. */
static __always_inline void abort_describe(struct pd_doomed *d, const struct tcp_sock *tp,
					   __u32 end)
{
	const struct sock_common *c = &((const struct sock *)tp)->__sk_common;
	__u32 unacked = end - tp->snd_una, queued = tp->write_seq - tp->snd_una;
	const struct net *net = c->skc_net.net;

	if ((__s32)unacked < 0)
		unacked = 0;
	if (unacked > queued)
		unacked = queued;
	d->acked = tp->bytes_acked + unacked;
	d->netns = net ? net->net_cookie : 0;
	d->family = (__u8)c->skc_family;
	if (c->skc_family == AF_INET6) {
		d->saddr[0] = c->skc_v6_rcv_saddr.in6_u.u6_addr32[0];
		d->saddr[1] = c->skc_v6_rcv_saddr.in6_u.u6_addr32[1];
		d->saddr[2] = c->skc_v6_rcv_saddr.in6_u.u6_addr32[2];
		d->saddr[3] = c->skc_v6_rcv_saddr.in6_u.u6_addr32[3];
		d->daddr[0] = c->skc_v6_daddr.in6_u.u6_addr32[0];
		d->daddr[1] = c->skc_v6_daddr.in6_u.u6_addr32[1];
		d->daddr[2] = c->skc_v6_daddr.in6_u.u6_addr32[2];
		d->daddr[3] = c->skc_v6_daddr.in6_u.u6_addr32[3];
	} else {
		d->saddr[0] = c->skc_rcv_saddr;
		d->daddr[0] = c->skc_daddr;
	}
	d->sport = c->skc_num;
	d->dport = bpf_ntohs(c->skc_dport);
	d->ifindex = (__u32)c->skc_bound_dev_if;
}

/* Put a doomed connection in pd_doomed. Where it has no room (more
 * doomed connections open than it holds), counted once, and tried again
 * at the socket's next send (its entry made again then: the same
 * acknowledged count, a later time). */
static __always_inline void abort_record(struct pd_sock *st, const struct pd_doomed *d)
{
	long err = bpf_map_update_elem(&pd_doomed, &st->cookie, d, BPF_NOEXIST);

	if (!err)
		ev_trouble(PD_TR_ABORTS);
	if (!err || err == -17 /* EEXIST */) {
		st->flags |= PD_SK_DOOMED;
	} else if (!(st->flags & PD_SK_NOROOM)) {
		st->flags |= PD_SK_NOROOM;
		ev_trouble(PD_TR_ABORT_FULL);
	}
}

/* The connection is to be aborted, and every later send on it dropped:
 * once the peer acknowledged the stream up to end (abort_describe). tp NULL:
 * it cannot be named (not a TCP socket; never seen). */
static __always_inline void abort_conn(struct pd_sock *st, const struct tcp_sock *tp, __u32 end)
{
	struct pd_doomed *d;

	st->flags |= PD_SK_DEAD;
	if ((st->flags & PD_SK_DOOMED) || !tp)
		return;
	d = bpf_map_lookup_elem(&pd_doom_draft, (const void *)&pd_key0);
	if (!d)
		return;
	__builtin_memset(d, 0, sizeof(*d));     /* the last connection's */
	abort_describe(d, tp, end);
	d->when = bpf_ktime_get_ns();
	abort_record(st, d);
}

#endif /* PD_ABORT_H */
