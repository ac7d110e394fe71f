// SPDX-License-Identifier: GPL-2.0-only
/*
 * Events from the data plane: each deny, redirect and audit record becomes
 * one log line (DESIGN.md's format, key=value in a fixed order), limited to
 * log_rate lines per second with the excess counted and reported. Diverted
 * messages are read from policyd's own sink sockets and appended to the
 * sink files, one escaped record per line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon.h"
#include "policyd.skel.h"

/* How long a sink waits for the bytes an event announced. */
#define PD_SINK_WAIT_MS 2000

/* Append \xHH for c at out + o; returns the new length. */
static size_t hex_byte(char *out, size_t o, uint8_t c)
{
	static const char hex[] = "0123456789abcdef";

	out[o++] = '\\';
	out[o++] = 'x';
	out[o++] = hex[c >> 4];
	out[o++] = hex[c & 15];
	return o;
}

size_t pd_escape(char *out, size_t cap, const uint8_t *p, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 5 < cap; i++) {
		uint8_t c = p[i];

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c == '\r' || c == '\n' || c == '\t') {
			out[o++] = '\\';
			out[o++] = c == '\r' ? 'r' : c == '\n' ? 'n' : 't';
		} else if (c >= 0x20 && c < 0x7f) {
			out[o++] = (char)c;
		} else {
			o = hex_byte(out, o, c);
		}
	}
	out[o] = '\0';
	return o;
}

/* A process name as one token: anything but [A-Za-z0-9._+-] as \xHH. */
static void escape_comm(char *out, size_t cap, const char *comm)
{
	size_t o = 0;

	for (size_t i = 0; i < PD_COMM_LEN && comm[i] && o + 5 < cap; i++) {
		uint8_t c = (uint8_t)comm[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '_' || c == '+' || c == '-')
			out[o++] = (char)c;
		else
			o = hex_byte(out, o, c);
	}
	out[o] = '\0';
}

static void endpoint(char *out, size_t cap, uint8_t family, const uint32_t *addr, uint16_t port)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (family == AF_INET6) {
		inet_ntop(AF_INET6, addr, a, sizeof(a));
		snprintf(out, cap, "[%s]:%u", a, port);
	} else {
		inet_ntop(AF_INET, addr, a, sizeof(a));
		snprintf(out, cap, "%s:%u", a, port);
	}
}

static const char *service_name(const struct pd_daemon *d, uint32_t svc)
{
	return svc < d->pol.nservices ? d->pol.services[svc].name : "?";
}

/* The sender's name when the data plane could not read it (a refusal by
 * the egress program): from /proc while the process lives; "-" else. */
static void comm_of(const struct pd_event *e, char *out, size_t cap)
{
	char path[64], name[PD_COMM_LEN + 1] = "";
	FILE *f;

	if (e->comm[0]) {
		escape_comm(out, cap, e->comm);
		return;
	}
	snprintf(path, sizeof(path), "/proc/%u/comm", e->tgid);
	f = e->tgid ? fopen(path, "re") : NULL;
	if (f && fgets(name, sizeof(name), f))
		name[strcspn(name, "\n")] = '\0';
	if (f)
		fclose(f);
	if (name[0])
		escape_comm(out, cap, name);
	else
		snprintf(out, cap, "-");
}

/* The common part of a log line and a sink record. */
static void describe(const struct pd_daemon *d, const struct pd_event *e, char *out, size_t cap)
{
	char comm[PD_COMM_LEN * 4 + 1], src[64], dst[64];

	comm_of(e, comm, sizeof(comm));
	if (!e->sport && !e->dport) {
		/* a socket refused as it was made: no ends yet */
		snprintf(src, sizeof(src), "-");
		snprintf(dst, sizeof(dst), "-");
		snprintf(out, cap, "service=%s pid=%u comm=%s uid=%u src=%s dst=%s len=%u",
			 e->verdict >= PD_V_REFUSE && !e->service && e->cause == PD_TR_MPTCP ?
			 "-" : service_name(d, e->service), e->tgid, comm, e->uid, src, dst, e->len);
		return;
	}
	endpoint(src, sizeof(src), e->family, e->saddr, e->sport);
	endpoint(dst, sizeof(dst), e->family, e->daddr, e->dport);
	snprintf(out, cap, "service=%s pid=%u comm=%s uid=%u src=%s dst=%s len=%u",
		 service_name(d, e->service), e->tgid, comm, e->uid, src, dst, e->len);
}

/* Read exactly n diverted bytes from a sink socket into buf (at most cap
 * kept). Returns the bytes read. */
static size_t sink_read(int fd, uint8_t *buf, size_t cap, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		uint8_t scratch[4096];
		size_t want = n - got;
		ssize_t r;

		if (poll(&pf, 1, PD_SINK_WAIT_MS) <= 0)
			break;
		if (got < cap) {
			if (want > cap - got)
				want = cap - got;
			r = recv(fd, buf + got, want, MSG_DONTWAIT);
		} else {
			r = recv(fd, scratch, want > sizeof(scratch) ? sizeof(scratch) : want,
				 MSG_DONTWAIT);
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

static void sink_record(struct pd_daemon *d, const struct pd_event *e, const char *common)
{
	struct pd_sink_rt *s;
	static uint8_t data[1 << 20];
	static char esc[(1 << 20) * 4 + 1];
	char stamp[64], *rec;
	struct timespec ts;
	struct tm tm;
	size_t got;
	int len;

	if (e->sink >= d->nsinks)
		return;
	s = &d->sinks[e->sink];
	got = sink_read(s->rx, data, sizeof(data), e->bytes);
	pd_escape(esc, sizeof(esc), data, got < sizeof(data) ? got : sizeof(data));
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	len = asprintf(&rec, "time=%s.%03ldZ rule=%u sink=%s %s bytes=%zu%s data=\"%s\"\n",
		       stamp, ts.tv_nsec / 1000000, e->rule_id, s->name, common, got,
		       got < e->bytes ? " lost=yes" : "", esc);
	if (len < 0)
		return;
	if (write(s->file, rec, (size_t)len) != len)
		pd_log(d, LOG_ERR, "sink %s: cannot write %s: %s", s->name, s->path,
		       strerror(errno));
	if (got < e->bytes)
		pd_log(d, LOG_WARNING, "sink %s: %u diverted bytes announced, %zu arrived",
		       s->name, e->bytes, got);
	free(rec);
}

/* Whether one more event line fits this second's log_rate. */
static bool may_log(struct pd_daemon *d)
{
	time_t now = time(NULL);

	if (now != d->window) {
		pd_tick(d);
		d->window = now;
		d->in_window = 0;
	}
	if (d->log_rate && d->in_window >= d->log_rate) {
		d->suppressed++;
		return false;
	}
	d->in_window++;
	return true;
}

/* The id of rule index i of the running policy, as text in buf. */
static const char *rule_id(const struct pd_daemon *d, uint32_t i, char *buf)
{
	if (i && i <= d->img.nrules)
		snprintf(buf, 16, "%u", d->img.rules[i].id);
	else
		snprintf(buf, 16, "?");
	return buf;
}

int pd_on_event(void *ctx, void *data, size_t size)
{
	struct pd_daemon *d = ctx;
	const struct pd_event *e = data;
	char common[512], ex[PD_EXCERPT_MAX * 4 + 1], rule[16];
	const char *what;
	int prio;

	if (size < sizeof(*e))
		return 0;
	describe(d, e, common, sizeof(common));
	switch (e->verdict) {
	case PD_V_DENY: what = "deny"; prio = LOG_WARNING; break;
	case PD_V_REDIRECT: what = "redirect"; prio = LOG_NOTICE; break;
	case PD_V_REFUSE: what = "refuse"; prio = LOG_WARNING; break;
	case PD_V_UNJUDGED: what = "unjudged"; prio = LOG_WARNING; break;
	default: what = "audit"; prio = LOG_INFO; break;
	}
	if (e->verdict == PD_V_REFUSE || e->verdict == PD_V_UNJUDGED) {
		/* a send that could not be judged: refused (fail_mode closed)
		 * or passed (open), with its cause; a hold that lasted too
		 * long with the rule that kept the message held */
		char held[32] = "";

		if (e->cause == PD_TR_HOLD_TIMEOUT)
			snprintf(held, sizeof(held), " rule=%s", e->audit_id == PD_HELD_LINE ? "-" :
				 !e->audit_id ? "default" : rule_id(d, e->audit_id, rule));
		if (may_log(d))
			pd_log(d, prio, "%s cause=%s%s %s", what, pd_trouble_name(e->cause), held,
			       common);
		return 0;
	}
	if (e->verdict == PD_V_PASS && e->audit)
		snprintf(rule, sizeof(rule), "%u", e->audit_id);
	else if (e->rule_id)
		snprintf(rule, sizeof(rule), "%u", e->rule_id);
	else
		snprintf(rule, sizeof(rule), "default");
	if (e->verdict == PD_V_REDIRECT)
		sink_record(d, e, common);
	if (!may_log(d))
		return 0;
	pd_escape(ex, sizeof(ex), e->excerpt,
		  e->excerpt_len < PD_EXCERPT_MAX ? e->excerpt_len : PD_EXCERPT_MAX);
	if (e->verdict == PD_V_REDIRECT && e->sink < d->nsinks)
		pd_log(d, prio, "%s rule=%s %s sink=%s excerpt=\"%s\"", what, rule, common,
		       d->sinks[e->sink].name, ex);
	else
		pd_log(d, prio, "%s rule=%s %s excerpt=\"%s\"", what, rule, common, ex);
	return 0;
}

uint64_t pd_trouble_total(const struct pd_daemon *d, uint32_t what)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v, sum = 0;

	if (ncpu <= 0 || !(v = calloc((size_t)ncpu, sizeof(*v))))
		return 0;
	if (!bpf_map_lookup_elem(bpf_map__fd(d->l.skel->maps.pd_trouble), &what, v))
		for (int i = 0; i < ncpu; i++)
			sum += v[i];
	free(v);
	return sum;
}

/* Once a second: what was suppressed, lost or left unpoliced. */
void pd_tick(struct pd_daemon *d)
{
	static const struct { uint32_t what; int prio; const char *msg; } report[] = {
		{ PD_TR_RINGBUF, LOG_WARNING, "events lost: the ring buffer was full (verdicts "
		  "were applied all the same)" },
		{ PD_TR_SOCKHASH_BUSY, LOG_ERR, "connections NOT policed: another sockmap user "
		  "holds the socket" },
		{ PD_TR_SOCKHASH_FULL, LOG_ERR, "connections NOT policed: the socket map refused "
		  "them (full?)" },
		{ PD_TR_NO_STATE, LOG_ERR, "messages dropped: no matching state for the socket" },
		{ PD_TR_TABLES, LOG_ERR, "messages dropped: the data plane could not read the "
		  "message or its tables" },
	};

	if (d->suppressed) {
		pd_log(d, LOG_WARNING, "suppressed %llu event lines over log_rate=%u per second",
		       (unsigned long long)d->suppressed, d->log_rate);
		d->suppressed = 0;
	}
	if (!d->l.skel)
		return;
	for (size_t i = 0; i < sizeof(report) / sizeof(report[0]); i++) {
		uint64_t now = pd_trouble_total(d, report[i].what);

		if (now > d->trouble_seen[report[i].what])
			pd_log(d, report[i].prio, "%llu %s",
			       (unsigned long long)(now - d->trouble_seen[report[i].what]),
			       report[i].msg);
		d->trouble_seen[report[i].what] = now;
	}
}

/* A connected loopback TCP pair; *rx is the end the data plane delivers to. */
static int tcp_pair(int *rx, int *peer)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c = -1, s = -1;

	if (l < 0)
		return -1;
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &al))
		goto fail;
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)))
		goto fail;
	s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0)
		goto fail;
	close(l);
	*rx = s;
	*peer = c;
	return 0;
fail:
	if (c >= 0)
		close(c);
	close(l);
	return -1;
}

int pd_sinks_open(struct pd_daemon *d, const struct pd_policy *p, struct pd_sink_rt *out,
		  size_t *n)
{
	*n = 0;
	for (size_t i = 0; i < p->nsinks; i++) {
		struct pd_sink_rt *s = &out[i];

		memset(s, 0, sizeof(*s));
		snprintf(s->name, sizeof(s->name), "%s", p->sinks[i].name);
		for (size_t j = 0; j < d->nsinks && out != d->sinks; j++) {
			const struct pd_sink_rt *c = &d->sinks[j];

			if (strcmp(c->name, s->name) || strcmp(c->path, p->sinks[i].file))
				continue;
			s->path = strdup(c->path);
			s->file = fcntl(c->file, F_DUPFD_CLOEXEC, 3);
			s->rx = fcntl(c->rx, F_DUPFD_CLOEXEC, 3);
			s->peer = fcntl(c->peer, F_DUPFD_CLOEXEC, 3);
			break;
		}
		if (s->path) {
			if (s->file < 0 || s->rx < 0 || s->peer < 0) {
				pd_log(d, LOG_ERR, "sink %s: %s", s->name, strerror(errno));
				*n = i + 1;
				pd_sinks_close(out, *n);
				return -1;
			}
			*n = i + 1;
			continue;
		}
		s->path = strdup(p->sinks[i].file);
		s->file = open(p->sinks[i].file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (!s->path || s->file < 0) {
			pd_log(d, LOG_ERR, "sink %s: cannot open %s: %s", s->name,
			       p->sinks[i].file, strerror(errno));
			free(s->path);
			pd_sinks_close(out, i);
			return -1;
		}
		if (tcp_pair(&s->rx, &s->peer)) {
			pd_log(d, LOG_ERR, "sink %s: cannot make its loopback socket: %s",
			       s->name, strerror(errno));
			close(s->file);
			free(s->path);
			pd_sinks_close(out, i);
			return -1;
		}
		*n = i + 1;
	}
	return 0;
}

void pd_sinks_close(struct pd_sink_rt *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		close(s[i].file);
		close(s[i].rx);
		close(s[i].peer);
		free(s[i].path);
	}
}
