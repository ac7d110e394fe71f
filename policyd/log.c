// SPDX-License-Identifier: GPL-2.0-only
/*
 * Log lines of the running daemon. The event loop only queues a line; a
 * writer thread takes it to the journal (sd_journal_send, with structured
 * fields), to syslog (our own client of /dev/log: a datagram per line, as
 * syslog(3) sends it, but one whose failures we see), or to stderr. A
 * syslog daemon that stops reading blocks the writer, never the loop that
 * aborts denied connections and fills the sinks: the queue is bounded, and
 * lines that find it full are counted and reported once there is room.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>

/* the lines' fields are the log's, not where in policyd they were sent */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#include <bpf/libbpf.h>

#include "log.h"

#define PD_SYSLOG_PATH "/dev/log"
#define PD_JOURNAL_PATH "/run/systemd/journal/socket"
/* Lines and bytes the queue holds: seconds of a busy log_rate. */
#define PD_LOG_QUEUE 4096
#define PD_LOG_QUEUE_BYTES (8u << 20)
#define PD_LOG_MAX_FIELDS 16
/* How long closing waits for a stuck reader before it gives up. */
#define PD_LOG_CLOSE_WAIT_MS 2000

/* One queued line: the message, then its journal fields, each "KEY=value",
 * all NUL-terminated one after the other in text. */
struct entry {
	int prio;
	unsigned nfields;
	size_t len;
	char *text;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t work;    /* a line was queued, or stop */
	pthread_cond_t idle;    /* the queue became empty */
	struct entry q[PD_LOG_QUEUE];
	unsigned head, n;
	size_t bytes;
	bool writing;           /* the writer holds a line it took */
	uint64_t dropped;       /* lines that found the queue full */
	bool started, stop;
	pthread_t thread;
	enum pd_log_target target;
	bool foreground;
	bool syslog_down;       /* said once: syslog went away */
	int no_syslog;          /* errno of /dev/log at start, until said */
	char instance[64];
	int fd;                 /* the /dev/log socket */
	int socktype;
	pid_t pid;
} L = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.work = PTHREAD_COND_INITIALIZER,
	.idle = PTHREAD_COND_INITIALIZER,
	.target = PD_LOG_STDERR,
	.foreground = true,
	.fd = -1,
};

static int syslog_connect(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	static const int types[] = { SOCK_DGRAM, SOCK_STREAM };
	int err = ENOENT;

	if (L.fd >= 0)
		close(L.fd);
	L.fd = -1;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", PD_SYSLOG_PATH);
	/* a datagram socket, as syslog(3) and rsyslog's imuxsock use;
	 * some syslog daemons listen on a stream socket instead */
	for (size_t i = 0; i < 2; i++) {
		int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return -errno;
		if (!connect(fd, (struct sockaddr *)&a, sizeof(a))) {
			L.fd = fd;
			L.socktype = types[i];
			return 0;
		}
		err = errno;
		close(fd);
		if (err != EPROTOTYPE)
			break;
	}
	return -err;
}

/* Whether journald listens: its socket exists and takes a connection. */
static bool journal_there(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;
	bool there;
	int fd;

	if (stat(PD_JOURNAL_PATH, &st) || !S_ISSOCK(st.st_mode))
		return false;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", PD_JOURNAL_PATH);
	there = !connect(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	return there;
}

void pd_log_open(const char *instance, bool foreground)
{
	int err;

	snprintf(L.instance, sizeof(L.instance), "%s", instance);
	L.foreground = foreground;
	L.pid = getpid();
	if (journal_there()) {
		L.target = PD_LOG_JOURNAL;
		return;
	}
	err = syslog_connect();
	if (!err) {
		L.target = PD_LOG_SYSLOG;
		return;
	}
	L.target = PD_LOG_STDERR;
	L.no_syslog = -err;
}

enum pd_log_target pd_log_target(void)
{
	return L.target;
}

static void to_stderr(const struct entry *e)
{
	fprintf(stderr, "policyd: %s\n", e->text);
}

static int to_syslog(const struct entry *e)
{
	char head[96], stamp[32];
	struct iovec iov[3];
	struct tm tm;
	time_t now = time(NULL);
	int n;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
	n = snprintf(head, sizeof(head), "<%d>%s policyd[%d]: ", LOG_DAEMON | e->prio, stamp,
		     (int)L.pid);
	iov[0] = (struct iovec){ head, (size_t)n };
	iov[1] = (struct iovec){ e->text, strlen(e->text) };
	/* a stream socket takes lines ended by a NUL */
	iov[2] = (struct iovec){ "", 1 };
	for (int tries = 0; tries < 2; tries++) {
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = L.socktype == SOCK_STREAM ? 3 : 2 };

		if (L.fd >= 0 && sendmsg(L.fd, &m, MSG_NOSIGNAL) >= 0)
			return 0;
		/* the syslog daemon restarted: connect to the new socket */
		if (syslog_connect())
			break;
	}
	return -1;
}

static int to_journal(const struct entry *e)
{
	struct iovec iov[PD_LOG_MAX_FIELDS + 6];
	char prio[16], inst[96], *msg;
	const char *f;
	size_t n = 0;
	int r;

	if (asprintf(&msg, "MESSAGE=%s", e->text) < 0)
		return -1;
	snprintf(prio, sizeof(prio), "PRIORITY=%d", e->prio);
	snprintf(inst, sizeof(inst), "POLICYD_INSTANCE=%s", L.instance);
	iov[n++] = (struct iovec){ msg, strlen(msg) };
	iov[n++] = (struct iovec){ prio, strlen(prio) };
	iov[n++] = (struct iovec){ "SYSLOG_IDENTIFIER=policyd", 25 };
	iov[n++] = (struct iovec){ "SYSLOG_FACILITY=3", 17 };
	iov[n++] = (struct iovec){ inst, strlen(inst) };
	f = e->text + strlen(e->text) + 1;
	for (unsigned i = 0; i < e->nfields; i++) {
		iov[n++] = (struct iovec){ (void *)f, strlen(f) };
		f += strlen(f) + 1;
	}
	r = sd_journal_sendv(iov, (int)n);
	free(msg);
	return r < 0 ? -1 : 0;
}

/* One line to where it goes (in the writer thread: this may block). */
static void write_entry(const struct entry *e)
{
	bool err = false;

	/* said with the first line (a start that fails before it has its
	 * own message on stderr) */
	if (L.no_syslog) {
		fprintf(stderr, "policyd: warning: no journal and no syslog at %s (%s): log "
			"lines go to stderr\n", PD_SYSLOG_PATH, strerror(L.no_syslog));
		L.no_syslog = 0;
	}

	if (L.target == PD_LOG_JOURNAL)
		err = to_journal(e) != 0;
	else if (L.target == PD_LOG_SYSLOG)
		err = to_syslog(e) != 0;
	if (err && !L.syslog_down) {
		L.syslog_down = true;
		fprintf(stderr, "policyd: warning: %s stopped taking lines (%s): they go to "
			"stderr\n", L.target == PD_LOG_JOURNAL ? "the journal" : "syslog at "
			PD_SYSLOG_PATH, strerror(errno));
	} else if (!err && L.target != PD_LOG_STDERR) {
		L.syslog_down = false;
	}
	if (L.foreground || err || L.target == PD_LOG_STDERR)
		to_stderr(e);
}

/* Take the oldest line; the caller holds the lock. */
static bool take(struct entry *e)
{
	if (!L.n)
		return false;
	*e = L.q[L.head];
	L.head = (L.head + 1) % PD_LOG_QUEUE;
	L.n--;
	L.bytes -= e->len;
	return true;
}

static void *writer(void *arg)
{
	struct entry e;

	pthread_mutex_lock(&L.mu);
	for (;;) {
		while (!L.n && !L.stop)
			pthread_cond_wait(&L.work, &L.mu);
		if (!take(&e))
			break;          /* stop, and nothing left */
		L.writing = true;
		pthread_mutex_unlock(&L.mu);
		write_entry(&e);
		free(e.text);
		pthread_mutex_lock(&L.mu);
		L.writing = false;
		if (!L.n)
			pthread_cond_broadcast(&L.idle);
	}
	pthread_cond_broadcast(&L.idle);
	pthread_mutex_unlock(&L.mu);
	return NULL;
}

int pd_log_start(void)
{
	sigset_t all, old;
	int err;

	/* signals stay with the main thread (its signalfd) */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&L.thread, NULL, writer, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	L.started = true;
	return 0;
}

void pd_log_close(void)
{
	struct timespec until;
	struct entry e;
	bool done;

	if (!L.started) {
		/* no writer (a start that failed): write what is queued here */
		pthread_mutex_lock(&L.mu);
		while (take(&e)) {
			write_entry(&e);
			free(e.text);
		}
		pthread_mutex_unlock(&L.mu);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += PD_LOG_CLOSE_WAIT_MS / 1000;
	pthread_mutex_lock(&L.mu);
	L.stop = true;
	pthread_cond_broadcast(&L.work);
	while ((L.n || L.writing) &&
	       pthread_cond_timedwait(&L.idle, &L.mu, &until) != ETIMEDOUT)
		;
	done = !L.n && !L.writing;
	pthread_mutex_unlock(&L.mu);
	if (done)
		pthread_join(L.thread, NULL);
	else
		fprintf(stderr, "policyd: warning: the log reader is stuck: the last log lines "
			"are lost\n");
	L.started = false;
}

/* Queue text (len bytes with its NULs); false (counted) when full. */
static bool enqueue(int prio, char *text, size_t len, unsigned nfields)
{
	bool ok;

	pthread_mutex_lock(&L.mu);
	ok = L.n < PD_LOG_QUEUE && L.bytes + len <= PD_LOG_QUEUE_BYTES;
	if (ok) {
		L.q[(L.head + L.n) % PD_LOG_QUEUE] = (struct entry){ prio, nfields, len, text };
		L.n++;
		L.bytes += len;
		pthread_cond_signal(&L.work);
	} else {
		L.dropped++;
	}
	pthread_mutex_unlock(&L.mu);
	if (!ok)
		free(text);
	return ok;
}

static bool vqueue(int prio, const struct pd_log_field *f, size_t nf, const char *fmt,
		   va_list ap)
{
	char line[4096], *text;
	size_t len, n;
	int m;

	m = vsnprintf(line, sizeof(line), fmt, ap);
	n = m < 0 ? 0 : (size_t)m < sizeof(line) ? (size_t)m : sizeof(line) - 1;
	if (L.instance[0])
		snprintf(line + n, sizeof(line) - n, " instance=%s", L.instance);
	if (nf > PD_LOG_MAX_FIELDS)
		nf = PD_LOG_MAX_FIELDS;
	len = strlen(line) + 1;
	for (size_t i = 0; i < nf; i++)
		len += strlen("POLICYD_=") + strlen(f[i].key) + strlen(f[i].value) + 1;
	text = malloc(len);
	if (!text)
		return false;
	n = (size_t)sprintf(text, "%s", line) + 1;
	for (size_t i = 0; i < nf; i++)
		n += (size_t)sprintf(text + n, "POLICYD_%s=%s", f[i].key, f[i].value) + 1;
	return enqueue(prio, text, len, (unsigned)nf);
}

bool pd_log_fields(int prio, const struct pd_log_field *f, size_t nf, const char *fmt, ...)
{
	va_list ap;
	bool ok;

	va_start(ap, fmt);
	ok = vqueue(prio, f, nf, fmt, ap);
	va_end(ap);
	return ok;
}

void pd_log(const struct pd_daemon *d, int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vqueue(prio, NULL, 0, fmt, ap);
	va_end(ap);
}

void pd_log_report_drops(void)
{
	uint64_t n;

	pthread_mutex_lock(&L.mu);
	n = L.dropped;
	L.dropped = 0;
	pthread_mutex_unlock(&L.mu);
	if (n && !pd_log_fields(LOG_WARNING, NULL, 0, "%llu log lines lost: the log reader "
				"did not keep up and the queue of %u lines was full",
				(unsigned long long)n, PD_LOG_QUEUE)) {
		/* still full: count them again for the next report */
		pthread_mutex_lock(&L.mu);
		L.dropped += n;
		pthread_mutex_unlock(&L.mu);
	}
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static int libbpf_loud(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* of the debug messages, the verifier's log (its statistics) */
	if (level == LIBBPF_DEBUG && !strstr(fmt, "PROG LOAD LOG"))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

void pd_log_libbpf(bool verbose)
{
	libbpf_set_print(verbose ? libbpf_loud : libbpf_quiet);
}
