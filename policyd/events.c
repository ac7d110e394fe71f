// SPDX-License-Identifier: GPL-2.0-only
/*
 * Events from the data plane: each deny, redirect and audit record becomes
 * one log line (DESIGN.md's format, key=value in a fixed order), limited to
 * log_rate lines per second with the excess counted by kind and reported
 * once a second. A diverted message becomes one escaped record in its
 * sink file, made from its redirect event and its bytes as the data plane
 * copied them (pd_sink_data): a record holds its own message's bytes, or
 * says which are missing, never another connection's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon.h"
#include "policyd.skel.h"

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

void pd_endpoint(char *out, size_t cap, uint8_t family, const uint32_t *addr, uint16_t port)
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
	pd_endpoint(src, sizeof(src), e->family, e->saddr, e->sport);
	pd_endpoint(dst, sizeof(dst), e->family, e->daddr, e->dport);
	snprintf(out, cap, "service=%s pid=%u comm=%s uid=%u src=%s dst=%s len=%u",
		 service_name(d, e->service), e->tgid, comm, e->uid, src, dst, e->len);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- log_rate ---- */

bool pd_log_may(struct pd_daemon *d, const char *kind)
{
	struct pd_log_kind *k = NULL;
	long now = (long)(now_ms() / 1000);

	if (now != d->window) {
		pd_tick(d);
		d->window = now;
		d->in_window = 0;
	}
	if (!d->log_rate || d->in_window < d->log_rate) {
		d->in_window++;
		return true;
	}
	for (size_t i = 0; i < PD_LOG_KINDS && !k; i++)
		if (!d->kinds[i].name[0] || !strcmp(d->kinds[i].name, kind))
			k = &d->kinds[i];
	if (!k)
		k = &d->kinds[PD_LOG_KINDS - 1];        /* "other" */
	if (!k->name[0])
		snprintf(k->name, sizeof(k->name), "%s", k == &d->kinds[PD_LOG_KINDS - 1] ?
			 "other" : kind);
	k->suppressed++;
	return false;
}

/* One line for the second that ended: how many lines of each kind
 * log_rate held back. */
static void report_suppressed(struct pd_daemon *d)
{
	char line[512] = "";
	size_t o = 0;

	for (size_t i = 0; i < PD_LOG_KINDS && d->kinds[i].name[0]; i++) {
		if (!d->kinds[i].suppressed)
			continue;
		o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%llu %s", o ? ", " : "",
				      (unsigned long long)d->kinds[i].suppressed,
				      d->kinds[i].name);
		if (o >= sizeof(line))
			o = sizeof(line) - 1;
		d->kinds[i].suppressed = 0;
	}
	if (o)
		pd_log(d, LOG_WARNING, "suppressed %s lines over log_rate=%u per second", line,
		       d->log_rate);
}

/* ---- sink records ---- */

/* A diversion: its event and its bytes, which come apart (pd_events,
 * pd_sink_data), each possibly lost when a ring buffer was full. */
struct pd_divert {
	uint64_t seq;
	double since;           /* first heard of (ms, monotonic) */
	bool have_event;
	bool hole;              /* a piece is missing: bytes after it are not kept */
	struct pd_event ev;
	char sink[PD_NAME_MAX];
	struct pd_sink_file *file;      /* a reference, dropped when written */
	uint8_t *data;
	uint32_t got;           /* bytes in data, from the start */
};

/* How long a diversion waits for its event or the rest of its bytes. */
#define PD_DIVERT_WAIT_MS 2000
/* Diversions and their bytes held at most: the oldest is written early. */
#define PD_DIVERT_MAX 4096
#define PD_DIVERT_BYTES (64u << 20)

static void file_put(struct pd_daemon *d, struct pd_sink_file *f)
{
	if (!f || --f->refs)
		return;
	for (size_t i = 0; i < d->nfiles; i++)
		if (d->files[i] == f) {
			d->files[i] = d->files[--d->nfiles];
			break;
		}
	close(f->fd);
	free(f->path);
	free(f);
}

/* The sink a diversion of slot gen goes to; false if there is none. */
static bool sink_of(struct pd_daemon *d, struct pd_divert *v, uint32_t gen, uint32_t sink)
{
	struct pd_sink_rt *s;

	if (v->file)
		return true;
	if (gen > 1 || sink >= d->nsinks[gen])
		return false;
	s = &d->sinks[gen][sink];
	snprintf(v->sink, sizeof(v->sink), "%s", s->name);
	v->file = s->file;
	v->file->refs++;
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

static struct pd_divert *divert_find(struct pd_daemon *d, uint64_t seq)
{
	struct pd_divert *v;

	for (size_t i = d->ndiverts; i-- > 0;)
		if (d->diverts[i].seq == seq)
			return &d->diverts[i];
	if (d->ndiverts == d->capdiverts) {
		size_t cap = d->capdiverts ? d->capdiverts * 2 : 64;

		v = realloc(d->diverts, cap * sizeof(*v));
		if (!v)
			return NULL;
		d->diverts = v;
		d->capdiverts = cap;
	}
	v = &d->diverts[d->ndiverts++];
	memset(v, 0, sizeof(*v));
	v->seq = seq;
	v->since = now_ms();
	return v;
}

/* Append rec to a sink file; a failure is counted for the report. */
static void sink_write(struct pd_sink_file *f, const char *rec, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t w = write(f->fd, rec + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			f->failed++;
			f->err = w < 0 ? errno : ENOSPC;
			return;
		}
		done += (size_t)w;
	}
}

/* Write the record of diversion i and forget it. It holds the message's
 * own bytes, as many as arrived, and says how many are missing. */
static void divert_write(struct pd_daemon *d, size_t i)
{
	struct pd_divert *v = &d->diverts[i];
	uint32_t want = 0, lost = 0, cut = 0;
	char stamp[64], common[512], *esc, *rec = NULL;
	struct timespec ts;
	struct tm tm;
	int len;

	if (v->have_event) {
		want = v->ev.bytes < PD_SINK_KEEP ? v->ev.bytes : PD_SINK_KEEP;
		lost = want - (v->got < want ? v->got : want);
		cut = v->ev.bytes - want;
	}
	esc = malloc((size_t)v->got * 4 + 1);
	if (v->file && esc) {
		pd_escape(esc, (size_t)v->got * 4 + 1, v->data, v->got);
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		if (v->have_event) {
			describe(d, &v->ev, common, sizeof(common));
			len = asprintf(&rec, "time=%s.%03ldZ rule=%u sink=%s %s bytes=%u%s%.0u%s%.0u "
				       "data=\"%s\"\n", stamp, ts.tv_nsec / 1000000, v->ev.rule_id,
				       v->sink, common, v->got < want ? v->got : want,
				       lost ? " lost=" : "", lost, cut ? " cut=" : "", cut, esc);
		} else {
			/* its event was lost: whose bytes these are is unknown */
			len = asprintf(&rec, "time=%s.%03ldZ sink=%s origin=unknown bytes=%u "
				       "data=\"%s\"\n", stamp, ts.tv_nsec / 1000000, v->sink,
				       v->got, esc);
		}
		if (len > 0)
			sink_write(v->file, rec, (size_t)len);
		free(rec);
	}
	if (lost || !v->have_event)
		d->divert_lost++;
	free(esc);
	free(v->data);
	d->divert_bytes -= v->got;
	file_put(d, v->file);
	d->diverts[i] = d->diverts[--d->ndiverts];
}

static bool divert_complete(const struct pd_divert *v)
{
	uint32_t want;

	if (!v->have_event)
		return false;
	want = v->ev.bytes < PD_SINK_KEEP ? v->ev.bytes : PD_SINK_KEEP;
	return v->got >= want || v->hole;
}

/* A diversion to a sink that does not exist (cannot happen): nothing to
 * write, forget it. */
static void divert_drop(struct pd_daemon *d, struct pd_divert *v)
{
	free(v->data);
	d->divert_bytes -= v->got;
	file_put(d, v->file);
	*v = d->diverts[--d->ndiverts];
}

/* A redirect event: its diversion has its description now. */
static void divert_event(struct pd_daemon *d, const struct pd_event *e)
{
	struct pd_divert *v = divert_find(d, e->sink_seq);

	if (!v)
		return;
	v->have_event = true;
	v->ev = *e;
	if (!sink_of(d, v, e->gen, e->sink)) {
		divert_drop(d, v);
		return;
	}
	if (divert_complete(v))
		divert_write(d, (size_t)(v - d->diverts));
}

int pd_on_sink_data(void *ctx, void *data, size_t size)
{
	struct pd_daemon *d = ctx;
	const struct pd_sink_piece *p = data;
	struct pd_divert *v;
	uint8_t *nd;

	if (size < offsetof(struct pd_sink_piece, data) ||
	    p->len > size - offsetof(struct pd_sink_piece, data) || p->len > PD_SINK_PIECE)
		return 0;
	while (d->ndiverts && (d->ndiverts >= PD_DIVERT_MAX || d->divert_bytes > PD_DIVERT_BYTES))
		divert_write(d, 0);
	v = divert_find(d, p->seq);
	if (!v)
		return 0;
	if (!sink_of(d, v, p->gen, p->sink)) {
		divert_drop(d, v);
		return 0;
	}
	if (p->off != v->got || v->hole) {
		v->hole = true;         /* a piece before this one was lost */
	} else if (v->got + p->len <= PD_SINK_KEEP) {
		nd = realloc(v->data, v->got + p->len);
		if (!nd)
			return 0;
		v->data = nd;
		memcpy(v->data + v->got, p->data, p->len);
		v->got += p->len;
		d->divert_bytes += p->len;
	}
	if (divert_complete(v))
		divert_write(d, (size_t)(v - d->diverts));
	return 0;
}

/* Read and drop what the sink sockets received: the records are made
 * from pd_sink_data. */
static void sinks_drain(struct pd_daemon *d)
{
	static uint8_t scratch[65536];

	for (int g = 0; g < 2; g++)
		for (size_t i = 0; i < d->nsinks[g]; i++)
			while (recv(d->sinks[g][i].rx, scratch, sizeof(scratch), MSG_DONTWAIT) > 0)
				;
}

/* ---- events ---- */

int pd_on_event(void *ctx, void *data, size_t size)
{
	struct pd_daemon *d = ctx;
	const struct pd_event *e = data;
	char common[512], ex[PD_EXCERPT_MAX * 4 + 1], rule[16], pid[16], uid[16], len[16];
	char comm[PD_COMM_LEN * 4 + 1], src[64], dst[64];
	struct pd_log_field f[12];
	const char *what, *sink = NULL;
	size_t nf = 0;
	int prio;

	if (size < sizeof(*e))
		return 0;
	switch (e->verdict) {
	case PD_V_DENY:
		what = e->monitor ? "would-deny" : "deny";
		prio = LOG_WARNING;
		break;
	case PD_V_REDIRECT:
		what = e->monitor ? "would-redirect" : "redirect";
		prio = LOG_NOTICE;
		break;
	case PD_V_REFUSE: what = "refuse"; prio = LOG_WARNING; break;
	case PD_V_UNJUDGED: what = "unjudged"; prio = LOG_WARNING; break;
	default: what = "audit"; prio = LOG_INFO; break;
	}
	if (e->verdict == PD_V_REFUSE || e->verdict == PD_V_UNJUDGED) {
		/* a send that could not be judged: refused (fail_mode closed)
		 * or passed (open), with its cause; a hold that lasted too
		 * long with the rule that kept the message held */
		char held[32] = "";

		if (!pd_log_may(d, what))
			return 0;
		describe(d, e, common, sizeof(common));
		if (e->cause == PD_TR_HOLD_TIMEOUT)
			snprintf(held, sizeof(held), " rule=%s", e->audit_id == PD_HELD_LINE ? "-" :
				 !e->audit_id ? "default" : rule_id(d, e->audit_id, rule));
		pd_log(d, prio, "%s cause=%s%s %s", what, pd_trouble_name(e->cause), held, common);
		return 0;
	}
	if (e->verdict == PD_V_REDIRECT) {
		if (e->gen < 2 && e->sink < d->nsinks[e->gen])
			sink = d->sinks[e->gen][e->sink].name;
		if (!e->monitor)        /* monitor mode: nothing was diverted */
			divert_event(d, e);
	}
	if (!pd_log_may(d, what))
		return 0;
	if (e->verdict == PD_V_PASS && e->audit)
		snprintf(rule, sizeof(rule), "%u", e->audit_id);
	else if (e->verdict == PD_V_DENY && e->cause == PD_TR_MALFORMED)
		snprintf(rule, sizeof(rule), "malformed");      /* its framing cannot parse it */
	else if (e->rule_id)
		snprintf(rule, sizeof(rule), "%u", e->rule_id);
	else
		snprintf(rule, sizeof(rule), "default");
	describe(d, e, common, sizeof(common));
	pd_escape(ex, sizeof(ex), e->excerpt,
		  e->excerpt_len < PD_EXCERPT_MAX ? e->excerpt_len : PD_EXCERPT_MAX);
	/* the journal's fields: the line's keys, one by one */
	escape_comm(comm, sizeof(comm), e->comm);
	pd_endpoint(src, sizeof(src), e->family, e->saddr, e->sport);
	pd_endpoint(dst, sizeof(dst), e->family, e->daddr, e->dport);
	snprintf(pid, sizeof(pid), "%u", e->tgid);
	snprintf(uid, sizeof(uid), "%u", e->uid);
	snprintf(len, sizeof(len), "%u", e->len);
	f[nf++] = (struct pd_log_field){ "ACTION", what };
	f[nf++] = (struct pd_log_field){ "RULE", rule };
	f[nf++] = (struct pd_log_field){ "SERVICE", service_name(d, e->service) };
	f[nf++] = (struct pd_log_field){ "PID", pid };
	f[nf++] = (struct pd_log_field){ "COMM", comm };
	f[nf++] = (struct pd_log_field){ "UID", uid };
	f[nf++] = (struct pd_log_field){ "SRC", src };
	f[nf++] = (struct pd_log_field){ "DST", dst };
	f[nf++] = (struct pd_log_field){ "LEN", len };
	if (sink)
		f[nf++] = (struct pd_log_field){ "SINK", sink };
	if (e->excerpt_len)
		f[nf++] = (struct pd_log_field){ "EXCERPT", ex };
	if (sink)
		pd_log_fields(prio, f, nf, "%s rule=%s %s sink=%s excerpt=\"%s\"", what, rule,
			      common, sink, ex);
	else
		pd_log_fields(prio, f, nf, "%s rule=%s %s excerpt=\"%s\"", what, rule, common, ex);
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

/* What went wrong with the sinks in the second that ended. */
static void report_sinks(struct pd_daemon *d)
{
	for (size_t i = 0; i < d->nfiles; i++) {
		struct pd_sink_file *f = d->files[i];

		if (!f->failed)
			continue;
		pd_log(d, LOG_ERR, "sink file %s: %llu records not written: %s", f->path,
		       (unsigned long long)f->failed, strerror(f->err));
		f->failed = 0;
	}
	if (d->divert_lost) {
		pd_log(d, LOG_WARNING, "%llu sink records miss diverted bytes or their origin: "
		       "the ring buffer was full (each record says what is missing)",
		       (unsigned long long)d->divert_lost);
		d->divert_lost = 0;
	}
}

/* Once a second: what was suppressed, lost or left unpoliced. */
static void report(struct pd_daemon *d)
{
	static const struct { uint32_t what; int prio; const char *msg; } troubles[] = {
		{ PD_TR_RINGBUF, LOG_WARNING, "events lost: the ring buffer was full (verdicts "
		  "were applied all the same)" },
		{ PD_TR_SOCKHASH_BUSY, LOG_ERR, "connections NOT policed: another sockmap user "
		  "holds the socket" },
		{ PD_TR_SOCKHASH_FULL, LOG_ERR, "connections NOT policed: the socket map refused "
		  "them (full?)" },
		{ PD_TR_NO_STATE, LOG_ERR, "messages dropped: no matching state for the socket" },
		{ PD_TR_TABLES, LOG_ERR, "messages dropped: the data plane could not read the "
		  "message or its tables" },
		{ PD_TR_ABORT_FULL, LOG_ERR, "denied connections not yet recorded to abort: more "
		  "wait at once than twice max_connections (each is recorded at its next send; "
		  "meanwhile its sends fail)" },
	};

	report_suppressed(d);
	report_sinks(d);
	pd_log_report_drops();
	if (!d->l.skel)
		return;
	for (size_t i = 0; i < sizeof(troubles) / sizeof(troubles[0]); i++) {
		uint64_t now = pd_trouble_total(d, troubles[i].what);

		if (now > d->trouble_seen[troubles[i].what])
			pd_log(d, troubles[i].prio, "%llu %s",
			       (unsigned long long)(now - d->trouble_seen[troubles[i].what]),
			       troubles[i].msg);
		d->trouble_seen[troubles[i].what] = now;
	}
}

void pd_tick(struct pd_daemon *d)
{
	static long reported;
	double now = now_ms();

	sinks_drain(d);
	for (size_t i = 0; i < d->ndiverts;) {
		if (now - d->diverts[i].since < PD_DIVERT_WAIT_MS)
			i++;
		else
			divert_write(d, i);
	}
	if ((long)(now / 1000) != reported) {
		reported = (long)(now / 1000);
		report(d);
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

/* The account a new sink file is given to: the one policyd runs as after
 * setup (it opens the file again on SIGHUP and reloads). */
static void sink_owner(const struct pd_daemon *d, uid_t *uid, gid_t *gid)
{
	const char *user = d->o->user ? d->o->user : d->pol.daemon.user ? d->pol.daemon.user :
			   PD_DEFAULT_USER;
	struct passwd *pw = geteuid() ? NULL : getpwnam(user);

	*uid = pw ? pw->pw_uid : (uid_t)-1;
	*gid = pw ? pw->pw_gid : (gid_t)-1;
}

/* Open path for appending records: a new file is made mode 0600 and,
 * made as root, given to the account policyd runs as. */
static int sink_file_open(const struct pd_daemon *d, const char *path)
{
	uid_t uid;
	gid_t gid;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);

	if (fd >= 0) {
		sink_owner(d, &uid, &gid);
		if (uid != (uid_t)-1 && fchown(fd, uid, gid)) {
			int err = errno;

			close(fd);
			unlink(path);
			errno = err;
			return -1;
		}
		return fd;
	}
	if (errno != EEXIST)
		return -1;
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd >= 0) {
		struct stat st;

		/* a FIFO or a device would block the loop or never end */
		if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
			close(fd);
			errno = EINVAL;
			return -1;
		}
		fcntl(fd, F_SETFL, O_WRONLY | O_APPEND);
	}
	return fd;
}

/* The open sink file of path, or a new one; NULL with why said. */
static struct pd_sink_file *file_get(struct pd_daemon *d, const char *path, char *why,
				     size_t cap)
{
	struct pd_sink_file *f;

	for (size_t i = 0; i < d->nfiles; i++)
		if (!strcmp(d->files[i]->path, path)) {
			d->files[i]->refs++;
			return d->files[i];
		}
	if (d->nfiles == sizeof(d->files) / sizeof(d->files[0])) {
		snprintf(why, cap, "more than %zu sink files open", d->nfiles);
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f || !(f->path = strdup(path))) {
		free(f);
		snprintf(why, cap, "out of memory");
		return NULL;
	}
	f->fd = sink_file_open(d, path);
	if (f->fd < 0) {
		snprintf(why, cap, "cannot open %s: %s%s", path,
			 errno == EINVAL ? "not a regular file" : strerror(errno),
			 errno == EACCES && geteuid() ? " (policyd runs as an unprivileged "
			 "account now: let it write the file, or its directory)" : "");
		free(f->path);
		free(f);
		return NULL;
	}
	f->refs = 1;
	d->files[d->nfiles++] = f;
	return f;
}

int pd_sinks_open(struct pd_daemon *d, const struct pd_policy *p, struct pd_sink_rt *out,
		  size_t *n, char *why, size_t cap)
{
	char reason[512];

	*n = 0;
	for (size_t i = 0; i < p->nsinks; i++) {
		struct pd_sink_rt *s = &out[i];

		memset(s, 0, sizeof(*s));
		snprintf(s->name, sizeof(s->name), "%s", p->sinks[i].name);
		s->file = file_get(d, p->sinks[i].file, reason, sizeof(reason));
		if (!s->file) {
			snprintf(why, cap, "sink %s: %s", s->name, reason);
			pd_sinks_close(d, out, i);
			return -1;
		}
		if (tcp_pair(&s->rx, &s->peer)) {
			snprintf(why, cap, "sink %s: cannot make its loopback socket: %s", s->name,
				 strerror(errno));
			file_put(d, s->file);
			pd_sinks_close(d, out, i);
			return -1;
		}
		*n = i + 1;
	}
	return 0;
}

int pd_sinks_install(struct pd_daemon *d, uint32_t gen, struct pd_sink_rt *s, size_t n,
		     char *why, size_t cap)
{
	int fd = bpf_map__fd(d->l.skel->maps.pd_sinks);

	for (size_t i = 0; i < n; i++) {
		uint32_t k = gen * PD_MAX_SINKS + (uint32_t)i;
		uint64_t sock = (uint64_t)s[i].rx;      /* the map's values are 64-bit */

		if (bpf_map_update_elem(fd, &k, &sock, BPF_ANY)) {
			snprintf(why, cap, "sink %s cannot take diverted messages: %s", s[i].name,
				 strerror(errno));
			return -1;
		}
	}
	/* what the slot held before: its sockets leave the map as they close */
	pd_sinks_close(d, d->sinks[gen], d->nsinks[gen]);
	memcpy(d->sinks[gen], s, n * sizeof(*s));
	d->nsinks[gen] = n;
	return 0;
}

void pd_sinks_close(struct pd_daemon *d, struct pd_sink_rt *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		close(s[i].rx);
		close(s[i].peer);
		file_put(d, s[i].file);
		s[i].file = NULL;
	}
}

void pd_sinks_reopen(struct pd_daemon *d)
{
	for (size_t i = 0; i < d->nfiles; i++) {
		struct pd_sink_file *f = d->files[i];
		struct stat now, was;
		int fd = sink_file_open(d, f->path);

		if (fd < 0) {
			pd_log(d, LOG_ERR, "sink file %s: cannot open it again: %s; records go on "
			       "to the file open before%s", f->path,
			       errno == EINVAL ? "not a regular file" : strerror(errno),
			       errno == EACCES ? " (policyd runs as an unprivileged account: let "
			       "it create files in the directory, or create the file for it)" : "");
			continue;
		}
		if (!fstat(fd, &now) && !fstat(f->fd, &was) && now.st_dev == was.st_dev &&
		    now.st_ino == was.st_ino) {
			close(fd);
			continue;
		}
		close(f->fd);
		f->fd = fd;
		pd_log(d, LOG_NOTICE, "sink file %s opened again (it had been moved or removed)",
		       f->path);
	}
}

void pd_sinks_finish(struct pd_daemon *d)
{
	sinks_drain(d);
	while (d->ndiverts)
		divert_write(d, 0);
	free(d->diverts);
	d->diverts = NULL;
	d->capdiverts = 0;
	report_sinks(d);
	for (int g = 0; g < 2; g++) {
		pd_sinks_close(d, d->sinks[g], d->nsinks[g]);
		d->nsinks[g] = 0;
	}
}
