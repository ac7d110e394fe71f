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

SEC("sockops")
int add(struct bpf_sock_ops *ops)
{
	__u32 zero = 0;
	__u64 cookie, *n;

	if (ops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ||
	    ops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		cookie = bpf_get_socket_cookie(ops);
		n = bpf_map_lookup_elem(&added, &zero);
		if (!bpf_sock_hash_update(ops, &socks, &cookie, BPF_ANY) && n)
			__sync_fetch_and_add(n, 1);
	}
	return 1;
}

SEC("sk_msg")
int pass(struct sk_msg_md *msg)
{
	return SK_PASS;
}
