// SPDX-License-Identifier: GPL-2.0-only
/*
 * Aborting doomed connections. After a drop the kernel fails every later
 * send on the socket, but the connection stays open: a client that then
 * waits for a reply (libpq, many RPC clients) would wait for ever, and so
 * would the server. So the data plane records each connection it dropped
 * a message of, refused, or whose held message timed out, in pd_doomed:
 * its addresses, ports and cookie, and how far the peer must have
 * acknowledged the stream. The daemon walks that map (a lost event loses
 * no abort) and names each connection to the aborter, a process that
 * keeps CAP_NET_ADMIN and does nothing else (privs.c). The aborter waits
 * until the peer acknowledged every byte let out before the drop, read
 * as tcpi_bytes_acked through inet_diag, for at most PD_ABORT_DRAIN_NS
 * from the drop (an abort discards what is still queued), then ends the
 * socket with SOCK_DESTROY, as `ss -K` does: the peer gets a reset, the
 * sender's next call fails with ECONNABORTED. Both requests carry the
 * socket's cookie: a socket that closed and whose addresses and ports
 * were taken again is never hit. An entry leaves the map when the
 * aborter answers (aborted, or gone) or when its socket closes (the
 * sock_ops program). Requests and answers are datagrams on a socket pair
 * that the daemon never blocks on; the aborter ends when the daemon's
 * end closes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon.h"
#include "policyd.skel.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

/* The longest an abort waits for the peer to acknowledge what was let
 * out before the drop, from the drop. */
#define PD_ABORT_DRAIN_NS (10ull * 1000000000)
/* How often the aborter looks again at a connection still draining. */
#define PD_ABORT_POLL_MS 20
/* A connection named without an answer is named again after this: longer
 * than any abort waits, so only an answer the daemon had no room for, or
 * a connection an earlier daemon named, is named twice. */
#define PD_ABORT_ASK_AGAIN_NS (15ull * 1000000000)
/* Least time between two walks of pd_doomed (a flood of denies). */
#define PD_ABORT_GAP_MS 20.0
/* Requests or answers per datagram. */
#define PD_ABORT_BATCH 64

/* A connection to abort: its pd_doomed entry. */
struct pd_abort_req {
	uint64_t cookie;
	struct pd_doomed c;
};

/* The aborter's answer. The first one says whether it runs. */
enum pd_abort_kind {
	PD_ABORT_DONE,          /* err: 0 aborted, -ENOENT gone, else why not */
	PD_ABORT_READY,         /* it runs */
	PD_ABORT_NOPRIV,        /* err: its privileges could not be set up */
	PD_ABORT_NOKERNEL,      /* err: this kernel cannot destroy a TCP socket by sock_diag */
};

struct pd_abort_ans {
	struct pd_abort_req q;
	int32_t err;
	uint32_t kind;          /* enum pd_abort_kind */
};

/* CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns() */
static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/* ---- the aborter ---- */

struct diag_req {
	struct nlmsghdr nh;
	struct inet_diag_req_v2 r;
};

/* What the aborter learnt of a socket (SOCK_DIAG_BY_FAMILY). */
struct diag_sock {
	uint8_t state;          /* BPF_TCP_*: the kernel's TCP states */
	bool have_acked;        /* tcp_info with tcpi_bytes_acked */
	uint64_t bytes_acked;
};

/* One request to sock_diag about q's socket, found by its addresses,
 * ports and device, and checked by its cookie; the answer in *s for
 * SOCK_DIAG_BY_FAMILY. Returns 0 or -errno (-ENOENT: no such socket). */
static int diag(int nl, uint16_t type, const struct pd_abort_req *q, struct diag_sock *s)
{
	static uint32_t seq;
	struct diag_req req = {
		.nh = {
			.nlmsg_len = sizeof(req),
			.nlmsg_type = type,
			.nlmsg_flags = NLM_F_REQUEST | (type == SOCK_DESTROY ? NLM_F_ACK : 0),
			.nlmsg_seq = ++seq,
		},
		.r = {
			.sdiag_family = q->c.family,
			.sdiag_protocol = IPPROTO_TCP,
			.idiag_states = ~0u,
			.id = {
				.idiag_sport = htons(q->c.sport),
				.idiag_dport = htons(q->c.dport),
				.idiag_if = q->c.ifindex,
				.idiag_cookie = { (uint32_t)q->cookie, (uint32_t)(q->cookie >> 32) },
			},
		},
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	long buf[8192 / sizeof(long)];

	memcpy(req.r.id.idiag_src, q->c.saddr, sizeof(req.r.id.idiag_src));
	memcpy(req.r.id.idiag_dst, q->c.daddr, sizeof(req.r.id.idiag_dst));
	if (type == SOCK_DIAG_BY_FAMILY)
		req.r.idiag_ext = 1 << (INET_DIAG_INFO - 1);
	if (sendto(nl, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -errno;
	for (;;) {
		ssize_t n = recv(nl, buf, sizeof(buf), 0);
		struct nlmsghdr *h;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			const struct inet_diag_msg *m = NLMSG_DATA(h);
			const struct rtattr *a;
			int len;

			if (h->nlmsg_seq != req.nh.nlmsg_seq)
				continue;
			if (h->nlmsg_type == NLMSG_ERROR)
				return ((const struct nlmsgerr *)NLMSG_DATA(h))->error;
			if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
			    h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
				return -EPROTO;
			s->state = m->idiag_state;
			s->have_acked = false;
			len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
			a = (const struct rtattr *)((const char *)m + NLMSG_ALIGN(sizeof(*m)));
			for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) {
				const size_t at = offsetof(struct tcp_info, tcpi_bytes_acked);

				if (a->rta_type != INET_DIAG_INFO ||
				    RTA_PAYLOAD(a) < at + sizeof(uint64_t))
					continue;
				memcpy(&s->bytes_acked, (const char *)RTA_DATA(a) + at,
				       sizeof(uint64_t));
				s->have_acked = true;
			}
			return 0;
		}
	}
}

/* Abort q's connection once its peer acknowledged what was let out before
 * the drop, or the wait is over (now: force). Returns 1 when done (*err:
 * 0 aborted, -ENOENT gone, else why not), 0 to look again later. */
static int abort_one(int nl, const struct pd_abort_req *q, bool now, int *err)
{
	struct diag_sock s;
	int r = diag(nl, SOCK_DIAG_BY_FAMILY, q, &s);

	if (r == -ESTALE)
		r = -ENOENT;            /* the cookie is another socket's */
	if (!r && (s.state == BPF_TCP_TIME_WAIT || s.state == BPF_TCP_CLOSE))
		r = -ENOENT;            /* over already */
	if (r) {
		*err = r;
		return 1;
	}
	if (!now && s.have_acked && s.bytes_acked < q->c.acked &&
	    mono_ns() - q->c.when < PD_ABORT_DRAIN_NS)
		return 0;
	r = diag(nl, SOCK_DESTROY, q, &s);
	*err = r == -ESTALE ? -ENOENT : r;
	return 1;
}

static void answer(int fd, struct pd_abort_ans *a, size_t *n, bool flush)
{
	/* no room: the daemon names the connection again later */
	if (*n && (flush || *n == PD_ABORT_BATCH))
		send(fd, a, *n * sizeof(*a), MSG_DONTWAIT | MSG_NOSIGNAL);
	if (flush || *n == PD_ABORT_BATCH)
		*n = 0;
}

/* Whether this kernel and these privileges can destroy a TCP socket: one
 * made for the purpose on loopback. Returns 0 or -errno; 1 when it could
 * not tell (no loopback in this network namespace). */
static int can_destroy(int nl)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in la;
	socklen_t al = sizeof(a), ll = sizeof(la), ol = sizeof(uint64_t);
	struct pd_abort_req q = { 0 };
	int ls, c = -1, r = 1, soerr = 0;

	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&a, &al))
		goto out;
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(c, (struct sockaddr *)&la, &ll) ||
	    getsockopt(c, SOL_SOCKET, SO_COOKIE, &q.cookie, &ol))
		goto out;
	q.c.family = AF_INET;
	q.c.saddr[0] = la.sin_addr.s_addr;
	q.c.daddr[0] = a.sin_addr.s_addr;
	q.c.sport = ntohs(la.sin_port);
	q.c.dport = ntohs(a.sin_port);
	r = diag(nl, SOCK_DESTROY, &q, &(struct diag_sock){ 0 });
	ol = sizeof(soerr);
	if (!r && (getsockopt(c, SOL_SOCKET, SO_ERROR, &soerr, &ol) || soerr != ECONNABORTED))
		r = -EPROTO;            /* said done, but the socket lives on */
out:
	if (c >= 0)
		close(c);
	if (ls >= 0)
		close(ls);
	return r;
}

void pd_aborter(int fd, int err)
{
	struct pd_abort_ans ans[PD_ABORT_BATCH], first = { .kind = PD_ABORT_READY };
	struct pd_abort_req in[PD_ABORT_BATCH], *pend = NULL;
	struct timeval limit = { .tv_sec = 5 };
	size_t npend = 0, cap = 0, nans = 0;
	bool closing = false;
	int nl = -1;

	if (err) {
		first.kind = PD_ABORT_NOPRIV;
		first.err = -err;
	} else if ((nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)) < 0 ||
		   setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit))) {
		first.kind = PD_ABORT_NOKERNEL;
		first.err = -errno;
	} else if ((first.err = can_destroy(nl)) < 0) {
		first.kind = PD_ABORT_NOKERNEL;
	} else {
		first.err = 0;
	}
	if (send(fd, &first, sizeof(first), MSG_NOSIGNAL) != sizeof(first) ||
	    first.kind != PD_ABORT_READY)
		_exit(1);
	while (!closing) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };

		if (poll(&pf, 1, npend ? PD_ABORT_POLL_MS : -1) < 0 && errno != EINTR)
			_exit(1);
		for (;;) {
			ssize_t n = recv(fd, in, sizeof(in), MSG_DONTWAIT);
			size_t k = n > 0 ? (size_t)n / sizeof(in[0]) : 0;

			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				closing = true; /* the daemon ended: abort what is left now */
			if (n <= 0)
				break;
			if (npend + k > cap) {
				struct pd_abort_req *p;

				cap = (npend + k) * 2;
				p = realloc(pend, cap * sizeof(*pend));
				if (!p)
					_exit(1);
				pend = p;
			}
			memcpy(pend + npend, in, k * sizeof(in[0]));
			npend += k;
		}
		for (size_t i = 0; i < npend;) {
			if (!abort_one(nl, &pend[i], closing, &err)) {
				i++;
				continue;
			}
			ans[nans].q = pend[i];
			ans[nans].err = err;
			ans[nans].kind = PD_ABORT_DONE;
			nans++;
			answer(fd, ans, &nans, false);
			pend[i] = pend[--npend];
		}
		answer(fd, ans, &nans, true);
	}
	_exit(0);
}

/* ---- the daemon's side ---- */

/* Close the aborter's socket: it aborts what it holds, then ends; reaped
 * here (killed if it takes more than 5 s). */
static void aborter_end(struct pd_daemon *d)
{
	int status;

	if (d->abort_fd >= 0)
		close(d->abort_fd);
	d->abort_fd = -1;
	if (d->aborter <= 0)
		return;
	/* it aborts what it holds, then ends */
	for (int i = 0; i < 500 && waitpid(d->aborter, &status, WNOHANG) == 0; i++)
		usleep(10000);
	if (waitpid(d->aborter, &status, WNOHANG) == 0) {
		kill(d->aborter, SIGKILL);
		waitpid(d->aborter, &status, 0);
	}
	d->aborter = 0;
}

/* The kernel feature behind an error of the aborter's first test. */
static const char *hint(int err)
{
	switch (err) {
	case -EOPNOTSUPP:
		return "SOCK_DESTROY needs CONFIG_INET_DIAG_DESTROY";
	case -ENOENT:
	case -EPROTONOSUPPORT:
		return "TCP socket diagnostics need CONFIG_INET_DIAG and CONFIG_INET_TCP_DIAG "
		       "(the tcp_diag module)";
	case -EPERM:
		return "CAP_NET_ADMIN in this network namespace is needed";
	default:
		return "SOCK_DESTROY through sock_diag";
	}
}

int pd_abort_ready(struct pd_daemon *d)
{
	struct pollfd pf = { .fd = d->abort_fd, .events = POLLIN };
	struct pd_abort_ans a;
	socklen_t ol = sizeof(d->abort_netns);
	struct utsname u;
	ssize_t n = -1;

	d->abort_since = mono_ns();
	if (getsockopt(d->abort_fd, SOL_SOCKET, SO_NETNS_COOKIE, &d->abort_netns, &ol))
		d->abort_netns = 0;     /* before 5.14: not compared */
	if (poll(&pf, 1, 10000) == 1)
		n = recv(d->abort_fd, &a, sizeof(a), 0);
	if (n != sizeof(a) || a.kind == PD_ABORT_NOPRIV) {
		fprintf(stderr, "policyd: the process that aborts denied connections did not "
			"start: %s\n", n != sizeof(a) ? "no answer" : strerror(-a.err));
		aborter_end(d);
		return -1;
	}
	if (a.kind == PD_ABORT_READY) {
		if (fcntl(d->abort_fd, F_SETFL, O_NONBLOCK)) {
			perror("policyd: the aborter's socket");
			aborter_end(d);
			return -1;
		}
		if (a.err > 0)
			pd_log(d, LOG_WARNING, "warning: cannot test whether this kernel can abort a "
			       "connection (no loopback to test on); policyd will try");
		return 0;
	}
	uname(&u);
	pd_log(d, LOG_WARNING, "warning: kernel %s cannot destroy a TCP socket through "
	       "sock_diag (%s: %s), so a denied connection is not aborted: it stays open and "
	       "its sends fail", u.release, hint(a.err), strerror(-a.err));
	aborter_end(d);
	return 0;
}

/* The aborter's answers: an entry goes once its connection was aborted or
 * is gone; one that could not be aborted stays, to be named again. */
static void answers(struct pd_daemon *d)
{
	struct pd_abort_ans a[PD_ABORT_BATCH];
	char src[64], dst[64];

	for (;;) {
		ssize_t n = recv(d->abort_fd, a, sizeof(a), MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			pd_log(d, LOG_ERR, "the process that aborts denied connections ended (%s): "
			       "from now on a denied connection stays open and its sends fail",
			       n ? strerror(errno) : "its socket closed");
			aborter_end(d);
			return;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(a[0]); i++) {
			if (!a[i].err || a[i].err == -ENOENT) {
				pd_bpf_doomed_forget(&d->l, a[i].q.cookie);
				continue;
			}
			if (!pd_log_may(d, "abort"))
				continue;
			pd_endpoint(src, sizeof(src), a[i].q.c.family, a[i].q.c.saddr, a[i].q.c.sport);
			pd_endpoint(dst, sizeof(dst), a[i].q.c.family, a[i].q.c.daddr, a[i].q.c.dport);
			pd_log(d, LOG_ERR, "abort failed: src=%s dst=%s: %s; its sends fail, tried "
			       "again in %llu s", src, dst, strerror(-a[i].err),
			       PD_ABORT_ASK_AGAIN_NS / 1000000000);
		}
	}
}

/* Send n requests in one datagram. final: wait for room (at most a second
 * per datagram). Returns 0, or -1 when they did not go. */
static int ask(struct pd_daemon *d, const struct pd_abort_req *q, size_t n, bool final)
{
	struct pollfd pf = { .fd = d->abort_fd, .events = POLLOUT };

	while (send(d->abort_fd, q, n * sizeof(*q), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN || !final || poll(&pf, 1, 1000) != 1)
			return -1;
	}
	return 0;
}

/* Name the entries of a batch of pd_doomed that wait for it; each named
 * one is marked (asked). Returns the entries still to name. */
static size_t name_batch(struct pd_daemon *d, const uint64_t *keys, struct pd_doomed *v,
			 size_t n, bool final)
{
	struct pd_abort_req q[PD_ABORT_BATCH];
	uint64_t now = mono_ns();
	size_t nq = 0, behind = 0, at[PD_ABORT_BATCH];
	char src[64], dst[64];

	for (size_t i = 0; i <= n; i++) {
		if (i < n && v[i].asked > d->abort_since && now - v[i].asked < PD_ABORT_ASK_AGAIN_NS)
			continue;       /* under way */
		if (i < n && d->abort_netns && v[i].netns && v[i].netns != d->abort_netns) {
			/* sock_diag acts in the aborter's namespace only */
			if (pd_log_may(d, "abort")) {
				pd_endpoint(src, sizeof(src), v[i].family, v[i].saddr, v[i].sport);
				pd_endpoint(dst, sizeof(dst), v[i].family, v[i].daddr, v[i].dport);
				pd_log(d, LOG_ERR, "abort failed: src=%s dst=%s is in another network "
				       "namespace than policyd; it stays open, its sends fail", src,
				       dst);
			}
			pd_bpf_doomed_forget(&d->l, keys[i]);
			continue;
		}
		if (i < n) {
			q[nq].cookie = keys[i];
			q[nq].c = v[i];
			at[nq++] = i;
		}
		if (!nq || (nq < PD_ABORT_BATCH && i < n))
			continue;
		if (d->abort_fd < 0 || ask(d, q, nq, final)) {
			behind += nq;
		} else {
			for (size_t k = 0; k < nq; k++) {
				v[at[k]].asked = now;
				pd_bpf_doomed_update(&d->l, keys[at[k]], &v[at[k]]);
			}
		}
		nq = 0;
	}
	return behind;
}

/* Walk pd_doomed and name what waits. Returns the entries left unnamed
 * (no room on the socket), or -1 when the map could not be read. */
static long walk(struct pd_daemon *d, bool final)
{
	static uint64_t keys[256];
	static struct pd_doomed vals[256];
	int map = bpf_map__fd(d->l.skel->maps.pd_doomed);
	uint64_t token = 0;
	long behind = 0;
	bool first = true, last = false;

	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	while (!last) {
		uint32_t count = 256;
		int err = bpf_map_lookup_batch(map, first ? NULL : &token, &token, keys, vals,
					       &count, &opts);

		first = false;
		if (err && errno != ENOENT) {
			pd_log(d, LOG_ERR, "cannot read the connections to abort (pd_doomed): %s",
			       strerror(errno));
			return -1;
		}
		last = err != 0;
		behind += (long)name_batch(d, keys, vals, count, final);
	}
	return behind;
}

bool pd_abort_pass(struct pd_daemon *d)
{
	double now;
	uint64_t n;
	long behind;

	if (d->abort_fd < 0)
		return false;
	answers(d);
	if (d->abort_fd < 0)
		return false;
	/* a walk when the data plane doomed a connection since the last,
	 * when connections wait to be named, and once a second whatever
	 * happened (a count read while an entry was being added) */
	n = pd_trouble_total(d, PD_TR_ABORTS);
	now = mono_ns() / 1e6;
	if (n == d->abort_seen && !d->abort_behind && now - d->abort_walk < 1000)
		return false;
	if (now - d->abort_walk < PD_ABORT_GAP_MS)
		return true;
	d->abort_walk = now;
	d->abort_seen = n;
	behind = walk(d, false);
	d->abort_behind = behind > 0;
	return d->abort_behind;
}

void pd_abort_stop(struct pd_daemon *d)
{
	if (d->abort_fd >= 0 && d->l.skel) {
		/* what is doomed now is aborted now: after a detach its sends
		 * would pass */
		answers(d);
		if (d->abort_fd >= 0 && walk(d, true) > 0)
			pd_log(d, LOG_ERR, "stopping: some denied connections could not be named to "
			       "the aborter; they stay open");
	}
	aborter_end(d);
}
