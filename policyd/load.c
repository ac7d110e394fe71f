// SPDX-License-Identifier: GPL-2.0-only
/*
 * Loading: open the BPF object, size the automaton maps from the image,
 * load (the verifier runs here), and write images into policy slots. Only
 * this file writes policy into the kernel.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "load.h"
#include "policyd.skel.h"

int pd_bpf_load(const struct pd_image *img, struct pd_loaded *l, const char **why)
{
	struct policyd_bpf *s;
	uint32_t states = img->nstates ? img->nstates : 1;
	int err;

	memset(l, 0, sizeof(*l));
	s = policyd_bpf__open();
	if (!s) {
		*why = "cannot open the BPF object";
		return -errno;
	}
	/* two slots of states: the daemon fills one while the other enforces */
	s->rodata->pd_row_mask = img->row_width - 1;
	if ((err = bpf_map__set_value_size(s->maps.pd_trans, img->row_width * sizeof(uint32_t))) ||
	    (err = bpf_map__set_max_entries(s->maps.pd_trans, 2 * states)) ||
	    (err = bpf_map__set_max_entries(s->maps.pd_outs, 2 * states))) {
		*why = "cannot size the automaton maps";
		policyd_bpf__destroy(s);
		return err;
	}
	err = policyd_bpf__load(s);
	if (err) {
		*why = "the kernel refused the BPF programs or maps (run with -v for its log)";
		policyd_bpf__destroy(s);
		return err;
	}
	l->skel = s;
	l->slot_states = states;
	l->row_width = img->row_width;
	return 0;
}

static int update(struct bpf_map *m, const void *k, const void *v)
{
	return bpf_map_update_elem(bpf_map__fd(m), k, v, BPF_ANY) ? -errno : 0;
}

int pd_bpf_write_image(const struct pd_loaded *l, const struct pd_image *img, uint32_t gen)
{
	struct policyd_bpf *s = l->skel;
	uint32_t base = gen * l->slot_states, w = l->row_width;
	uint32_t *row;
	int err = 0;

	if (gen > 1 || img->nstates > l->slot_states || img->row_width != w)
		return -E2BIG;
	row = calloc(w, sizeof(*row));
	if (!row)
		return -ENOMEM;
	for (uint32_t i = 0; i < img->nstates && !err; i++) {
		struct pd_state_out o = img->outs[i];
		uint32_t k = base + i;

		for (uint32_t c = 0; c < w; c++) {
			uint32_t t = img->trans[(size_t)i * w + c];

			row[c] = ((t & PD_T_STATE) + base) | (t & PD_T_MATCH);
		}
		o.cont += base;
		err = update(s->maps.pd_trans, &k, row) ?: update(s->maps.pd_outs, &k, &o);
	}
	free(row);
	for (uint32_t i = 0; i < img->nservices && !err; i++) {
		struct pd_service svc = img->services[i].svc;
		uint32_t k = gen * PD_MAX_SERVICES + i;

		svc.start += base;
		svc.resume += base;
		err = update(s->maps.pd_services, &k, &svc) ?:
		      update(s->maps.pd_classes, &k, &img->services[i].classes);
	}
	for (uint32_t i = 1; i <= img->nrules && !err; i++) {
		uint32_t k = gen * (PD_MAX_RULES + 1) + i;

		err = update(s->maps.pd_rules, &k, &img->rules[i]);
	}
	for (uint32_t i = 0; i < img->nports && !err; i++) {
		struct pd_port_key k = img->port_keys[i];

		k.gen = (uint8_t)gen;
		err = update(s->maps.pd_ports, &k, &img->port_services[i]);
	}
	return err;
}

void pd_bpf_unload(struct pd_loaded *l)
{
	policyd_bpf__destroy(l->skel);
	memset(l, 0, sizeof(*l));
}
