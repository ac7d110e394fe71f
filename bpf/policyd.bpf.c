// SPDX-License-Identifier: GPL-2.0-only
/*
 * policyd data plane: sock_ops adds policed TCP sockets to a SOCKHASH; the
 * sk_msg verdict program on that map walks each message through its
 * service's automaton (include/pd_match.h) and passes or drops it.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "policyd.h"

/* Address families (the UAPI headers leave them to libc). */
#define AF_INET 2
#define AF_INET6 10

char LICENSE[] SEC("license") = "GPL";

/* Row width - 1 of pd_trans, set by the loader before load (a power of
 * two, so masking bounds every row access for the verifier). */
const volatile __u32 pd_row_mask = PD_MAX_CLASSES - 1;

/* Settings the daemon changes at run time (active policy slot). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pd_config);
} pd_config SEC(".maps");

/* (port, direction, slot) -> service index. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * PD_MAX_PORTS);
	__type(key, struct pd_port_key);
	__type(value, __u32);
} pd_ports SEC(".maps");

/* slot * PD_MAX_SERVICES + service -> service settings. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * PD_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct pd_service);
} pd_services SEC(".maps");

/* slot * PD_MAX_SERVICES + service -> byte classes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * PD_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct pd_classmap);
} pd_classes SEC(".maps");

/* Global state index -> transition row (value size set by the loader). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PD_MAX_CLASSES * sizeof(__u32));
} pd_trans SEC(".maps");

/* Global state index -> what entering the state reports. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pd_state_out);
} pd_outs SEC(".maps");

/* slot * (PD_MAX_RULES + 1) + rule index -> rule. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * (PD_MAX_RULES + 1));
	__type(key, __u32);
	__type(value, struct pd_rule);
} pd_rules SEC(".maps");

/* Per rule id and per service default: messages and bytes decided. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PD_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, struct pd_counter);
} pd_counters SEC(".maps");

/* Policed sockets, by socket cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} pd_sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pd_sock);
} pd_sk SEC(".maps");

/* Redirect sinks: one socket of policyd's own per sink index. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, PD_MAX_SINKS);
	__type(key, __u32);
	__type(value, __u64);
} pd_sinks SEC(".maps");

/* Deny, redirect and audit events for the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} pd_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PD_TR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} pd_trouble SEC(".maps");

static __always_inline void trouble(__u32 what)
{
	__u64 *c = bpf_map_lookup_elem(&pd_trouble, &what);

	if (c)
		*c += 1;
}

static __always_inline const __u32 *row_of(__u32 state)
{
	return bpf_map_lookup_elem(&pd_trans, &state);
}

static __always_inline const struct pd_state_out *out_of(__u32 state)
{
	return bpf_map_lookup_elem(&pd_outs, &state);
}

#define PD_ROW(ctx, st) row_of(st)
#define PD_OUT(ctx, st) out_of(st)
#define PD_ROW_MASK(ctx) pd_row_mask
#include "pd_match.h"

static __always_inline __u32 active_gen(void)
{
	__u32 zero = 0;
	struct pd_config *c = bpf_map_lookup_elem(&pd_config, &zero);

	return c ? (c->active_gen & 1) : 0;
}

/* The service a connection belongs to: remote port for "to", local port
 * for "from". Returns -1 when it is not policed. */
static __always_inline int service_of(__u32 remote_port_be, __u32 local_port, __u32 gen)
{
	struct pd_port_key k = { .gen = (__u8)gen };
	__u32 *svc;

	k.port = bpf_ntohl(remote_port_be) & 0xffff;
	k.dir = PD_DIR_TO;
	svc = bpf_map_lookup_elem(&pd_ports, &k);
	if (svc)
		return *svc;
	k.port = local_port & 0xffff;
	k.dir = PD_DIR_FROM;
	svc = bpf_map_lookup_elem(&pd_ports, &k);
	return svc ? (int)*svc : -1;
}

SEC("sockops")
int pd_sockops(struct bpf_sock_ops *ops)
{
	struct pd_sock *st;
	__u64 cookie;
	int svc, err;

	if (ops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (ops->family != AF_INET && ops->family != AF_INET6)
		return 1;
	svc = service_of(ops->remote_port, ops->local_port, active_gen());
	if (svc < 0 || !ops->sk)
		return 1;
	st = bpf_sk_storage_get(&pd_sk, ops->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		trouble(PD_TR_NO_STATE);
		return 1;
	}
	cookie = bpf_get_socket_cookie(ops);
	st->service = (__u32)svc;
	st->gen = active_gen();
	st->in_msg = 0;
	st->sticky = 0;
	st->cookie = cookie;
	st->m.state = PD_NO_STATE;      /* the service's resume state on first use */
	err = bpf_sock_hash_update(ops, &pd_sockets, &cookie, BPF_ANY);
	if (err)
		trouble(err == -16 /* EBUSY */ ? PD_TR_SOCKHASH_BUSY : PD_TR_SOCKHASH_FULL);
	return 1;
}

static __always_inline void count(__u32 slot, __u32 bytes)
{
	struct pd_counter *c = bpf_map_lookup_elem(&pd_counters, &slot);

	if (c) {
		c->msgs += 1;
		c->bytes += bytes;
	}
}

/* Bytes made readable at once by bpf_msg_pull_data. A range inside one
 * scatterlist element is read in place; one that spans elements (or pages
 * spliced from the page cache) is copied into a fresh page, so a window
 * stays within one page. */
#define PD_WINDOW 4096
/* Windows per program run: more than the largest sk_msg (MAX_SKB_FRAGS
 * elements of at most 32 KiB each). A longer run fails closed. */
#define PD_MAX_WINDOWS 192

/* What the per-byte callback works on. */
struct scan {
	struct pd_match *m;
	const struct pd_classmap *cm;
	__u8 *data;             /* the pulled window */
	__u8 *data_end;
	__u32 n;                /* bytes of the window to look at */
	__u32 used;             /* bytes of the window consumed */
	__u32 match_left;       /* bytes still inside the inspect window */
	__u8 line;
	__u8 ended;             /* '\n' seen (line framing) */
	__u8 stop;              /* deny matched */
	__u8 err;
};

static long scan_byte(__u32 i, void *arg)
{
	struct scan *s = arg;
	__u8 *p = s->data;
	int r;
	__u8 b;

	if (i >= s->n)
		return 1;
	p += i & (PD_WINDOW - 1);
	if ((void *)(p + 1) > (void *)s->data_end)
		return 1;
	b = *p;
	s->used = i + 1;
	if (s->match_left) {
		s->match_left--;
		r = pd_byte(s->m, s->cm, s->line, b, NULL);
		if (r < 0) {
			s->err = 1;
			return 1;
		}
		if (s->m->deny) {
			s->stop = 1;
			return 1;
		}
	} else if (!s->line) {
		return 1;
	}
	if (s->line && b == '\n') {
		s->ended = 1;
		return 1;
	}
	return 0;
}

static __always_inline void event(struct sk_msg_md *msg, const struct pd_sock *st,
				  __u32 verdict, __u32 rule, __u32 audit, __u32 len,
				  __u32 bytes)
{
	__u32 zero = 0, ex = 0, avail = msg->size, gen = st->gen & 1;
	struct pd_config *cfg = bpf_map_lookup_elem(&pd_config, &zero);
	struct pd_event *e;
	__u64 id;

	e = bpf_ringbuf_reserve(&pd_events, sizeof(*e), 0);
	if (!e) {
		trouble(PD_TR_RINGBUF);
		return;
	}
	id = bpf_get_current_pid_tgid();
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->len = len;
	e->bytes = bytes;
	e->service = st->service;
	e->rule_id = 0;
	e->audit_id = 0;
	e->sink = 0;
	if (rule) {
		__u32 rk = gen * (PD_MAX_RULES + 1) + (rule & 0xffff);
		struct pd_rule *r = bpf_map_lookup_elem(&pd_rules, &rk);

		if (r) {
			e->rule_id = r->id;
			e->sink = r->sink;
		}
	}
	e->audit = audit ? 1 : 0;
	if (audit) {
		__u32 rk = gen * (PD_MAX_RULES + 1) + (audit & 0xffff);
		struct pd_rule *r = bpf_map_lookup_elem(&pd_rules, &rk);

		if (r)
			e->audit_id = r->id;
	}
	e->verdict = (__u8)verdict;
	e->family = (__u8)msg->family;
	e->pad = 0;
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
	if (cfg)
		ex = cfg->excerpt;
	if (ex > PD_EXCERPT_MAX)
		ex = PD_EXCERPT_MAX;
	if (ex > avail)
		ex = avail;
	e->excerpt_len = 0;
	if (ex && !bpf_msg_pull_data(msg, 0, ex, 0)) {
		void *d = msg->data;

		ex &= PD_EXCERPT_MAX * 2 - 1;
		if (ex <= PD_EXCERPT_MAX &&
		    !bpf_probe_read_kernel(e->excerpt, ex, d))
			e->excerpt_len = ex;
	}
	bpf_ringbuf_submit(e, 0);
}

/* One window of a scan: make it readable, then walk it byte by byte. */
struct windows {
	struct sk_msg_md *msg;
	struct scan *s;
	__u32 off;              /* bytes consumed so far */
	__u32 limit;            /* bytes to consume at most */
	__u8 err;
};

static long scan_window(__u32 w, void *arg)
{
	struct windows *c = arg;
	struct sk_msg_md *msg = c->msg;
	struct scan *s = c->s;
	__u32 n;

	if (c->off >= c->limit || s->ended || s->stop || (!s->line && !s->match_left))
		return 1;
	n = c->limit - c->off;
	if (n > PD_WINDOW)
		n = PD_WINDOW;
	if (bpf_msg_pull_data(msg, c->off, c->off + n, 0)) {
		c->err = 1;
		return 1;
	}
	s->data = msg->data;
	s->data_end = msg->data_end;
	s->n = n;
	s->used = 0;
	bpf_loop(n, scan_byte, s, 0);
	if (s->err) {
		c->err = 1;
		return 1;
	}
	c->off += s->used;
	if (s->used < n && !s->ended && !s->stop && (s->line || s->match_left)) {
		c->err = 1;     /* the window was shorter than pulled */
		return 1;
	}
	return 0;
}

/* Scan bytes [0, limit) of the message's current part, window by window,
 * until the limit, a deny, or (line framing) the end of a line. Returns
 * the bytes consumed, or -1 to fail closed. */
static __noinline int scan_msg(struct sk_msg_md *msg, struct scan *s, __u32 limit)
{
	struct windows c = { .msg = msg, .s = s, .limit = limit };

	bpf_loop(PD_MAX_WINDOWS, scan_window, &c, 0);
	if (c.err)
		return -1;
	if (c.off < limit && !s->ended && !s->stop && (s->line || s->match_left))
		return -1;      /* longer than PD_MAX_WINDOWS windows */
	return c.off;
}

/* Pass, drop or divert. Every run sets apply and cork bytes itself: the
 * kernel keeps the values of an earlier run on the same sk_msg. */
static __always_inline int act(struct sk_msg_md *msg, struct pd_sock *st, __u32 verdict,
			       __u32 rule, __u32 apply)
{
	__u32 gen = st->gen & 1, sink;
	__u64 self = st->cookie;
	struct pd_rule *r;
	__u32 rk;

	bpf_msg_cork_bytes(msg, 0);
	bpf_msg_apply_bytes(msg, apply);
	if (verdict == PD_V_DENY)
		return SK_DROP;
	if (verdict == PD_V_REDIRECT) {
		rk = gen * (PD_MAX_RULES + 1) + (rule & 0xffff);
		r = bpf_map_lookup_elem(&pd_rules, &rk);
		sink = r ? r->sink : 0;
		/* the rest of this sk_msg keeps the target: see sticky */
		st->sticky = apply != 0;
		return bpf_msg_redirect_map(msg, &pd_sinks, sink, BPF_F_INGRESS);
	}
	/* After a redirect, the kernel's sk_msg still names the sink, and a
	 * plain pass would send the rest there too: pass by sending it out
	 * on this very socket. */
	if (st->sticky) {
		if (!apply)
			st->sticky = 0;
		return bpf_msg_redirect_hash(msg, &pd_sockets, &self, 0);
	}
	return SK_PASS;
}

static __always_inline __u32 counter_slot(const struct pd_sock *st, __u32 rule)
{
	__u32 rk = (st->gen & 1) * (PD_MAX_RULES + 1) + (rule & 0xffff);
	struct pd_rule *r;

	if (rule) {
		r = bpf_map_lookup_elem(&pd_rules, &rk);
		if (r)
			return r->id;
	}
	return PD_COUNTER_DEFAULT(st->service & (PD_MAX_SERVICES - 1));
}

/* A decided message: count it, log it when it must be logged. */
static __always_inline void decided(struct sk_msg_md *msg, struct pd_sock *st, __u32 verdict,
				    __u32 rule, __u32 len, __u32 bytes)
{
	__u32 audit = st->m.audit;

	count(counter_slot(st, rule), len);
	if (audit && rule != audit)
		count(counter_slot(st, audit), len);
	if (verdict == PD_V_PASS && !audit)
		return;
	event(msg, st, verdict, rule, audit, len, bytes);
}

SEC("sk_msg")
int pd_msg(struct sk_msg_md *msg)
{
	const struct pd_service *svc;
	const struct pd_classmap *cm;
	struct pd_sock *st, cur;
	struct scan s = {};
	__u32 key, size = msg->size, verdict, rule = 0, limit, win_done, gen;
	int used, hold;

	if (!msg->sk)
		return SK_DROP;
	st = bpf_sk_storage_get(&pd_sk, msg->sk, 0, 0);
	if (!st) {
		trouble(PD_TR_NO_STATE);
		return SK_DROP;
	}
	/* Work on a copy: a held message is scanned again from its start. */
	cur = *st;
	if (!cur.in_msg) {
		gen = active_gen();
		if (gen != cur.gen)
			cur.m.state = PD_NO_STATE;      /* nothing carries across a reload */
		cur.gen = gen;
	}
	key = (cur.gen & 1) * PD_MAX_SERVICES + (cur.service & (PD_MAX_SERVICES - 1));
	svc = bpf_map_lookup_elem(&pd_services, &key);
	cm = bpf_map_lookup_elem(&pd_classes, &key);
	if (!svc || !cm)
		goto tables;
	if (cur.m.state == PD_NO_STATE)
		cur.m.state = svc->resume;
	if (!cur.in_msg) {
		if (pd_begin(&cur.m, svc, NULL))
			goto tables;
		cur.msglen = 0;
	}
	s.m = &cur.m;
	s.cm = cm;
	s.line = svc->framing == PD_FRAME_LINE;
	s.match_left = 0xffffffff;
	if (svc->inspect)
		s.match_left = svc->inspect > cur.msglen ? svc->inspect - cur.msglen : 0;

	/* framing none: this sk_msg is the message; line: up to a '\n' */
	limit = size;
	if (!s.line && s.match_left < limit)
		limit = s.match_left;
	used = scan_msg(msg, &s, limit);
	if (used < 0)
		goto tables;
	if (!s.line) {
		pd_length(&cur.m, svc, size);
		verdict = pd_verdict(&cur.m, svc, &rule);
		pd_end(&cur.m, svc, (__u32)used == size);
		cur.in_msg = 0;
		decided(msg, &cur, verdict, rule, size, size);
		verdict = act(msg, &cur, verdict, rule, 0);
		*st = cur;
		return verdict;
	}

	cur.msglen += used;
	pd_length(&cur.m, svc, cur.msglen);
	win_done = svc->inspect && cur.msglen >= svc->inspect;
	if (s.ended || cur.m.deny) {
		verdict = pd_verdict(&cur.m, svc, &rule);
		cur.in_msg = 0;
		pd_end(&cur.m, svc, 1);
		decided(msg, &cur, verdict, rule, cur.msglen, used);
		verdict = act(msg, &cur, verdict, rule, (__u32)used < size ? (__u32)used : 0);
		*st = cur;
		return verdict;
	}
	/* the line goes on past this sk_msg */
	hold = win_done ? 0 : pd_must_hold(&cur.m, svc, NULL);
	if (hold < 0)
		goto tables;
	if (hold) {
		/* keep it back until more of the line arrives; st is left as
		 * it was, and the kernel runs us on the whole held part again.
		 * If it cannot hold (buffer full), the drop below applies. */
		trouble(PD_TR_HELD);
		bpf_msg_apply_bytes(msg, 0);
		bpf_msg_cork_bytes(msg, size + 1);
		return SK_DROP;
	}
	cur.in_msg = 1;
	if (win_done || cur.m.redirect) {
		verdict = pd_verdict(&cur.m, svc, &rule);
	} else {
		verdict = PD_V_PASS;
		rule = 0;
	}
	if (verdict == PD_V_DENY)
		decided(msg, &cur, verdict, rule, cur.msglen, size);
	else if (verdict == PD_V_REDIRECT)
		event(msg, &cur, verdict, rule, 0, cur.msglen, size);
	verdict = act(msg, &cur, verdict, rule, 0);
	*st = cur;
	return verdict;
tables:
	trouble(PD_TR_TABLES);
	return SK_DROP;
}
