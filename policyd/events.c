// SPDX-License-Identifier: GPL-2.0-only
/*
 * Events from the data plane: each deny, redirect and audit record becomes
 * one log line (DESIGN.md's format, key=value in a fixed order), limited to
 * log_rate lines per second with the excess counted by kind and reported
 * once a second. A redirect's event also goes to its sink record
 * (sink.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon.h"
#include "policyd.skel.h"

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
		pd_escape_comm(out, cap, e->comm);
		return;
	}
	snprintf(path, sizeof(path), "/proc/%u/comm", e->tgid);
	f = e->tgid ? fopen(path, "re") : NULL;
	if (f && fgets(name, sizeof(name), f))
		name[strcspn(name, "\n")] = '\0';
	if (f)
		fclose(f);
	if (name[0])
		pd_escape_comm(out, cap, name);
	else
		snprintf(out, cap, "-");
}

void pd_event_describe(const struct pd_daemon *d, const struct pd_event *e, char *out,
		       size_t cap)
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

/* ---- log_rate ---- */

bool pd_log_may(struct pd_daemon *d, const char *kind)
{
	struct pd_log_kind *k = NULL;
	long now = (long)(pd_now_ms() / 1000);

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

/* The id of rule index i of the running policy, as text in buf. */
static const char *rule_id(const struct pd_daemon *d, uint32_t i, char *buf)
{
	if (i && i <= d->img.nrules)
		snprintf(buf, 16, "%u", d->img.rules[i].id);
	else
		snprintf(buf, 16, "?");
	return buf;
}

/* ---- events ---- */

/* How loud a verdict's line is; LOG_INFO where none is given. */
static const int verdict_prio[PD_V_MAX] = {
	[PD_V_DENY] = LOG_WARNING,
	[PD_V_REDIRECT] = LOG_NOTICE,
	[PD_V_REFUSE] = LOG_WARNING,
	[PD_V_UNJUDGED] = LOG_WARNING,
};

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
	/* a pass is logged only when an audit rule matched: as audited */
	what = pd_verdict_word(e->verdict == PD_V_PASS ? PD_V_AUDIT : e->verdict, e->monitor);
	prio = e->verdict < PD_V_MAX && verdict_prio[e->verdict] ? verdict_prio[e->verdict] :
	       LOG_INFO;
	if (e->verdict == PD_V_REFUSE || e->verdict == PD_V_UNJUDGED) {
		/* a send that could not be judged: refused (fail_mode closed)
		 * or passed (open), with its cause; a hold that lasted too
		 * long with the rule that kept the message held */
		char held[32] = "";

		if (!pd_log_may(d, what))
			return 0;
		pd_event_describe(d, e, common, sizeof(common));
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
			pd_sink_event(d, e);
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
	pd_event_describe(d, e, common, sizeof(common));
	pd_escape(ex, sizeof(ex), e->excerpt,
		  e->excerpt_len < PD_EXCERPT_MAX ? e->excerpt_len : PD_EXCERPT_MAX);
	/* the journal's fields: the line's keys, one by one */
	pd_escape_comm(comm, sizeof(comm), e->comm);
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
	pd_sinks_report(d);
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
	double now = pd_now_ms();

	pd_sinks_tick(d, now);
	if ((long)(now / 1000) != reported) {
		reported = (long)(now / 1000);
		report(d);
	}
}

