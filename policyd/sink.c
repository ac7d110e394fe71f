// SPDX-License-Identifier: GPL-2.0-only
/*
 * Redirect sinks. A sink's socket (policyd's end of a loopback TCP pair)
 * sits in pd_sinks, where the data plane diverts messages to; policyd
 * only drains it. Each diverted message becomes one escaped record in
 * the sink's file, made from its redirect event (pd_events) and its
 * bytes as the data plane copied them (pd_sink_data): a record holds its
 * own message's bytes, or says which are missing, never another
 * connection's. Sink files are shared by path and opened again on SIGHUP.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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
	v->since = pd_now_ms();
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
			pd_event_describe(d, &v->ev, common, sizeof(common));
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

void pd_sink_event(struct pd_daemon *d, const struct pd_event *e)
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
static void drain(struct pd_daemon *d)
{
	static uint8_t scratch[65536];

	for (int g = 0; g < 2; g++)
		for (size_t i = 0; i < d->nsinks[g]; i++)
			while (recv(d->sinks[g][i].rx, scratch, sizeof(scratch), MSG_DONTWAIT) > 0)
				;
}

void pd_sinks_tick(struct pd_daemon *d, double now)
{
	drain(d);
	for (size_t i = 0; i < d->ndiverts;) {
		if (now - d->diverts[i].since < PD_DIVERT_WAIT_MS)
			i++;
		else
			divert_write(d, i);
	}
}

void pd_sinks_report(struct pd_daemon *d)
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
	for (size_t i = 0; i < n; i++) {
		int err = pd_bpf_write_sink(&d->l, gen, (uint32_t)i, s[i].rx);

		if (err) {
			snprintf(why, cap, "sink %s cannot take diverted messages: %s", s[i].name,
				 strerror(-err));
			return err;
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
	drain(d);
	while (d->ndiverts)
		divert_write(d, 0);
	free(d->diverts);
	d->diverts = NULL;
	d->capdiverts = 0;
	pd_sinks_report(d);
	for (int g = 0; g < 2; g++) {
		pd_sinks_close(d, d->sinks[g], d->nsinks[g]);
		d->nsinks[g] = 0;
	}
}
