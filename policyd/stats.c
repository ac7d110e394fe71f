// SPDX-License-Identifier: GPL-2.0-only
/*
 * `policyd stats`: per-rule and per-service-default counters of a running
 * (or kept) instance, the data plane's troubles and what the daemon
 * published about itself (mode, start, reloads), read from its pinned maps
 * only, so any process with access to the pin directory can ask. As a
 * table, as JSON, or in the OpenMetrics text format for a scraper.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "cli.h"
#include "escape.h"
#include "policy.h"

/* What one row of counters is about: a rule, or a service's default. */
struct row {
	unsigned rule;          /* 0: the service's default */
	const char *action;
	char service[PD_NAME_MAX];
	struct pd_counter c;
};

struct snapshot {
	struct pd_config cfg;
	struct row *rows;
	size_t nrows, nrules;   /* rules first, then defaults */
	uint64_t trouble[PD_TR_MAX];
	uint64_t connections;   /* sockets in the socket map now */
	char cgroup[PD_PATH_MAX]; /* the cgroup the instance polices ("" unknown) */
	bool detached;          /* its programs are no longer on that cgroup */
};

static int open_pin(const char *dir, const char *name)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return bpf_obj_get(path);
}

static int sum(int fd, uint32_t key, int ncpu, struct pd_counter *out)
{
	struct pd_counter *v = calloc((size_t)ncpu, sizeof(*v));

	memset(out, 0, sizeof(*out));
	if (!v || bpf_map_lookup_elem(fd, &key, v)) {
		free(v);
		return -1;
	}
	for (int i = 0; i < ncpu; i++) {
		out->msgs += v[i].msgs;
		out->bytes += v[i].bytes;
		out->would_msgs += v[i].would_msgs;
		out->would_bytes += v[i].would_bytes;
	}
	free(v);
	return 0;
}

/* Why the pins cannot be read, as a sentence with what to do. */
static void cannot_open(const char *dir)
{
	if (errno == EACCES || errno == EPERM)
		fprintf(stderr, "policyd stats: permission denied reading the pins in %s: "
			"they are root's (mode 0700) and reading BPF maps needs CAP_BPF or "
			"CAP_SYS_ADMIN; run as root\n", dir);
	else
		fprintf(stderr, "policyd stats: no running or kept policyd pins in %s: %s\n",
			dir, strerror(errno));
}

static uint64_t count_keys(int fd)
{
	uint64_t key, next, n = 0;

	if (fd < 0 || bpf_map_get_next_key(fd, NULL, &key))
		return 0;
	for (n = 1; !bpf_map_get_next_key(fd, &key, &next) && n < (1u << 20); n++)
		key = next;
	return n;
}

/* The instance's cgroup, and whether its sock_ops link is still attached
 * to the cgroup now at that path: a cgroup removed (and perhaps made
 * again, as systemd does at each restart of a unit) took the programs
 * along, and the pins police nothing. */
static void check_cgroup(const char *dir, struct snapshot *s)
{
	struct pd_instance me;
	struct bpf_link_info info;
	uint32_t len = sizeof(info), zero = 0;
	int inst = open_pin(dir, "pd_instance"), link = open_pin(dir, "link_sockops");
	struct stat st;

	memset(&info, 0, sizeof(info));
	if (inst >= 0 && !bpf_map_lookup_elem(inst, &zero, &me) && me.cgroup[0]) {
		me.cgroup[PD_PATH_MAX - 1] = '\0';
		snprintf(s->cgroup, sizeof(s->cgroup), "%s", me.cgroup);
		/* a link that cannot be read says nothing either way */
		if (link >= 0 && !bpf_obj_get_info_by_fd(link, &info, &len))
			s->detached = !info.cgroup.cgroup_id || stat(me.cgroup, &st) ||
				      st.st_ino != info.cgroup.cgroup_id;
	}
	if (inst >= 0)
		close(inst);
	if (link >= 0)
		close(link);
}

/* Read everything from the pins under dir; 0, or an exit status (said). */
static int take(const char *dir, struct snapshot *s)
{
	int ncpu = libbpf_num_possible_cpus(), config, rules, counters, names, trouble, svcs;
	uint32_t zero = 0, gen, cap = 256;

	memset(s, 0, sizeof(*s));
	config = open_pin(dir, "pd_config");
	if (config < 0) {
		cannot_open(dir);
		return PD_EXIT_RUNTIME;
	}
	rules = open_pin(dir, "pd_rules");
	counters = open_pin(dir, "pd_counters");
	names = open_pin(dir, "pd_names");
	trouble = open_pin(dir, "pd_trouble");
	svcs = open_pin(dir, "pd_services");
	if (rules < 0 || counters < 0 || names < 0 || trouble < 0 || svcs < 0 || ncpu <= 0 ||
	    bpf_map_lookup_elem(config, &zero, &s->cfg)) {
		fprintf(stderr, "policyd stats: the pins in %s are incomplete\n", dir);
		return PD_EXIT_RUNTIME;
	}
	if (s->cfg.layout != PD_LAYOUT_VERSION) {
		fprintf(stderr, "policyd stats: the pins in %s have map layout %u; this policyd "
			"reads layout %d\n", dir, s->cfg.layout, PD_LAYOUT_VERSION);
		return PD_EXIT_RUNTIME;
	}
	gen = s->cfg.active_gen & 1;
	s->rows = malloc(cap * sizeof(*s->rows));
	/* rules in file order, then each service's default */
	for (uint32_t i = 1, pass = 0; s->rows && pass < 2; i++) {
		uint32_t k = pass ? pd_service_key(gen, i - 1) : pd_rule_key(gen, i);
		struct row *w;
		struct pd_rule r;
		struct pd_service sv;
		struct pd_name n;

		if (!pass && (i > PD_MAX_RULES || bpf_map_lookup_elem(rules, &k, &r) || !r.id)) {
			pass = 1;
			i = 0;
			continue;
		}
		if (pass && (i > PD_MAX_SERVICES || bpf_map_lookup_elem(names, &k, &n) ||
			     !n.name[0] || bpf_map_lookup_elem(svcs, &k, &sv)))
			break;
		if (s->nrows == cap) {
			struct row *more = realloc(s->rows, 2 * cap * sizeof(*more));

			if (!more)
				break;
			s->rows = more;
			cap *= 2;
		}
		w = &s->rows[s->nrows++];
		if (!pass) {
			s->nrules++;
			w->rule = r.id;
			w->action = pd_action_name(r.action);
			k = pd_service_key(gen, r.service);
			if (bpf_map_lookup_elem(names, &k, &n))
				snprintf(n.name, sizeof(n.name), "?");
			sum(counters, r.id, ncpu, &w->c);
		} else {
			w->rule = 0;
			w->action = pd_default_name(sv.def);
			sum(counters, PD_COUNTER_DEFAULT(i - 1), ncpu, &w->c);
		}
		snprintf(w->service, sizeof(w->service), "%s", n.name);
	}
	for (uint32_t t = 0; t < PD_TR_MAX; t++) {
		uint64_t *v = calloc((size_t)ncpu, sizeof(*v));

		if (v && !bpf_map_lookup_elem(trouble, &t, v))
			for (int i = 0; i < ncpu; i++)
				s->trouble[t] += v[i];
		free(v);
	}
	s->connections = count_keys(open_pin(dir, "pd_sockets"));
	check_cgroup(dir, s);
	return PD_EXIT_OK;
}

static void iso_time(char *out, size_t cap, uint64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!t || !gmtime_r(&tt, &tm))
		snprintf(out, cap, "-");
	else
		strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void print_text(const struct snapshot *s)
{
	char started[32], last[32];

	iso_time(started, sizeof(started), s->cfg.started);
	iso_time(last, sizeof(last), s->cfg.last_reload_time);
	printf("policy generation %llu, mode %s, started %s, %llu reloads (%llu refused, "
	       "last %s at %s), %llu policed connections\n",
	       (unsigned long long)s->cfg.generation,
	       pd_name(&pd_modes, s->cfg.mode), started,
	       (unsigned long long)s->cfg.reloads, (unsigned long long)s->cfg.reloads_refused,
	       pd_name(&pd_reloads, s->cfg.last_reload), last, (unsigned long long)s->connections);
	if (s->detached)
		printf("NOT POLICING: cgroup %s was removed (or removed and made again) and took "
		       "the programs along; nothing is policed until policyd starts again on it\n",
		       s->cgroup);
	printf("%-8s %-9s %-20s %12s %14s %12s %14s\n", "rule", "action", "service", "messages",
	       "bytes", "would-msgs", "would-bytes");
	for (size_t i = 0; i < s->nrows; i++) {
		const struct row *r = &s->rows[i];
		char id[16];

		snprintf(id, sizeof(id), r->rule ? "%u" : "default", r->rule);
		printf("%-8s %-9s %-20s %12llu %14llu %12llu %14llu\n", id, r->action, r->service,
		       (unsigned long long)r->c.msgs, (unsigned long long)r->c.bytes,
		       (unsigned long long)r->c.would_msgs, (unsigned long long)r->c.would_bytes);
	}
	for (uint32_t t = 0; t < PD_TR_MAX; t++)
		printf("trouble  %-30s %12llu\n", pd_trouble_name(t),
		       (unsigned long long)s->trouble[t]);
}

static void print_json_row(const struct row *r, bool first)
{
	printf("%s{", first ? "" : ",");
	if (r->rule)
		printf("\"rule\":%u,", r->rule);
	printf("\"action\":\"%s\",\"service\":\"%s\",\"messages\":%llu,\"bytes\":%llu,"
	       "\"would_messages\":%llu,\"would_bytes\":%llu}", r->action, r->service,
	       (unsigned long long)r->c.msgs, (unsigned long long)r->c.bytes,
	       (unsigned long long)r->c.would_msgs, (unsigned long long)r->c.would_bytes);
}

static void print_json(const struct snapshot *s)
{
	printf("{\"generation\":%llu,\"mode\":\"%s\",\"started\":%llu,\"reloads\":%llu,"
	       "\"reloads_refused\":%llu,\"last_reload\":\"%s\",\"last_reload_time\":%llu,"
	       "\"connections\":%llu,\"cgroup\":",
	       (unsigned long long)s->cfg.generation,
	       pd_name(&pd_modes, s->cfg.mode),
	       (unsigned long long)s->cfg.started, (unsigned long long)s->cfg.reloads,
	       (unsigned long long)s->cfg.reloads_refused, pd_name(&pd_reloads, s->cfg.last_reload),
	       (unsigned long long)s->cfg.last_reload_time, (unsigned long long)s->connections);
	pd_json_str(s->cgroup);
	printf(",\"cgroup_attached\":%s,\"rules\":[", s->detached ? "false" : "true");
	for (size_t i = 0; i < s->nrules; i++)
		print_json_row(&s->rows[i], i == 0);
	printf("],\"defaults\":[");
	for (size_t i = s->nrules; i < s->nrows; i++)
		print_json_row(&s->rows[i], i == s->nrules);
	printf("],\"troubles\":{");
	for (uint32_t t = 0; t < PD_TR_MAX; t++)
		printf("%s\"%s\":%llu", t ? "," : "", pd_trouble_name(t),
		       (unsigned long long)s->trouble[t]);
	printf("}}\n");
}

/* The Prometheus text format (0.0.4) instead of OpenMetrics: what
 * node_exporter's textfile collector reads with its types. A counter's
 * TYPE and HELP then name its samples (foo_total), and there is no UNIT
 * and no # EOF. */
static bool prometheus;

/* The TYPE, UNIT and HELP lines of a family. */
static void om_head(const char *name, const char *type, const char *unit, const char *help)
{
	const char *total = prometheus && !strcmp(type, "counter") ? "_total" : "";

	printf("# TYPE %s%s %s\n", name, total, type);
	if (unit && !prometheus)
		printf("# UNIT %s %s\n", name, unit);
	printf("# HELP %s%s %s\n", name, total, help);
}

/* One counter family of the rows: field selects msgs, bytes, would_*. */
static void om_rows(const struct snapshot *s, const char *name, const char *unit,
		    const char *help, size_t field)
{
	om_head(name, "counter", unit, help);
	for (size_t i = 0; i < s->nrows; i++) {
		const struct row *r = &s->rows[i];
		char id[16];

		snprintf(id, sizeof(id), r->rule ? "%u" : "default", r->rule);
		/* names are plain ([A-Za-z0-9._-], see parse.c): no escaping */
		printf("%s_total{service=\"%s\",rule=\"%s\",action=\"%s\"} %llu\n", name,
		       r->service, id, r->action,
		       (unsigned long long)*(const uint64_t *)((const char *)&r->c + field));
	}
}

static void om_one(const char *name, const char *type, const char *unit, const char *help,
		   unsigned long long v)
{
	om_head(name, type, unit, help);
	printf("%s%s %llu\n", name, strcmp(type, "counter") ? "" : "_total", v);
}

/* The OpenMetrics text format (application/openmetrics-text 1.0.0). */
static void print_openmetrics(const struct snapshot *s)
{
	om_rows(s, "policyd_rule_messages", NULL, "Messages each rule (rule=\"default\": the "
		"service's default, with its action) decided or audited.",
		offsetof(struct pd_counter, msgs));
	om_rows(s, "policyd_rule_bytes", "bytes", "Bytes of the messages counted in "
		"policyd_rule_messages.", offsetof(struct pd_counter, bytes));
	om_rows(s, "policyd_rule_would_messages", NULL, "Monitor mode: messages each rule "
		"would have denied or diverted; they passed.",
		offsetof(struct pd_counter, would_msgs));
	om_rows(s, "policyd_rule_would_bytes", "bytes", "Bytes of the messages counted in "
		"policyd_rule_would_messages.", offsetof(struct pd_counter, would_bytes));
	om_head("policyd_troubles", "counter", NULL, "Data-plane troubles by cause (see "
		"policyd(8)).");
	for (uint32_t t = 0; t < PD_TR_MAX; t++)
		printf("policyd_troubles_total{cause=\"%s\"} %llu\n", pd_trouble_name(t),
		       (unsigned long long)s->trouble[t]);
	om_one("policyd_policed_connections", "gauge", NULL, "Connections in the socket map "
	       "now.", s->connections);
	om_one("policyd_cgroup_attached", "gauge", NULL, "1: the programs are attached to "
	       "the policed cgroup; 0: it was removed and nothing is policed.", !s->detached);
	om_one("policyd_policy_generation", "gauge", NULL, "Policy loads since the pins were "
	       "made (1: the first).", s->cfg.generation);
	om_one("policyd_monitor_mode", "gauge", NULL, "1: monitor mode (nothing is denied "
	       "or diverted), 0: enforce.", s->cfg.mode == PD_MODE_MONITOR);
	om_one("policyd_reloads", "counter", NULL, "SIGHUP reloads since the daemon started.",
	       s->cfg.reloads);
	om_one("policyd_reloads_refused", "counter", NULL, "Reloads refused (the running "
	       "policy stayed).", s->cfg.reloads_refused);
	om_one("policyd_last_reload_success", "gauge", NULL, "0 if the last reload was "
	       "refused, else 1.", s->cfg.last_reload != PD_RELOAD_REFUSED);
	om_one("policyd_last_reload_timestamp_seconds", "gauge", "seconds", "When the last "
	       "reload was (the start time if none).",
	       s->cfg.last_reload_time ? s->cfg.last_reload_time : s->cfg.started);
	om_one("policyd_start_time_seconds", "gauge", "seconds", "When the daemon started "
	       "(Unix time).", s->cfg.started);
	if (!prometheus)
		printf("# EOF\n");
}

int pd_cmd_stats(const struct pd_opts *o)
{
	const char *dir = o->pin_dir ? o->pin_dir : PD_DEFAULT_PIN_DIR;
	struct snapshot s;
	int ret = take(dir, &s);

	if (ret == PD_EXIT_OK) {
		if (o->json)
			print_json(&s);
		else if (o->openmetrics || o->prometheus) {
			prometheus = o->prometheus;
			print_openmetrics(&s);
		}
		else
			print_text(&s);
	}
	free(s.rows);
	return ret;
}
