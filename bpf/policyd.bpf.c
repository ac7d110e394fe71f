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

/* Per-socket matching state. */
struct pd_sock {
	struct pd_match m;
	__u32 service;          /* service index */
	__u32 gen;              /* policy slot the current message is judged by */
	__u32 msglen;           /* bytes of the current message so far */
	__u8 in_msg;            /* a message is in progress */
	__u8 skipping;          /* past the inspect window, looking for its end */
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pd_sock);
} pd_sk SEC(".maps");

/* Deny, redirect and audit events for the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} pd_events SEC(".maps");

/* Data-plane troubles, counted: see enum pd_trouble. */
enum pd_trouble {
	PD_TR_SOCKHASH_BUSY,    /* socket held by another sockmap user: not policed */
	PD_TR_SOCKHASH_FULL,    /* other sockhash update failure: not policed */
	PD_TR_NO_STATE,         /* message on a socket without state: dropped */
	PD_TR_TABLES,           /* inconsistent tables: dropped */
	PD_TR_RINGBUF,          /* event lost: ring buffer full */
	PD_TR_MAX,
};

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
	st->service = (__u32)svc;
	st->in_msg = 0;
	st->m.state = PD_NO_STATE;      /* set to the service's resume state on first use */
	cookie = bpf_get_socket_cookie(ops);
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

SEC("sk_msg")
int pd_msg(struct sk_msg_md *msg)
{
	const struct pd_service *svc;
	const struct pd_classmap *cm;
	struct pd_sock *st;
	__u32 key, size = msg->size, verdict, rule = 0, n, slot;
	int walked, ended = 0;
	void *data, *end;

	if (!msg->sk)
		return SK_DROP;
	st = bpf_sk_storage_get(&pd_sk, msg->sk, 0, 0);
	if (!st) {
		trouble(PD_TR_NO_STATE);
		return SK_DROP;
	}
	st->gen = active_gen();
	key = st->gen * PD_MAX_SERVICES + (st->service & (PD_MAX_SERVICES - 1));
	svc = bpf_map_lookup_elem(&pd_services, &key);
	cm = bpf_map_lookup_elem(&pd_classes, &key);
	if (!svc || !cm)
		goto tables;
	if (st->m.state == PD_NO_STATE)
		st->m.state = svc->resume;
	if (pd_begin(&st->m, svc, NULL))
		goto tables;
	n = size;
	if (svc->inspect && n > svc->inspect)
		n = svc->inspect;
	if (n > PD_WALK_MAX)
		n = PD_WALK_MAX;
	if (bpf_msg_pull_data(msg, 0, n, 0))
		goto tables;
	data = msg->data;
	end = msg->data_end;
	walked = pd_walk(&st->m, svc, cm, data, end, n, &ended, NULL);
	if (walked < 0)
		goto tables;
	pd_length(&st->m, svc, size);
	verdict = pd_verdict(&st->m, svc, &rule);
	pd_end(&st->m, svc, (__u32)walked == size);
	slot = PD_COUNTER_DEFAULT(st->service & (PD_MAX_SERVICES - 1));
	if (rule) {
		__u32 rk = st->gen * (PD_MAX_RULES + 1) + (rule & 0xffff);
		struct pd_rule *r = bpf_map_lookup_elem(&pd_rules, &rk);

		if (r)
			slot = r->id;
	}
	count(slot, size);
	return verdict == PD_V_DENY ? SK_DROP : SK_PASS;
tables:
	trouble(PD_TR_TABLES);
	return SK_DROP;
}
