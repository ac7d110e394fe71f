/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel's own types the data plane reads through BTF pointers
 * (bpf_skc_to_tcp_sock and the like), declared with only the fields it
 * uses: libbpf relocates every access against the running kernel's BTF
 * at load time (CO-RE), so the object does not depend on the build
 * host's kernel. Names match the kernel's; layouts are not assumed.
 */
#ifndef PD_KERN_H
#define PD_KERN_H

#include <linux/types.h>
#include <linux/in6.h>

#define PD_CORE __attribute__((preserve_access_index))

struct list_head {
	struct list_head *next;
} PD_CORE;

struct wait_queue_head {
	struct list_head head;
} PD_CORE;

/* socket_lock_t is an anonymous struct behind a typedef in the kernel:
 * CO-RE matches it through the field names */
typedef struct {
	int owned;
	struct wait_queue_head wq;
} socket_lock_t;

struct netns_ipv4 {
	unsigned int sysctl_tcp_notsent_lowat;
} PD_CORE;

struct net {
	struct netns_ipv4 ipv4;
	__u64 net_cookie;       /* SO_NETNS_COOKIE */
} PD_CORE;

typedef struct {
	struct net *net;
} possible_net_t;

struct proto {
	unsigned long *memory_pressure;
} PD_CORE;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	__u16 skc_num;          /* local port, host byte order */
	__be16 skc_dport;
	int skc_bound_dev_if;
	struct proto *skc_prot;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} PD_CORE;

struct sock {
	struct sock_common __sk_common;
	socket_lock_t sk_lock;
	int sk_write_pending;
	int sk_wmem_queued;
	int sk_sndbuf;
	__u16 sk_protocol;
	__u8 sk_shutdown;
} PD_CORE;

struct tcp_fastopen_request;

struct tcp_sock {
	__u32 write_seq;        /* after the last byte queued by the socket's owner */
	__u32 snd_nxt;
	__u32 snd_una;
	__u64 bytes_acked;      /* tcpi_bytes_acked: grows with snd_una */
	__u32 notsent_lowat;    /* TCP_NOTSENT_LOWAT, 0: the sysctl */
	__u32 mss_cache;        /* the segment size sends are cut to */
	__u8 fastopen_connect : 1;
	_Bool is_mptcp;
	struct tcp_fastopen_request *fastopen_req;
} PD_CORE;

/* The kernel's sk_msg, of which an sk_msg program's context is a view:
 * the ring of scatterlist elements that hold the send (read by
 * walk_piece_end; the ring's length comes from the running kernel's BTF). */
struct scatterlist {
	unsigned int length;
} PD_CORE;

struct sk_msg_sg {
	__u32 start;            /* the first element in the ring */
	__u32 end;              /* one past the last */
	struct scatterlist data[1];
} PD_CORE;

struct sk_msg {
	struct sk_msg_sg sg;
} PD_CORE;

#define SEND_SHUTDOWN 2
#define TCP_ESTABLISHED 1
#define TCP_CLOSE_WAIT 8

#endif /* PD_KERN_H */
