// SPDX-License-Identifier: GPL-2.0-only
/*
 * Adoption: connections that were already open when policyd started are
 * put under policy too. For every process in the policed cgroup (and its
 * descendants), every established TCP socket whose port belongs to a
 * service is duplicated with pidfd_getfd(2), given its matching state and
 * added to the socket map, exactly as the sock_ops program does for new
 * connections. A socket the sock_ops program already holds is left alone.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>

#include "daemon.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

/* The service of a port pair's direction: remote port for "to", local
 * port for "from"; -1 for none. */
static int service_by(const struct pd_image *img, uint8_t dir, uint16_t port)
{
	for (uint32_t i = 0; i < img->nports; i++)
		if (img->port_keys[i].dir == dir && img->port_keys[i].port == port)
			return (int)img->port_services[i];
	return -1;
}

/* Whether a TCP socket of process pid's network namespace listens on
 * local port port (/proc/PID/net/tcp and tcp6): the connection on that
 * port was accepted, not made. */
static bool listens_on(pid_t pid, uint16_t port)
{
	static const char *const files[] = { "tcp", "tcp6" };
	char path[64], line[512];
	unsigned lport, st;

	for (int i = 0; i < 2; i++) {
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/net/%s", (int)pid, files[i]);
		f = fopen(path, "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			/* "sl local_address:port rem_address:port st ..." in hex */
			const char *c = strchr(line, ':');

			if (!c || !(c = strchr(c + 1, ':')) ||
			    sscanf(c + 1, "%x %*s %x", &lport, &st) != 2)
				continue;
			if (st == 0x0a /* TCP_LISTEN */ && lport == port) {
				fclose(f);
				return true;
			}
		}
		fclose(f);
	}
	return false;
}

/* The service a connection belongs to, as the sock_ops program decides:
 * where its remote port names a "to" service and its local port a
 * "from" one, the side that made it wins ("from" for one accepted on a
 * listening port, "to" for one connected), never the port the peer
 * chose. *accepted: which it was taken for. */
static int service_of(const struct pd_image *img, pid_t pid, uint16_t remote, uint16_t local,
		      bool *accepted)
{
	int to = service_by(img, PD_DIR_TO, remote), from = service_by(img, PD_DIR_FROM, local);

	*accepted = from >= 0 && (to < 0 || listens_on(pid, local));
	return *accepted ? from : to;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* How long the socket's stream is: the bytes the peer acknowledged and
 * those queued after them, read with no acknowledgement in between (an
 * acknowledgement moves bytes from the one to the other). Read it again
 * when one came; after a few tries, the later count, which can only be
 * too long: bytes a send then under way queued would pass, never bytes
 * queued before be refused. Returns 0 or -1 with errno. */
static int stream_length(int fd, __u64 *len)
{
	/* the kernel's struct tcp_info goes on past glibc's */
	struct info {
		struct tcp_info glibc;
		uint64_t pacing_rate, max_pacing_rate;
		uint64_t bytes_acked;   /* tcpi_bytes_acked (Linux 4.1) */
	} a, b;
	socklen_t la = sizeof(a), lb = sizeof(b);
	int queued;

	_Static_assert(offsetof(struct info, bytes_acked) == 120, "tcpi_bytes_acked");
	for (int i = 0; i < 8; i++) {
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &a, &la) || ioctl(fd, SIOCOUTQ, &queued) ||
		    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &b, &lb))
			return -1;
		if (la < sizeof(a) || lb < sizeof(b)) {
			errno = ENOTSUP;
			return -1;
		}
		*len = b.bytes_acked + (uint64_t)queued;
		if (a.bytes_acked == b.bytes_acked)
			break;
	}
	return 0;
}

/* A socket that cannot be adopted: err (the -errno of the call that
 * failed), and why, with what failed. */
static int cannot_adopt(int err, uint16_t port, const char *what, char *why, size_t cap)
{
	snprintf(why, cap, "cannot adopt a connection to port %u: %s", port, what);
	return err ? err : -EIO;
}

/* Adopt one socket (a duplicate fd in our table). 1 adopted, 0 not ours,
 * or -errno with why. */
static int adopt_fd(struct pd_daemon *d, pid_t pid, int fd, char *why, size_t cap)
{
	struct sockaddr_storage la, ra;
	socklen_t ll = sizeof(la), rl = sizeof(ra), ol;
	struct tcp_info ti;
	struct pd_sock st;
	int type, proto, svc, err;
	uint64_t cookie;
	bool accepted;

	ol = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ol) || type != SOCK_STREAM)
		return 0;
	ol = sizeof(proto);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &ol) || proto != IPPROTO_TCP)
		return 0;
	if (getsockname(fd, (struct sockaddr *)&la, &ll) ||
	    getpeername(fd, (struct sockaddr *)&ra, &rl))
		return 0;
	if (la.ss_family != AF_INET && la.ss_family != AF_INET6)
		return 0;
	ol = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &ol) || ti.tcpi_state != TCP_ESTABLISHED)
		return 0;
	svc = service_of(&d->img, pid, port_of(&ra), port_of(&la), &accepted);
	if (svc < 0)
		return 0;
	ol = sizeof(cookie);
	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &ol))
		return 0;
	memset(&st, 0, sizeof(st));
	st.cur.m.state = PD_NO_STATE;
	st.cookie = cookie;
	st.service = (uint32_t)svc;
	st.cur.gen = d->gen;
	st.cur.slot_gen = d->slot_gen[d->gen];
	st.rport = port_of(&ra);
	st.lport = port_of(&la);
	/* what it queued before now was not ours to judge; what it queues
	 * from now on without a verdict (a send already under way) is
	 * refused by the data plane */
	if (stream_length(fd, &st.adopted_end))
		return cannot_adopt(-errno, port_of(&ra), "its stream's length", why, cap);
	st.flags = PD_SK_UNSYNCED | (accepted ? 0 : PD_SK_ACTIVE);
	/* a socket the sock_ops program already set up keeps its state */
	err = pd_bpf_write_sock_state(&d->l, fd, &st, false);
	if (err == -EEXIST)
		return 0;
	if (err)
		return cannot_adopt(err, port_of(&ra), "socket storage", why, cap);
	err = pd_bpf_map_socket(&d->l, cookie, fd);
	if (err && err != -EEXIST) {
		/* as the sock_ops program does: no byte of it can be judged,
		 * so the egress program refuses them (fail_mode closed) */
		int refused = err;

		st.flags = PD_SK_UNMAPPED;
		st.cause = refused == -EBUSY ? PD_TR_SOCKHASH_BUSY : PD_TR_SOCKHASH_FULL;
		if ((err = pd_bpf_write_sock_state(&d->l, fd, &st, true)))
			return cannot_adopt(err, port_of(&ra), "socket storage", why, cap);
		pd_log(d, LOG_ERR, "connection %u -> %u NOT policed: the socket map refused it (%s): "
		       "its bytes are %s", port_of(&la), port_of(&ra), strerror(-refused),
		       d->pol.daemon.fail_open ? "passed unjudged (fail_mode open)" :
		       "refused and the connection aborted (fail_mode closed)");
		return 0;
	}
	return 1;
}

/* Every socket of process pid. 0, or -errno with why. */
static int adopt_pid(struct pd_daemon *d, pid_t pid, unsigned *adopted, char *why, size_t cap)
{
	char path[64], link[64];
	struct dirent *de;
	DIR *dir;
	int pidfd, err = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return 0;       /* gone meanwhile */
	dir = opendir(path);
	if (!dir) {
		close(pidfd);
		return 0;
	}
	while (!err && (de = readdir(dir))) {
		char full[400];
		ssize_t n;
		int tfd, fd, r;

		if (de->d_name[0] == '.')
			continue;
		snprintf(full, sizeof(full), "%s/%s", path, de->d_name);
		n = readlink(full, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strncmp(link, "socket:", 7))
			continue;
		tfd = atoi(de->d_name);
		fd = (int)syscall(SYS_pidfd_getfd, pidfd, tfd, 0);
		if (fd < 0) {
			if (errno == EBADF)
				continue;
			err = -errno;
			snprintf(why, cap, "cannot inspect the sockets of pid %d", pid);
			break;
		}
		r = adopt_fd(d, pid, fd, why, cap);
		close(fd);
		if (r < 0)
			err = r;
		else
			*adopted += (unsigned)r;
	}
	closedir(dir);
	close(pidfd);
	return err;
}

/* Every process of cgroup dir and its descendants. 0, or -errno with why. */
static int adopt_cgroup(struct pd_daemon *d, const char *dir, unsigned *adopted, int depth,
			char *why, size_t cap)
{
	char path[4200];
	struct dirent *de;
	int pid, err = 0;
	FILE *f;
	DIR *dd;

	if (depth > 64)
		return 0;
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "re");
	if (f) {
		while (!err && fscanf(f, "%d", &pid) == 1)
			if (pid != getpid())
				err = adopt_pid(d, pid, adopted, why, cap);
		fclose(f);
	}
	dd = err ? NULL : opendir(dir);
	while (dd && !err && (de = readdir(dd))) {
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		err = adopt_cgroup(d, path, adopted, depth + 1, why, cap);
	}
	if (dd)
		closedir(dd);
	return err;
}

int pd_adopt(struct pd_daemon *d, unsigned *adopted, char *why, size_t cap)
{
	*adopted = 0;
	return adopt_cgroup(d, d->cgroup, adopted, 0, why, cap);
}
