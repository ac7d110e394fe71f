// SPDX-License-Identifier: GPL-2.0-only
/*
 * make bench's "socket map alone": the kernel's socket-map path with no
 * work in it. sock_ops adds every connection the cgroup's processes open
 * to a SOCKHASH, and the sk_msg program on that map passes every message
 * untouched. What a run costs with this and no more is what any sk_msg
 * firewall pays before it reads a byte; policyd's own cost is the rest.
 * Loaded and attached with bpftool by tests/bench/bench.py.
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

SEC("sockops")
int add(struct bpf_sock_ops *ops)
{
	__u64 cookie;

	if (ops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		cookie = bpf_get_socket_cookie(ops);
		bpf_sock_hash_update(ops, &socks, &cookie, BPF_ANY);
	}
	return 1;
}

SEC("sk_msg")
int pass(struct sk_msg_md *msg)
{
	return SK_PASS;
}
