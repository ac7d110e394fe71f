// SPDX-License-Identifier: GPL-2.0-only
/*
 * policyd data plane: sock_ops adds policed TCP sockets to a SOCKHASH; the
 * sk_msg verdict program on that map walks each message through its
 * service's automaton (bpf/pd_match.h) and passes or drops it; cgroup
 * programs close the paths a sk_msg program does not see. This file holds
 * the programs and their glue; the rest is in headers, one role and one
 * name prefix each, included in this order:
 *
 *   pd_kern.h      the kernel's types, read through BTF (CO-RE)
 *   maps.h         pd_       the maps (the daemon opens them by name)
 *   events.h       ev_       counters, events, diverted bytes
 *   abort.h        abort_    connections to abort (pd_doomed)
 *   lookup.h       lookup_   reading the policy in the maps
 *   hold.h         hold_     messages held back, and their timer
 *   walk.h         walk_     pd_scan.h over the sk_msg
 *   proto.bpf.h    proto_    walks under a protocol framing
 *   tail.h         tail_     the kept tail, for reloads
 *   wire.h         wire_     the TCP stream against what was judged
 *   act.h          act_      verdicts carried out
 *   reload.h       reload_   which policy slot judges a run
 *   proto_msg.bpf.h proto_   acting on a protocol framing's walk
 *
 * Plain C, also compiled into the daemon and the tests: pd_match.h
 * (pd_: the automaton walk), pd_scan.h (pd_scan_, pd_: the fast way
 * through a send), proto.h (pd_proto_), resp.h (pd_resp_), memcache.h
 * (pd_mc_), http.h (pd_http_, pd_h_).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "pd_kern.h"
#include "policyd.h"

/* Address families (the UAPI headers leave them to libc). */
#define AF_INET 2
#define AF_INET6 10

char LICENSE[] SEC("license") = "GPL";

#include "maps.h"
#include "events.h"
#include "abort.h"
#include "lookup.h"
#include "hold.h"
#include "walk.h"

/* Walks under the protocol framings (resp, memcache, http). */
#include "proto.bpf.h"
#include "tail.h"
#include "wire.h"
#include "act.h"
#include "reload.h"

/* What a run under a protocol framing found, acted on. */
#include "proto_msg.bpf.h"

/* A TCP connection of the cgroup is established, or one of them closes.
 * A policed one (its port names a service) gets its socket storage and
 * goes into pd_sockets; one that closes loses its hold timer and leaves
 * pd_doomed. */
SEC("sockops")
int pd_sockops(struct bpf_sock_ops *ops)
{
	struct bpf_sock *sk;
	struct tcp_sock *tp;
	struct pd_sock *st;
	__u32 gen, new;
	__u64 cookie;
	int svc, err, mapped = 0, active = ops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB;
	__u8 keep;

	if (ops->op == BPF_SOCK_OPS_STATE_CB) {
		/* a socket that can send no more (it closes, or shut its
		 * sending side down) while it holds a message: the held
		 * bytes are lost, said so, and their timer goes; one doomed
		 * that closes: nothing is left to abort (this is also how
		 * an abort ends) */
		new = ops->args[1];
		sk = ops->sk;
		if ((new == BPF_TCP_CLOSE || new == BPF_TCP_FIN_WAIT1 || new == BPF_TCP_LAST_ACK) &&
		    sk && (st = bpf_sk_storage_get(&pd_sk, sk, 0, 0))) {
			hold_lost(sk, st);
			if (new == BPF_TCP_CLOSE && (st->flags & PD_SK_DOOMED))
				bpf_map_delete_elem(&pd_doomed, &st->cookie);
		}
		return 1;
	}
	if (!active && ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		/* never true: makes pd_instance one of this program's maps,
		 * where another instance finds who attached it */
		if (ops->op == 0xffffffff) {
			gen = 0;
			bpf_map_lookup_elem(&pd_instance, &gen);
		}
		return 1;
	}
	if (ops->family != AF_INET && ops->family != AF_INET6)
		return 1;
	gen = lookup_active_gen();
	svc = lookup_service_by_port(bpf_ntohl(ops->remote_port) & 0xffff, ops->local_port & 0xffff,
				     gen, !active);
	sk = ops->sk;
	if (!sk)
		return 1;
	if (svc < 0) {
		/* not policed. A socket that was (connect(AF_UNSPEC), then
		 * another connect) is still in the socket map, since tcp_bpf
		 * has no unhash: it leaves the map, and what was kept of its
		 * first connection goes */
		if (bpf_sk_storage_get(&pd_sk, sk, 0, 0)) {
			cookie = bpf_get_socket_cookie(ops);
			bpf_map_delete_elem(&pd_sockets, &cookie);
			bpf_sk_storage_delete(&pd_sk, sk);
		}
		return 1;
	}
	st = bpf_sk_storage_get(&pd_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	tp = bpf_skc_to_tcp_sock(sk);
	if (!st || !tp) {
		ev_trouble(PD_TR_NO_STATE);
		return 1;
	}
	cookie = bpf_get_socket_cookie(ops);
	if (st->cookie == cookie && st->lport) {
		/* set up before, for an earlier connection (connect(AF_UNSPEC),
		 * then connect again): still in the socket map, which
		 * refuses to take it twice (tcp_bpf has no unhash). Nothing
		 * of that connection carries over: not its held or kept
		 * bytes, its tail or its timer; a doomed socket stays so */
		mapped = !(st->flags & PD_SK_UNMAPPED);
		hold_lost(sk, st);
		bpf_sk_storage_delete(&pd_bytes, sk);
		bpf_sk_storage_delete(&pd_tail, sk);
		keep = st->flags & (PD_SK_DEAD | PD_SK_DOOMED);
		__builtin_memset(st, 0, sizeof(*st));
		st->flags = keep;
	}
	st->service = (__u32)svc;
	st->cur.gen = gen;
	st->cur.slot_gen = lookup_slot_gen(gen);
	st->cur.in_msg = 0;
	st->cur.m.state = PD_NO_STATE;      /* the service's resume state on first use */
	st->cookie = cookie;
	st->rport = bpf_ntohl(ops->remote_port) & 0xffff;
	st->lport = ops->local_port & 0xffff;
	/* a socket the egress program doomed before (data in its SYN) stays so */
	st->flags = (st->flags & (PD_SK_DEAD | PD_SK_DOOMED)) | (active ? PD_SK_ACTIVE : 0);
	st->replay = 0;
	st->held_since = 0;
	/* Nothing was judged yet. A connecting socket's stream starts at the
	 * first byte after its SYN: data queued before (TCP Fast Open) was
	 * judged by no one. An accepted one has sent nothing yet. */
	st->judged_end = active ? tp->snd_una : tp->write_seq;
	if (tp->is_mptcp) {
		/* a subflow of a Multipath TCP connection: the socket map
		 * cannot take it */
		st->flags |= PD_SK_UNMAPPED;
		st->cause = PD_TR_MPTCP;
		return 1;
	}
	/* be told when it closes (a held message's timer) */
	bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	err = bpf_sock_hash_update(ops, &pd_sockets, &cookie, BPF_ANY);
	if (err == -16 /* EBUSY */ && mapped)
		err = 0;                /* in the map still, under the same key */
	if (err) {
		st->flags |= PD_SK_UNMAPPED;
		st->cause = err == -16 /* EBUSY */ ? PD_TR_SOCKHASH_BUSY : PD_TR_SOCKHASH_FULL;
		ev_trouble(st->cause);
	}
	return 1;
}

/* A piece of a decided range that the send buffer could not take at
 * once: walked again (so that where the stream stands is known at every
 * piece's end), pushed, and, while the buffer is short of room, kept in
 * pd_bytes so that a push the kernel cuts short can be followed. The
 * last piece leaves cur where the decision left it. A program of its
 * own, reached from pd_msg by a tail call (act_replay): its walk would not
 * fit the stack on top of pd_msg's. */
SEC("sk_msg")
int pd_replay(struct sk_msg_md *msg)
{
	const struct pd_service *svc;
	struct pd_bytes *b = NULL;
	struct tcp_sock *tp;
	struct pd_sock *st;
	__u32 n, room, key;
	void *data, *end;

	if (!msg || !msg->sk)
		return SK_DROP;
	st = bpf_sk_storage_get(&pd_sk, msg->sk, 0, 0);
	tp = bpf_skc_to_tcp_sock(msg->sk);
	if (!st || !tp)
		return SK_DROP;
	n = st->replay;
	if (!n || n > msg->size)
		goto tables;
	room = wire_room(tp);
	if (n > room) {
		if (room >= PD_BYTES_MAX) {
			n = room;
		} else {
			if (n > PD_BYTES_MAX)
				n = PD_BYTES_MAX;
			b = bpf_sk_storage_get(&pd_bytes, msg->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		}
	}
	if (b) {
		/* kept; a socket without them falls back on a refused
		 * connection should the push be cut short */
		b->kind = PD_BYTES_NONE;
		if (bpf_msg_pull_data(msg, 0, n, 0))
			goto tables;
		data = (void *)(long)msg->data;
		end = (void *)(long)msg->data_end;
		n &= 2 * PD_BYTES_MAX - 1;
		if (n > PD_BYTES_MAX || data + n > end ||
		    bpf_probe_read_kernel(b->bytes, n, data))
			goto tables;
		b->seq = st->judged_end;
		b->len = n;
		b->from = st->cur;
		b->kind = PD_BYTES_RISK;
	}
	key = lookup_sock_key(st);
	svc = bpf_map_lookup_elem(&pd_services, &key);
	if (!svc)
		goto tables;
	st->run.line = svc->framing == PD_FRAME_LINE;
	st->run.ended = 0;
	st->run.err = 0;
	st->run.used = 0;
	st->run.limit = n;
	st->run.match_left = 0xffffffff;
	if (svc->inspect)
		st->run.match_left = svc->inspect > st->cur.m.seen ?
				     svc->inspect - st->cur.m.seen : 0;
	if (st->service == PD_NO_SERVICE || svc->noscan)
		;
	else if (PD_FRAME_IS_PROTO(svc->framing))
		proto_run(msg, st, 1);
	else
		walk_msg(msg, st, 0);
	if (st->run.err)
		goto tables;
	if (st->run.line) {
		st->cur.msglen += n;
		st->cur.in_msg = 1;
	}
	st->judged_end += n;
	st->replay -= n;
	if (!st->replay)
		st->cur = st->alt;
	return act_push(msg, st, n < msg->size ? n : 0);
tables:
	ev_trouble(PD_TR_TABLES);
	abort_conn(st, tp, st->judged_end);
	return SK_DROP;
}

/* Every send on a policed socket: the stream checked against what was
 * judged, the bytes walked through the service's automaton, and the
 * message passed, held back, dropped or diverted. */
SEC("sk_msg")
int pd_msg(struct sk_msg_md *msg)
{
	const struct pd_service *svc;
	struct tcp_sock *tp;
	struct pd_sock *st;
	__u32 key, size, verdict, rule = 0, win_done, used, apply = 0;
	__u64 id;
	int must_hold, r;

	if (!msg->sk)
		return SK_DROP;
	st = bpf_sk_storage_get(&pd_sk, msg->sk, 0, 0);
	if (!st) {
		ev_trouble(PD_TR_NO_STATE);
		return SK_DROP;
	}
	tp = bpf_skc_to_tcp_sock(msg->sk);
	if ((st->flags & PD_SK_DEAD) || hold_expired(st)) {
		/* recorded for its abort already, else tried again */
		abort_conn(st, tp, st->judged_end);
		bpf_msg_apply_bytes(msg, 0);
		return SK_DROP;
	}
	if (!tp)
		goto tables;
	id = bpf_get_current_pid_tgid();
	st->tgid = id >> 32;
	st->uid = (__u32)bpf_get_current_uid_gid();
	st->run.monitor = lookup_monitor();
	r = wire_sync(msg, st, tp);
	if (r) {
		r = act_refuse(msg, st, tp, r);
		if (r >= 0)
			return r;
	}
	if (st->replay)
		return act_replay(msg, st, tp);
	if (hold_restore(msg, st->judged_end))
		goto tables;
	size = msg->size;
	/* a held message is judged again from here */
	st->snap = st->cur;
	r = reload_policy(msg, st);
	if (r < 0)
		goto tables;
	if (r == 1) {
		/* not policed any more: everything passes */
		hold_disarm(st);
		st->alt = st->cur;
		return act_pass(msg, st, tp, 0);
	}
	if (r == 2) {
		/* a pattern split across the reload: denied by the old policy */
		rule = st->run.ev_rule;
		ev_decided(msg, st, PD_V_DENY, rule, size, size);
		if (st->run.monitor) {
			st->alt = st->cur;
			return act_pass(msg, st, tp, 0);
		}
		return act_block(msg, st, tp, PD_V_DENY, rule, 0);
	}
	key = lookup_sock_key(st);
	svc = bpf_map_lookup_elem(&pd_services, &key);
	if (!svc)
		goto tables;
	if (st->cur.m.state == PD_NO_STATE)
		st->cur.m.state = svc->resume;
	if (!st->cur.in_msg) {
		if (pd_begin(&st->cur.m, svc, NULL))
			goto tables;
		st->cur.msglen = 0;
	}
	/* where this run's walk begins: a decided range the send buffer
	 * cannot take at once is walked again from here */
	st->alt = st->cur;
	st->run.line = svc->framing == PD_FRAME_LINE;
	st->run.ended = 0;
	st->run.err = 0;
	st->run.used = 0;
	st->run.match_left = 0xffffffff;
	if (svc->inspect)
		st->run.match_left = svc->inspect > st->cur.msglen ? svc->inspect - st->cur.msglen : 0;
	/* framing none: this sk_msg is the message; line: up to a '\n' */
	st->run.limit = size;
	if (!st->run.line && st->run.match_left < size)
		st->run.limit = st->run.match_left;
	if (PD_FRAME_IS_PROTO(svc->framing)) {
		r = proto_msg(msg, st, tp, svc);
		if (r < 0)
			goto tables;
		return r;
	}
	st->run.mstart = 0;
	if (svc->noscan)
		st->run.used = st->run.limit;   /* nothing to look for */
	else if (st->run.line || walk_small_msg(msg, st) < 0)
		/* lines that pass go on in this run while the send buffer
		 * has room for them all (else one at a time, for pd_replay) */
		walk_msg(msg, st, st->run.line ? wire_room(tp) : 0);
	if (st->run.err)
		goto tables;
	used = st->run.used;

	if (!st->run.line) {
		pd_length(&st->cur.m, svc, size);
		verdict = pd_verdict(&st->cur.m, svc, &rule);
		pd_end(&st->cur.m, svc, used == size);
		ev_decided(msg, st, verdict, rule, size, size);
		if ((verdict != PD_V_DENY || st->run.monitor) && svc->tail) {
			r = tail_keep_fast(msg, st, svc);
			if (r > 0)
				r = tail_keep(msg);
			if (r)
				goto tables;
		}
		goto out;
	}

	if (st->run.mstart) {
		/* lines passed (walk_line_pass): they leave together, pushed
		 * at once, since they end within the room the walk was given
		 * (a range of several lines never goes to pd_replay, which
		 * follows one line); what follows them is walked again in
		 * the next run, from the start of its line */
		st->cur.in_msg = 0;
		st->cur.msglen = 0;
		hold_disarm(st);
		st->judged_end += st->run.mstart;
		return act_push(msg, st, st->run.mstart < size ? st->run.mstart : 0);
	}
	st->cur.msglen += used;
	pd_length(&st->cur.m, svc, st->cur.msglen);
	win_done = svc->inspect && st->cur.msglen >= svc->inspect;
	/* monitor mode judges a line once, at its end, and holds nothing */
	if (st->run.ended || (st->cur.m.deny && !st->run.monitor)) {
		verdict = pd_verdict(&st->cur.m, svc, &rule);
		st->cur.in_msg = 0;
		walk_tail_forget(st);
		ev_decided(msg, st, verdict, rule, st->cur.msglen, used);
		pd_end(&st->cur.m, svc, 1);
		/* a drop covers the whole sk_msg: the kernel frees all of it,
		 * and only then tells the sender the right count */
		if ((verdict != PD_V_DENY || st->run.monitor) && used < size)
			apply = used;
		goto out;
	}
	/* the line goes on past this sk_msg */
	must_hold = win_done || st->run.monitor ? 0 : pd_must_hold(&st->cur.m, svc, NULL);
	if (must_hold < 0)
		goto tables;
	if (!must_hold && !win_done && !st->run.monitor && (svc->hold & PD_HOLD_LINE))
		must_hold = 2;          /* an unfinished line, held while it fits */
	if (must_hold) {
		st->held_rule = hold_rule(st, svc, must_hold);
		r = hold_msg(msg, st, svc->hold_ms);
		if (r >= 0)
			return r;
		/* longer than can be held: an allow list's line not allowed
		 * within it is refused; a prefix is never that long; an
		 * unfinished line goes out as it comes */
		ev_trouble(PD_TR_HOLD_FULL);
		if ((svc->hold & PD_HOLD_ALLOWLIST) && !st->cur.m.allow && !st->cur.m.redirect) {
			st->cur.in_msg = 0;
			ev_decided(msg, st, PD_V_DENY, 0, st->cur.msglen, size);
			verdict = PD_V_DENY;
			rule = 0;
			goto out;
		}
	}
	st->cur.in_msg = 1;
	verdict = PD_V_PASS;
	rule = 0;
	if (!st->run.monitor && (win_done || st->cur.m.redirect))
		verdict = pd_verdict(&st->cur.m, svc, &rule);
	if (verdict == PD_V_DENY)
		ev_decided(msg, st, verdict, rule, st->cur.msglen, size);
	else if (verdict == PD_V_REDIRECT)
		ev_emit(msg, st, verdict, rule, st->cur.msglen, size);
	else
		verdict = PD_V_PASS;    /* audit and default: decided at the line's end */
	/* the line goes out as it comes: what it half matched must survive
	 * two reloads */
	if ((verdict != PD_V_DENY || st->run.monitor) && tail_keep(msg))
		goto tables;
out:
	hold_disarm(st);
	/* monitor mode: decided and logged as would-be, then passed */
	if ((verdict == PD_V_DENY || verdict == PD_V_REDIRECT) && !st->run.monitor)
		return act_block(msg, st, tp, verdict, rule, apply);
	return act_pass(msg, st, tp, apply);
tables:
	ev_trouble(PD_TR_TABLES);
	abort_conn(st, tp, st->judged_end);
	return SK_DROP;
}

/* ---- the enforcement boundary beyond sk_msg ----
 * Paths a sk_msg program does not see: bytes a send puts into the TCP
 * stream without a verdict (a verdict the kernel kept from an earlier
 * send, a send that raced the handshake, a socket not in the socket map,
 * Fast Open data in a SYN), urgent data, Multipath TCP. The cgroup
 * programs below close them: the egress program is the last line, the
 * others refuse early where they can, with an errno an application
 * understands. Each refusal is an event with its cause, and counted; with
 * fail_mode = "open" the same is logged and passed. */

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define SOCK_STREAM 1
#define SOL_TCP 6
#define TCP_FASTOPEN_CONNECT 30
#define SOL_TLS 282
#define TLS_TX 1
#define TLS_RX 2
#define TCPHDR_SYN 0x02
#define TCPHDR_URG 0x20
#define EOPNOTSUPP 95
#define ENOPROTOOPT 92
#define EINVAL 22

/* Bytes leaving a policed socket without a verdict, in a segment from
 * sequence number seq. Closed: the segment is dropped (it never leaves
 * the host: TCP keeps it queued) and the connection aborted once what
 * left before it is acknowledged; open: it leaves. Reported once per
 * socket. */
static __always_inline int unjudged(struct __sk_buff *skb, struct bpf_sock *sk, __u32 svc,
				    __u32 cause, __u32 len, __u32 seq)
{
	struct pd_sock *st = bpf_sk_storage_get(&pd_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	int open = lookup_fail_open();

	ev_trouble(cause);
	if (!st)
		return open;
	if (!(st->flags & PD_SK_REPORTED)) {
		st->flags |= PD_SK_REPORTED;
		if (!st->cause)
			st->cause = (__u8)cause;
		ev_emit_sock(sk, open ? PD_V_UNJUDGED : PD_V_REFUSE, cause, svc, st->tgid, st->uid,
			     len, 1);
	}
	if (open)
		return 1;
	if (!st->cookie)
		st->cookie = bpf_get_socket_cookie(skb);
	abort_conn(st, bpf_skc_to_tcp_sock(sk), seq);
	return 0;
}

/* IPv6 extension headers read before the TCP header: more are never
 * seen on a plain connection. */
#define EGRESS_EXT_MAX 8

/* A segment whose TCP header the egress program cannot read (past more
 * IPv6 extension headers than it reads, or cut short): of a policed
 * connection, what it carries cannot be checked against the verdicts,
 * so it is refused as bytes without one (cause unjudged), and the
 * connection aborted. */
static __noinline int blind(struct __sk_buff *skb, struct bpf_sock *sk)
{
	struct pd_sock *st;
	struct tcp_sock *tp;
	int svc;

	if (!skb || !sk)
		return 1;
	st = bpf_sk_storage_get(&pd_sk, sk, 0, 0);
	if (st && st->cookie) {
		if (st->service == PD_NO_SERVICE)
			return 1;       /* a reload stopped policing its port */
		svc = (int)st->service;
	} else {
		svc = lookup_service_by_port(bpf_ntohs(sk->dst_port), sk->src_port & 0xffff,
					     lookup_active_gen(), 0);
		if (svc < 0)
			return 1;
	}
	tp = bpf_skc_to_tcp_sock(sk);
	return unjudged(skb, sk, (__u32)svc, PD_TR_UNJUDGED, skb->len,
			st && st->cookie ? st->judged_end : tp ? tp->snd_una : 0);
}

/* Every segment a socket of the policed cgroup sends. A policed one may
 * carry bytes only up to where verdicts let its stream go (judged_end);
 * a segment beyond, with urgent data, or of a policed connection that
 * is not in the socket map, is refused. */
SEC("cgroup_skb/egress")
int pd_egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct tcp_sock *tp;
	struct pd_sock *st;
	__u8 h[20], v;
	__u32 off, len, seq, gen;
	int svc;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != IPPROTO_TCP)
		return 1;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 0, h, 10))
			return blind(skb, sk);
		if (h[9] != IPPROTO_TCP)
			return 1;       /* IPsec's or a tunnel's transform of a
					 * segment seen here before it */
		off = (h[0] & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		/* extension headers before TCP: hop-by-hop (a GSO packet
		 * over 64 KiB carries its jumbo length there), destination
		 * options, routing (a process with CAP_NET_RAW may set each
		 * on its socket). Another kind is not a process's doing
		 * (IPsec's transform of a segment seen here before it) */
		if (bpf_skb_load_bytes(skb, 6, &v, 1))
			return blind(skb, sk);
		off = 40;
		for (int i = 0; i < EGRESS_EXT_MAX; i++) {
			if (v == IPPROTO_TCP)
				break;
			if (v != 0 && v != 43 && v != 60)
				return 1;
			if (bpf_skb_load_bytes(skb, off, h, 2))
				return blind(skb, sk);
			v = h[0];
			off += ((__u32)h[1] + 1) * 8;
		}
		if (v != IPPROTO_TCP)
			return blind(skb, sk);
	} else {
		return 1;
	}
	if (bpf_skb_load_bytes(skb, off, h, sizeof(h)))
		return blind(skb, sk);
	off += (h[12] >> 4) * 4;
	if (skb->len <= off && !(h[13] & TCPHDR_URG))
		return 1;               /* no payload */
	len = skb->len > off ? skb->len - off : 0;
	seq = ((__u32)h[4] << 24) | ((__u32)h[5] << 16) | ((__u32)h[6] << 8) | h[7];
	st = bpf_sk_storage_get(&pd_sk, sk, 0, 0);
	gen = lookup_active_gen();
	if (!st || !st->cookie) {
		/* which side made it is not known here: either service
		 * makes it policed (the one named is for the log) */
		svc = lookup_service_by_port(bpf_ntohs(sk->dst_port), sk->src_port & 0xffff, gen,
					     0);
		if (svc < 0)
			return 1;
		/* a policed connection sock_ops did not set up: data in a
		 * SYN (TCP Fast Open), or it was open before policyd
		 * started and not adopted */
		return unjudged(skb, sk, svc, (h[13] & TCPHDR_SYN) ? PD_TR_FASTOPEN :
				PD_TR_UNMAPPED, len, seq);
	}
	if (h[13] & TCPHDR_URG)
		return unjudged(skb, sk, st->service, PD_TR_OOB, len, seq);
	if (st->flags & PD_SK_UNMAPPED)
		return unjudged(skb, sk, st->service, st->cause ? st->cause : PD_TR_UNMAPPED, len,
				seq);
	if (st->flags & PD_SK_UNSYNCED) {
		/* adopted, no send judged yet: what it queued before its
		 * adoption leaves, nothing after */
		tp = bpf_skc_to_tcp_sock(sk);
		if (tp && (__s32)(seq + len - wire_adopted_seq(st, tp)) <= 0)
			return 1;
		return unjudged(skb, sk, st->service, PD_TR_UNJUDGED, len, seq);
	}
	if ((__s32)(seq + len - st->judged_end) > 0)
		return unjudged(skb, sk, st->service, PD_TR_UNJUDGED, len, seq);
	return 1;
}

/* Multipath TCP sends through subflows the socket map cannot hold: an
 * MPTCP socket is refused at its creation, with the errno of a kernel
 * where MPTCP is disabled, so that applications fall back to TCP. */
SEC("cgroup/sock_create")
int pd_sock_create(struct bpf_sock *sk)
{
	if (sk->protocol != IPPROTO_MPTCP || (sk->family != AF_INET && sk->family != AF_INET6))
		return 1;
	ev_sock_now(sk, lookup_fail_open() ? PD_V_UNJUDGED : PD_V_REFUSE, PD_TR_MPTCP, 0, 0);
	if (lookup_fail_open())
		return 1;
	bpf_set_retval(-ENOPROTOOPT);
	return 0;
}

/* A connection towards a policed port with TCP Fast Open (its data would
 * leave in the SYN, before sock_ops can set the socket up), or from an
 * MPTCP socket made before policyd started: refused, with the errno of a
 * kernel where Fast Open is off (applications then connect plainly). */
static __always_inline int connect_check(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct tcp_sock *tp;
	__u32 cause = 0;
	int svc;

	if (!sk || ctx->type != SOCK_STREAM)
		return 1;
	/* what would be refused first: most connects have nothing to
	 * refuse, and cost no lookup of the port */
	if (ctx->protocol == IPPROTO_MPTCP) {
		cause = PD_TR_MPTCP;
	} else {
		tp = bpf_skc_to_tcp_sock(sk);
		if (tp && (tp->fastopen_req || BPF_CORE_READ_BITFIELD(tp, fastopen_connect)))
			cause = PD_TR_FASTOPEN;
	}
	if (!cause)
		return 1;
	svc = lookup_service_by_port(bpf_ntohs((__u16)ctx->user_port), 0xffff, lookup_active_gen(),
				     0);
	if (svc < 0)
		return 1;
	ev_sock_now(sk, lookup_fail_open() ? PD_V_UNJUDGED : PD_V_REFUSE, cause, svc, 0);
	if (lookup_fail_open())
		return 1;
	bpf_set_retval(-EOPNOTSUPP);
	return 0;
}

/* connect() on IPv4 and IPv6: connect_check. */
SEC("cgroup/connect4")
int pd_connect4(struct bpf_sock_addr *ctx)
{
	return connect_check(ctx);
}

SEC("cgroup/connect6")
int pd_connect6(struct bpf_sock_addr *ctx)
{
	return connect_check(ctx);
}

/* Let a setsockopt go on as if no program had seen it. optlen 0 tells the
 * kernel to hand the option's own user buffer to its handler, not the
 * copy this program was given: no copy is made for it, and a handler
 * that reads user and kernel buffers differently reads what it would
 * without policyd (7.3's TLS_TX warns, FORTIFY, reading a kernel one). */
static __always_inline int sockopt_pass(struct bpf_sockopt *ctx)
{
	ctx->optlen = 0;
	return 1;
}

/* Kernel TLS on a socket in the socket map: its records would bypass
 * the sk_msg program, or (on kernels before "tls: reject the combination
 * of TLS and sockmap", Debian 6.1.190 and 6.12.111) its plaintext would
 * be judged and then pushed past the TLS layer by the redirect that lets
 * judged bytes out: in clear on the wire. Refused with EINVAL, what
 * kernels with that fix answer, whatever fail_mode says; applications
 * then encrypt in user space (policyd reads their records as opaque
 * bytes). Logged and counted. */
static __always_inline int ktls_check(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct pd_sock *st;

	if (!sk)
		return sockopt_pass(ctx);
	st = bpf_sk_storage_get(&pd_sk, sk, 0, 0);
	if (!st || !st->cookie)
		return sockopt_pass(ctx);       /* not set up by sock_ops: not policed */
	ev_sock_now(sk, PD_V_REFUSE, PD_TR_KTLS, st->service, 1);
	bpf_set_retval(-EINVAL);
	return 0;
}

/* TCP_FASTOPEN_CONNECT: connect() returns at once and the first write
 * goes out in the SYN. Refused as on a kernel where Fast Open is off;
 * applications set it as an optimisation and go on without. And kernel
 * TLS on a policed socket (ktls_check). */
SEC("cgroup/setsockopt")
int pd_setsockopt(struct bpf_sockopt *ctx)
{
	__u8 *v = ctx->optval, *end = ctx->optval_end;

	if (ctx->level == SOL_TLS && (ctx->optname == TLS_TX || ctx->optname == TLS_RX))
		return ktls_check(ctx);
	if (ctx->level != SOL_TCP || ctx->optname != TCP_FASTOPEN_CONNECT)
		return sockopt_pass(ctx);
	if (v + sizeof(int) > end || !*(int *)v)
		return sockopt_pass(ctx);       /* turned off, or the value is out of reach */
	ev_trouble(PD_TR_FASTOPEN);
	if (lookup_fail_open())
		return sockopt_pass(ctx);
	bpf_set_retval(-EOPNOTSUPP);
	return 0;
}
