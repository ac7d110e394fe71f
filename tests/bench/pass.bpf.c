// SPDX-License-Identifier: GPL-2.0-only
/*
 * make bench's "socket map alone": the kernel's socket-map path with no
 * work in it. sock_ops adds every connection the cgroup's processes open
 * or accept to a SOCKHASH, and the sk_msg program on that map passes every
 * message untouched. What a run costs with this and no more is what any
 * sk_msg firewall pays before it reads a byte; policyd's own cost is the
 * rest. The bench puts in the cgroup only the side of a workload a policy
 * polices: the clients for direction "to", the server for "from" (nginx
 * under secrets-egress), both where both are policed. Loaded and attached
 * with bpftool by tests/bench/harness.py.
 *
 * add_self and self, attached instead of add and pass for the programs'
 * own time (tests/bench/profiles.py): every message let out the way
 * policyd lets out what it passes, by a redirect to the socket itself
 * (found by its cookie, kept in socket storage), and nothing else. What
 * they cost over pass is what that way of passing costs any program that
 * takes it; what pd_msg costs over them is policyd's judging.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} socks SEC(".maps");

/* Connections added to socks: the bench checks that the row measured the
 * socket map and not a cgroup the clients never ran in (counted once per
 * connection, off the send path). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} added SEC(".maps");

/* Each connection's cookie, its key in socks (add_self, self). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} cookies SEC(".maps");

/* An established connection into socks, its cookie the key (and, with
 * keep, into cookies too). */
static __always_inline int add_conn(struct bpf_sock_ops *ops, int keep)
{
	__u32 zero = 0;
	__u64 cookie, *n, *c;

	if (ops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	cookie = bpf_get_socket_cookie(ops);
	if (keep) {
		if (!ops->sk)
			return 1;
		c = bpf_sk_storage_get(&cookies, ops->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!c)
			return 1;       /* not counted: its sends would be dropped */
		*c = cookie;
	}
	n = bpf_map_lookup_elem(&added, &zero);
	if (!bpf_sock_hash_update(ops, &socks, &cookie, BPF_ANY) && n)
		__sync_fetch_and_add(n, 1);
	return 1;
}

SEC("sockops")
int add(struct bpf_sock_ops *ops)
{
	return add_conn(ops, 0);
}

SEC("sockops")
int add_self(struct bpf_sock_ops *ops)
{
	return add_conn(ops, 1);
}

SEC("sk_msg")
int pass(struct sk_msg_md *msg)
{
	return SK_PASS;
}

/* The whole message out through a redirect to its own socket. */
SEC("sk_msg")
int self(struct sk_msg_md *msg)
{
	__u64 *c, key;

	if (!msg->sk)
		return SK_DROP;
	c = bpf_sk_storage_get(&cookies, msg->sk, 0, 0);
	if (!c)
		return SK_DROP;
	key = *c;
	bpf_msg_apply_bytes(msg, 0);
	return bpf_msg_redirect_hash(msg, &socks, &key, 0);
}
