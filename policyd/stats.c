// SPDX-License-Identifier: GPL-2.0-only
/*
 * `policyd stats`: per-rule and per-service-default counters of a running
 * (or kept) instance, read from its pinned maps only, so any process with
 * access to the pin directory can ask.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "cli.h"
#include "policyd.h"

struct pins {
	int config, rules, counters, names, trouble;
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
	}
	free(v);
	return 0;
}

static const char *action_name(unsigned a)
{
	static const char *const n[] = { "none", "audit", "allow", "redirect", "deny" };

	return a < 5 ? n[a] : "?";
}

int pd_cmd_stats(const struct pd_opts *o)
{
	const char *dir = o->pin_dir ? o->pin_dir : PD_DEFAULT_PIN_DIR;
	int ncpu = libbpf_num_possible_cpus();
	struct pd_config cfg;
	struct pins p;
	uint32_t zero = 0, gen, first = 1;

	p.config = open_pin(dir, "pd_config");
	if (p.config < 0) {
		fprintf(stderr, "policyd stats: no running or kept policyd pins in %s: %s\n", dir,
			strerror(errno));
		return PD_EXIT_RUNTIME;
	}
	p.rules = open_pin(dir, "pd_rules");
	p.counters = open_pin(dir, "pd_counters");
	p.names = open_pin(dir, "pd_names");
	p.trouble = open_pin(dir, "pd_trouble");
	if (p.rules < 0 || p.counters < 0 || p.names < 0 || p.trouble < 0 || ncpu <= 0 ||
	    bpf_map_lookup_elem(p.config, &zero, &cfg)) {
		fprintf(stderr, "policyd stats: the pins in %s are incomplete\n", dir);
		return PD_EXIT_RUNTIME;
	}
	if (cfg.layout != PD_LAYOUT_VERSION) {
		fprintf(stderr, "policyd stats: the pins in %s have map layout %u; this policyd "
			"reads layout %d\n", dir, cfg.layout, PD_LAYOUT_VERSION);
		return PD_EXIT_RUNTIME;
	}
	gen = cfg.active_gen & 1;
	if (o->json)
		printf("{\"generation\":%llu,\"rules\":[", (unsigned long long)cfg.generation);
	else
		printf("policy generation %llu\n%-8s %-9s %-20s %12s %14s\n",
		       (unsigned long long)cfg.generation, "rule", "action", "service",
		       "messages", "bytes");
	/* rules in file order, then each service's default */
	for (uint32_t i = 1; i <= PD_MAX_RULES; i++) {
		uint32_t k = gen * (PD_MAX_RULES + 1) + i, nk;
		struct pd_rule r;
		struct pd_name n;
		struct pd_counter c;

		if (bpf_map_lookup_elem(p.rules, &k, &r) || !r.id)
			break;
		nk = gen * PD_MAX_SERVICES + r.service;
		if (bpf_map_lookup_elem(p.names, &nk, &n))
			snprintf(n.name, sizeof(n.name), "?");
		sum(p.counters, r.id, ncpu, &c);
		if (o->json)
			printf("%s{\"rule\":%u,\"action\":\"%s\",\"service\":\"%s\","
			       "\"messages\":%llu,\"bytes\":%llu}", first ? "" : ",", r.id,
			       action_name(r.action), n.name, (unsigned long long)c.msgs,
			       (unsigned long long)c.bytes);
		else
			printf("%-8u %-9s %-20s %12llu %14llu\n", r.id, action_name(r.action),
			       n.name, (unsigned long long)c.msgs, (unsigned long long)c.bytes);
		first = 0;
	}
	if (o->json)
		printf("],\"defaults\":[");
	first = 1;
	for (uint32_t s = 0; s < PD_MAX_SERVICES; s++) {
		uint32_t nk = gen * PD_MAX_SERVICES + s;
		struct pd_name n;
		struct pd_counter c;

		if (bpf_map_lookup_elem(p.names, &nk, &n) || !n.name[0])
			break;
		sum(p.counters, PD_COUNTER_DEFAULT(s), ncpu, &c);
		if (o->json)
			printf("%s{\"service\":\"%s\",\"messages\":%llu,\"bytes\":%llu}",
			       first ? "" : ",", n.name, (unsigned long long)c.msgs,
			       (unsigned long long)c.bytes);
		else
			printf("%-8s %-9s %-20s %12llu %14llu\n", "default", "-", n.name,
			       (unsigned long long)c.msgs, (unsigned long long)c.bytes);
		first = 0;
	}
	if (o->json)
		printf("],\"troubles\":{");
	for (uint32_t t = 0; t < PD_TR_MAX; t++) {
		uint64_t *v = calloc((size_t)ncpu, sizeof(*v)), tot = 0;

		if (v && !bpf_map_lookup_elem(p.trouble, &t, v))
			for (int i = 0; i < ncpu; i++)
				tot += v[i];
		free(v);
		if (o->json)
			printf("%s\"%s\":%llu", t ? "," : "", pd_trouble_name(t),
			       (unsigned long long)tot);
		else if (tot)
			printf("trouble  %-30s %12llu\n", pd_trouble_name(t), (unsigned long long)tot);
	}
	if (o->json)
		printf("}}\n");
	return PD_EXIT_OK;
}
