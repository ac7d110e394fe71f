/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the data plane tells the daemon: the trouble counters, the
 * per-rule counters, the events in pd_events (from the sk_msg program,
 * and from the cgroup programs for a socket), and the diverted bytes of
 * a redirect in pd_sink_data. Names: ev_. Included by policyd.bpf.c
 * only, after maps.h.
 */
#ifndef PD_EVENTS_H
#define PD_EVENTS_H

/* One more of trouble cause what (enum pd_trouble). */
static __always_inline void ev_trouble(__u32 what)
{
	__u64 *c = bpf_map_lookup_elem(&pd_trouble, &what);

	if (c)
		*c += 1;
}

/* A message of bytes decided by counter slot (a rule id or a service's
 * default), as would-be when monitor mode let it pass. */
static __always_inline void ev_count(__u32 slot, __u32 bytes, int would)
{
	struct pd_counter *c = bpf_map_lookup_elem(&pd_counters, &slot);

	if (c && would) {
		c->would_msgs += 1;
		c->would_bytes += bytes;
	} else if (c) {
		c->msgs += 1;
		c->bytes += bytes;
	}
}

struct ev_divert {
	struct sk_msg_md *msg;
	struct pd_sink_piece *p;
	__u32 bytes;
};

/* Piece i of the diverted bytes into pd_sink_data. */
static long ev_divert_piece(__u32 i, void *arg)
{
	struct ev_divert *dv = arg;
	struct pd_sink_piece *p = dv->p;
	__u32 off = i * PD_SINK_PIECE, n;

	if (off >= dv->bytes)
		return 1;
	n = dv->bytes - off;
	if (n > PD_SINK_PIECE)
		n = PD_SINK_PIECE;
	if (bpf_msg_pull_data(dv->msg, off, off + n, 0) ||
	    bpf_probe_read_kernel(p->data, n, (void *)(long)dv->msg->data))
		return 1;
	p->off = off;
	p->len = n;
	/* a piece the ring buffer has no room for is missing from the
	 * record, which says so */
	bpf_ringbuf_output(&pd_sink_data, p, __builtin_offsetof(struct pd_sink_piece, data) + n, 0);
	return 0;
}

/* Copy the first bytes (at most PD_SINK_KEEP) of what this redirect
 * diverts, in pieces numbered seq. */
__noinline int ev_divert_copy(struct sk_msg_md *msg, __u64 seq, __u32 gen, __u32 sink,
			      __u32 bytes)
{
	struct ev_divert dv = { .msg = msg, .bytes = bytes };
	__u32 zero = 0;

	dv.p = bpf_map_lookup_elem(&pd_sink_buf, &zero);
	if (!msg || !dv.p)
		return -1;
	if (dv.bytes > PD_SINK_KEEP)
		dv.bytes = PD_SINK_KEEP;
	dv.p->seq = seq;
	dv.p->gen = (__u8)gen;
	dv.p->sink = (__u8)sink;
	bpf_loop(PD_SINK_KEEP / PD_SINK_PIECE, ev_divert_piece, &dv, 0);
	return 0;
}

/* The sending task's name, read through the task (CO-RE: comm's offset
 * is the running kernel's): sk_msg programs may call bpf_get_current_comm
 * only on kernels after 6.12 (6.12 refuses it, 7.3 allows it), but
 * bpf_get_current_task and bpf_probe_read_kernel on every kernel policyd
 * runs on. */
struct task_struct {
	char comm[16];
} __attribute__((preserve_access_index));

/* Send the event described by st->run.ev_* to the daemon, and for a
 * redirect the bytes it diverts. Global, so the verifier checks it once
 * however many paths lead here. */
__noinline int ev_send(struct sk_msg_md *msg)
{
	struct task_struct *task;
	__u32 zero = 0, ex = 0, avail, gen, rk, sink = 0, key;
	const struct pd_service *svc;
	struct pd_rule *r, *exr = NULL;
	struct pd_event *e;
	struct pd_sock *st;
	__u64 id, seq = 0, *next;

	if (!msg || !msg->sk)
		return -1;
	st = bpf_sk_storage_get(&pd_sk, msg->sk, 0, 0);
	if (!st)
		return -1;
	avail = msg->size;
	gen = st->cur.gen & 1;
	/* monitor mode diverts nothing: no bytes for the sink */
	if (st->run.ev_verdict == PD_V_REDIRECT && !st->run.monitor) {
		rk = pd_rule_key(gen, st->run.ev_rule);
		r = bpf_map_lookup_elem(&pd_rules, &rk);
		sink = r ? r->sink : 0;
		next = bpf_map_lookup_elem(&pd_sink_seq, &zero);
		if (next)
			seq = __sync_fetch_and_add(next, 1) + 1;
	}
	e = bpf_ringbuf_reserve(&pd_events, sizeof(*e), 0);
	if (!e) {
		ev_trouble(PD_TR_RINGBUF);
		goto divert;
	}
	e->sink_seq = seq;
	e->gen = (__u8)gen;
	id = bpf_get_current_pid_tgid();
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->cgroup_id = bpf_get_current_cgroup_id();
	task = (struct task_struct *)bpf_get_current_task();
	bpf_probe_read_kernel(e->comm, sizeof(e->comm), task->comm);
	e->len = st->run.ev_len;
	e->bytes = st->run.ev_bytes;
	e->service = st->service;
	e->verdict = st->run.ev_verdict;
	e->cause = st->run.ev_cause;
	e->monitor = st->run.monitor && e->verdict >= PD_V_REDIRECT && e->verdict <= PD_V_DENY;
	e->rule_id = 0;
	e->audit_id = 0;
	e->sink = 0;
	e->audit = st->cur.m.audit ? 1 : 0;
	rk = pd_rule_key(gen, st->run.ev_rule);
	r = st->run.ev_rule ? bpf_map_lookup_elem(&pd_rules, &rk) : NULL;
	if (r) {
		e->rule_id = r->id;
		e->sink = r->sink;
		exr = r;
	}
	rk = pd_rule_key(gen, st->cur.m.audit);
	r = st->cur.m.audit ? bpf_map_lookup_elem(&pd_rules, &rk) : NULL;
	if (r) {
		e->audit_id = r->id;
		/* an audit line names the audit rule: its excerpt */
		if (e->verdict == PD_V_PASS)
			exr = r;
	}
	e->family = (__u8)msg->family;
	if (msg->family == AF_INET6) {
		e->saddr[0] = msg->local_ip6[0];
		e->saddr[1] = msg->local_ip6[1];
		e->saddr[2] = msg->local_ip6[2];
		e->saddr[3] = msg->local_ip6[3];
		e->daddr[0] = msg->remote_ip6[0];
		e->daddr[1] = msg->remote_ip6[1];
		e->daddr[2] = msg->remote_ip6[2];
		e->daddr[3] = msg->remote_ip6[3];
	} else {
		e->saddr[0] = msg->local_ip4;
		e->daddr[0] = msg->remote_ip4;
		e->saddr[1] = e->saddr[2] = e->saddr[3] = 0;
		e->daddr[1] = e->daddr[2] = e->daddr[3] = 0;
	}
	e->sport = (__u16)msg->local_port;
	e->dport = bpf_ntohl(msg->remote_port) & 0xffff;
	/* the rule's excerpt (0 for a rule on secrets), else the service's */
	key = pd_service_key(gen, st->service & (PD_MAX_SERVICES - 1));
	svc = exr ? NULL : bpf_map_lookup_elem(&pd_services, &key);
	if (exr)
		ex = exr->excerpt;
	else if (svc)
		ex = svc->excerpt;
	if (ex > PD_EXCERPT_MAX)
		ex = PD_EXCERPT_MAX;
	if (ex > avail)
		ex = avail;
	/* the message's own bytes: under line framing the next line may
	 * follow in the same sk_msg */
	if (e->bytes && ex > e->bytes)
		ex = e->bytes;
	e->excerpt_len = 0;
	if (ex && !bpf_msg_pull_data(msg, 0, ex, 0)) {
		void *d = msg->data;

		ex &= PD_EXCERPT_MAX * 2 - 1;
		if (ex <= PD_EXCERPT_MAX && !bpf_probe_read_kernel(e->excerpt, ex, d))
			e->excerpt_len = ex;
	}
	bpf_ringbuf_submit(e, 0);
divert:
	if (seq)
		ev_divert_copy(msg, seq, gen, sink, st->run.ev_bytes);
	return 0;
}

/* An event for a verdict on len bytes of message (bytes of them in this
 * sk_msg), by rule index rule (0: the default). */
static __always_inline void ev_emit(struct sk_msg_md *msg, struct pd_sock *st, __u32 verdict,
				    __u32 rule, __u32 len, __u32 bytes)
{
	st->run.ev_cause = 0;
	st->run.ev_verdict = (__u8)verdict;
	st->run.ev_rule = (__u16)rule;
	st->run.ev_len = len;
	st->run.ev_bytes = bytes;
	ev_send(msg);
}

/* The counter of rule index rule: its id, or the service's default. */
static __always_inline __u32 ev_counter_slot(const struct pd_sock *st, __u32 rule)
{
	__u32 rk = pd_rule_key(st->cur.gen & 1, rule & 0xffff);
	struct pd_rule *r;

	if (rule) {
		r = bpf_map_lookup_elem(&pd_rules, &rk);
		if (r)
			return r->id;
	}
	return PD_COUNTER_DEFAULT(st->service & (PD_MAX_SERVICES - 1));
}

/* A decided message: count it, log it when it must be logged. */
static __always_inline void ev_decided(struct sk_msg_md *msg, struct pd_sock *st, __u32 verdict,
				       __u32 rule, __u32 len, __u32 bytes)
{
	__u32 audit = st->cur.m.audit;

	ev_count(ev_counter_slot(st, rule), len,
		 st->run.monitor && (verdict == PD_V_DENY || verdict == PD_V_REDIRECT));
	if (audit && rule != audit)
		ev_count(ev_counter_slot(st, audit), len, 0);
	if (verdict != PD_V_PASS || audit)
		ev_emit(msg, st, verdict, rule, len, bytes);
}

/* An event for a refusal outside the sk_msg program: the socket's ends
 * from its bpf_sock, the process from the caller (tgid/uid; 0 when
 * unknown: the egress path runs where the packet is sent, not always in
 * the sender's context). */
static __always_inline void ev_emit_sock(struct bpf_sock *sk, __u32 verdict, __u32 cause, __u32 svc,
					 __u32 tgid, __u32 uid, __u32 len, int ends)
{
	struct pd_event *e = bpf_ringbuf_reserve(&pd_events, sizeof(*e), 0);

	if (!e) {
		ev_trouble(PD_TR_RINGBUF);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->verdict = (__u8)verdict;
	e->cause = (__u8)cause;
	e->service = svc;
	e->tgid = e->pid = tgid;
	e->uid = uid;
	e->len = len;
	e->family = (__u8)sk->family;
	if (!ends) {
		/* a socket being created has none yet */
	} else if (sk->family == AF_INET6) {
		e->saddr[0] = sk->src_ip6[0];
		e->saddr[1] = sk->src_ip6[1];
		e->saddr[2] = sk->src_ip6[2];
		e->saddr[3] = sk->src_ip6[3];
		e->daddr[0] = sk->dst_ip6[0];
		e->daddr[1] = sk->dst_ip6[1];
		e->daddr[2] = sk->dst_ip6[2];
		e->daddr[3] = sk->dst_ip6[3];
	} else {
		e->saddr[0] = sk->src_ip4;
		e->daddr[0] = sk->dst_ip4;
	}
	if (ends) {
		e->sport = (__u16)sk->src_port;
		e->dport = bpf_ntohs(sk->dst_port);
	}
	bpf_ringbuf_submit(e, 0);
}

/* A cgroup program's refusal (or, with fail_mode = "open", its pass) of
 * what the process now running asked for: counted, and an event that
 * names that process. ends: the socket has its addresses and ports. */
static __always_inline void ev_sock_now(struct bpf_sock *sk, __u32 verdict, __u32 cause,
					__u32 svc, int ends)
{
	__u64 id = bpf_get_current_pid_tgid();

	ev_trouble(cause);
	ev_emit_sock(sk, verdict, cause, svc, id >> 32, (__u32)bpf_get_current_uid_gid(), 0, ends);
}

#endif /* PD_EVENTS_H */
