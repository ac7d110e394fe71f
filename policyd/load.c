// SPDX-License-Identifier: GPL-2.0-only
/*
 * Loading: open the BPF object, size the automaton maps from the image,
 * load (the verifier runs here), and write into the maps: images into
 * policy slots, the services' names and sinks of a slot, the settings in
 * pd_config, this instance's place in pd_instance, and the state of
 * single connections (adopted sockets, connections to abort). Only this
 * file writes into the maps.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "load.h"
#include "policyd.skel.h"
#include "kernel.h"

static bool verifier_stats;

void pd_bpf_verifier_stats(bool on)
{
	verifier_stats = on;
}

/* The socket map's capacity: asked for, or that of the kept map. */
static uint32_t socket_capacity(const struct pd_kept *kept, uint32_t sockets)
{
	struct bpf_map_info info;
	uint32_t len = sizeof(info);
	char path[4200];
	int fd;

	if (!kept)
		return sockets;
	snprintf(path, sizeof(path), "%s/pd_sockets", kept->dir);
	fd = bpf_obj_get(path);
	memset(&info, 0, sizeof(info));
	if (fd >= 0 && !bpf_obj_get_info_by_fd(fd, &info, &len))
		sockets = info.max_entries;
	if (fd >= 0)
		close(fd);
	return sockets;
}

static int load_once(const struct pd_image *img, const struct pd_kept *kept, uint32_t sockets,
		     struct pd_loaded *l, const char **why, bool stats)
{
	struct policyd_bpf *s;
	struct bpf_map *m;
	uint32_t states, width;
	char path[4200];
	int err;

	pd_slot_shape(img, &states, &width);
	if (kept) {
		/* the maps exist: the programs are loaded for their sizes */
		states = kept->slot_states;
		width = kept->row_width;
	}

	memset(l, 0, sizeof(*l));
	s = policyd_bpf__open();
	if (!s) {
		*why = "cannot open the BPF object";
		return -errno;
	}
	/* programs whose kernel features are missing stay out of the load */
	if ((err = pd_probe_apply(s->obj, why))) {
		policyd_bpf__destroy(s);
		return err;
	}
	/* two slots of states: the daemon fills one while the other
	 * enforces; each slot's transitions are one map value */
	if ((uint64_t)states * width * sizeof(uint32_t) > PD_MAX_SLOT_BYTES) {
		*why = "the automaton is too large for one map value";
		policyd_bpf__destroy(s);
		return -E2BIG;
	}
	s->rodata->pd_row_mask = width - 1;
	s->rodata->pd_row_shift = (uint32_t)__builtin_ctz(width * sizeof(uint32_t));
	s->rodata->pd_slot_states = states;
	s->rodata->pd_slot_last_row = (states - 1) * width * sizeof(uint32_t);
	if ((err = bpf_map__set_value_size(s->maps.pd_trans, states * width * sizeof(uint32_t))) ||
	    (err = bpf_map__set_max_entries(s->maps.pd_outs, 2 * states)) ||
	    (err = bpf_map__set_max_entries(s->maps.pd_sockets,
					    socket_capacity(kept, sockets))) ||
	    (err = bpf_map__set_max_entries(s->maps.pd_held,
					    socket_capacity(kept, sockets))) ||
	    (err = bpf_map__set_max_entries(s->maps.pd_doomed,
					    2 * socket_capacity(kept, sockets)))) {
		*why = "cannot size the automaton maps";
		policyd_bpf__destroy(s);
		return err;
	}
	/* libbpf reuses a pinned map only if its type, sizes and flags are
	 * those this program expects; otherwise the load fails */
	bpf_object__for_each_map(m, s->obj) {
		if (!kept)
			break;
		/* the name bpf_object__pin_maps() gave it: '.' became '_' */
		snprintf(path, sizeof(path), "%s/%s", kept->dir, bpf_map__name(m));
		for (char *c = path + strlen(kept->dir); *c; c++)
			if (*c == '.')
				*c = '_';
		if (access(path, F_OK)) {
			*why = "the kept pins are incomplete (remove the directory)";
			policyd_bpf__destroy(s);
			return -ENOENT;
		}
		if ((err = bpf_map__set_pin_path(m, path))) {
			*why = "cannot name the kept maps";
			policyd_bpf__destroy(s);
			return err;
		}
	}
	/* the verifier's statistics (time, instructions) in libbpf's log */
	if (stats)
		bpf_program__set_log_level(s->progs.pd_msg, 4);
	err = policyd_bpf__load(s);
	if (err) {
		if (err == -E2BIG)
			/* the verifier's limit (a million instructions
			 * checked), or a map the kernel will not make */
			*why = "the kernel refused the BPF programs or maps as too large: a program "
			       "its verifier could not check within its limits, or a map (run with "
			       "-v for its log)";
		else
			*why = kept ? "the kept maps do not fit these programs, or the kernel "
				      "refused the programs (run with -v for its log)" :
				      "the kernel refused the BPF programs or maps (run with -v for "
				      "its log)";
		policyd_bpf__destroy(s);
		return err;
	}
	/* pd_msg goes on in pd_replay by a tail call */
	{
		uint32_t zero = 0;
		int fd = bpf_program__fd(s->progs.pd_replay);

		if (bpf_map_update_elem(bpf_map__fd(s->maps.pd_progs), &zero, &fd, BPF_ANY)) {
			err = -errno;
			*why = "cannot link the data plane's programs";
			policyd_bpf__destroy(s);
			return err;
		}
	}
	l->skel = s;
	l->slot_states = states;
	l->row_width = width;
	return 0;
}

int pd_bpf_load(const struct pd_image *img, const struct pd_kept *kept, uint32_t sockets,
		struct pd_loaded *l, const char **why)
{
	int err = load_once(img, kept, sockets, l, why, verifier_stats);

	/* a log level asked for is all the kernel writes: for the reason
	 * of a refusal, load again the default way (libbpf then retries
	 * with the verifier's full log) */
	if (err && verifier_stats)
		err = load_once(img, kept, sockets, l, why, false);
	return err;
}

static int update(struct bpf_map *m, const void *k, const void *v)
{
	return bpf_map_update_elem(bpf_map__fd(m), k, v, BPF_ANY) ? -errno : 0;
}

/* What entering each state reports, all states in one call. */
static int write_outs(struct bpf_map *m, const struct pd_image *img, uint32_t base)
{
	uint32_t n = img->nstates, count = n;
	struct pd_state_out *o = malloc((size_t)n * sizeof(*o));
	uint32_t *k = malloc((size_t)n * sizeof(*k));
	int err = -ENOMEM;

	if (o && k) {
		for (uint32_t i = 0; i < n; i++) {
			k[i] = base + i;
			o[i] = img->outs[i];
			o[i].cont += base;
		}
		err = bpf_map_update_batch(bpf_map__fd(m), k, o, &count, NULL) ? -errno : 0;
		if (!err && count != n)
			err = -EIO;
	}
	free(o);
	free(k);
	return err;
}

/* Remove the port entries of slot gen (left by the policy it held before). */
static int clear_ports(struct bpf_map *m, uint32_t gen)
{
	struct pd_port_key k, next, *prev = NULL;
	int fd = bpf_map__fd(m);

	while (!bpf_map_get_next_key(fd, prev, &next)) {
		if (next.gen == gen) {
			if (bpf_map_delete_elem(fd, &next))
				return -errno;
			continue;       /* start over: the walk lost its place */
		}
		k = next;
		prev = &k;
	}
	return 0;
}

int pd_bpf_write_image(const struct pd_loaded *l, const struct pd_image *img, uint32_t gen)
{
	struct policyd_bpf *s = l->skel;
	uint32_t base = gen * l->slot_states, w = l->row_width;
	uint32_t *tab;
	int err = 0;

	/* the compiler encodes for the maps' row width (pd_image_widen) */
	if (gen > 1 || !pd_bpf_fits(l, img) || img->row_width != w)
		return -E2BIG;
	err = clear_ports(s->maps.pd_ports, gen);
	if (err)
		return err;
	/* the whole table of the slot, written at once; rows past the
	 * image's states are never reached and stay zero */
	tab = calloc((size_t)l->slot_states * w, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	memcpy(tab, img->trans, (size_t)img->nstates * w * sizeof(*tab));
	err = update(s->maps.pd_trans, &gen, tab);
	free(tab);
	if (!err && img->nstates)
		err = write_outs(s->maps.pd_outs, img, base);
	for (uint32_t i = 0; i < img->nservices && !err; i++) {
		struct pd_service svc = img->services[i].svc;
		uint32_t k = pd_service_key(gen, i);

		/* every state of the service, into its slot's table */
		svc.start += base;
		svc.resume += base;
		svc.hstart += base;
		svc.bstart += base;
		svc.qstart += base;
		err = update(s->maps.pd_services, &k, &svc) ?:
		      update(s->maps.pd_classes, &k, &img->services[i].classes);
	}
	for (uint32_t i = 1; i <= img->nrules && !err; i++) {
		uint32_t k = pd_rule_key(gen, i);

		err = update(s->maps.pd_rules, &k, &img->rules[i]);
	}
	if (!err && img->nrules < PD_MAX_RULES) {
		/* ends the slot's rule list for readers (policyd stats) */
		struct pd_rule none = { 0 };
		uint32_t k = pd_rule_key(gen, img->nrules + 1);

		err = update(s->maps.pd_rules, &k, &none);
	}
	for (uint32_t i = 0; i < img->nports && !err; i++) {
		struct pd_port_key k = img->port_keys[i];

		k.gen = (uint8_t)gen;
		err = update(s->maps.pd_ports, &k, &img->port_services[i]);
	}
	return err;
}

int pd_bpf_write_names(const struct pd_loaded *l, const struct pd_policy *p, uint32_t gen)
{
	struct pd_name n;
	uint32_t k;
	int err = 0;

	for (size_t i = 0; i < p->nservices && !err; i++) {
		memset(&n, 0, sizeof(n));
		snprintf(n.name, sizeof(n.name), "%s", p->services[i].name);
		k = pd_service_key(gen, (uint32_t)i);
		err = update(l->skel->maps.pd_names, &k, &n);
	}
	if (!err && p->nservices < PD_MAX_SERVICES) {
		/* ends the slot's service list for readers (policyd stats) */
		memset(&n, 0, sizeof(n));
		k = pd_service_key(gen, (uint32_t)p->nservices);
		err = update(l->skel->maps.pd_names, &k, &n);
	}
	return err;
}

int pd_bpf_write_config(const struct pd_loaded *l, const struct pd_config *c)
{
	uint32_t zero = 0;

	return update(l->skel->maps.pd_config, &zero, c);
}

int pd_bpf_write_sink(const struct pd_loaded *l, uint32_t gen, uint32_t sink, int sock)
{
	uint32_t k = pd_sink_key(gen, sink);
	uint64_t v = (uint64_t)sock;    /* the map's values are 64-bit */

	return update(l->skel->maps.pd_sinks, &k, &v);
}

int pd_bpf_write_instance(const struct pd_loaded *l, const char *pin_dir, const char *cgroup)
{
	struct pd_instance me;
	uint32_t zero = 0;

	memset(&me, 0, sizeof(me));
	snprintf(me.pin_dir, sizeof(me.pin_dir), "%s", pin_dir);
	snprintf(me.cgroup, sizeof(me.cgroup), "%s", cgroup);
	return update(l->skel->maps.pd_instance, &zero, &me);
}

int pd_bpf_write_sock_state(const struct pd_loaded *l, int fd, const struct pd_sock *st,
			    bool replace)
{
	return bpf_map_update_elem(bpf_map__fd(l->skel->maps.pd_sk), &fd, st,
				   replace ? BPF_ANY : BPF_NOEXIST) ? -errno : 0;
}

int pd_bpf_map_socket(const struct pd_loaded *l, uint64_t cookie, int fd)
{
	uint64_t v = (uint64_t)fd;      /* the map's values are 64-bit */

	return bpf_map_update_elem(bpf_map__fd(l->skel->maps.pd_sockets), &cookie, &v,
				   BPF_NOEXIST) ? -errno : 0;
}

int pd_bpf_doomed_forget(const struct pd_loaded *l, uint64_t cookie)
{
	return bpf_map_delete_elem(bpf_map__fd(l->skel->maps.pd_doomed), &cookie) ? -errno : 0;
}

int pd_bpf_doomed_update(const struct pd_loaded *l, uint64_t cookie, const struct pd_doomed *v)
{
	return bpf_map_update_elem(bpf_map__fd(l->skel->maps.pd_doomed), &cookie, v,
				   BPF_EXIST) ? -errno : 0;
}

bool pd_bpf_fits(const struct pd_loaded *l, const struct pd_image *img)
{
	return img->nstates <= l->slot_states && img->row_width <= l->row_width;
}

void pd_bpf_unload(struct pd_loaded *l)
{
	policyd_bpf__destroy(l->skel);
	memset(l, 0, sizeof(*l));
}
