// SPDX-License-Identifier: GPL-2.0-only
/*
 * Loads the BPF programs sized for a policy (the kernel's verifier runs
 * over the shared automaton walk), writes the image into slot 1, and reads
 * entries back. Needs root. Usage: load_image POLICY...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "load.h"
#include "policyd.skel.h"
#include "tap.h"

/* The verifier's limit on the instructions it checks in a program. A
 * program that needs more than VERIFIED_MAX is a change (ours, or the
 * kernel's verifier: two builds of one 6.18 differed by 70 %) away from
 * not loading at all: said here, before a kernel refuses it. */
#define VERIFIER_LIMIT 1000000u
#define VERIFIED_MAX (VERIFIER_LIMIT / 100 * 85)

static void verified(const char *file, struct bpf_program *prog)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (!ok(!bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len),
		"%s: %s's information", file, bpf_program__name(prog)))
		return;
	ok(info.verified_insns > 0 && info.verified_insns <= VERIFIED_MAX,
	   "%s: %s verified in %u instructions, at most %u (15 %% of the verifier's limit to "
	   "spare)", file, bpf_program__name(prog), info.verified_insns, VERIFIED_MAX);
}

static void one(const char *file)
{
	struct pd_policy p;
	struct pd_image img;
	struct pd_diag d = { 0 };
	struct pd_loaded l;
	const char *why = "";
	int err;

	if (!ok(!pd_policy_load(file, &p, &d) && !pd_compile(&p, &img, &d), "%s compiles", file)) {
		pd_diag_print(&d, stdout);
		pd_diag_free(&d);
		return;
	}
	err = pd_bpf_load(&img, NULL, PD_DEFAULT_MAX_CONNECTIONS, &l, &why);
	if (ok(!err, "%s: the kernel loads the programs (%s)", file,
	       err ? why : "verifier accepted")) {
		struct pd_service svc;
		struct pd_state_out o;
		uint32_t k = PD_MAX_SERVICES + 0, last = l.slot_states + img.nstates - 1;
		struct pd_port_key pk = img.port_keys[0];
		uint32_t sv = ~0u;

		verified(file, l.skel->progs.pd_msg);
		verified(file, l.skel->progs.pd_replay);
		/* the table in the maps' rows, as the daemon widens it */
		ok(!pd_image_widen(&img, l.row_width), "%s: image widened to rows of %u", file,
		   l.row_width);
		ok(!pd_bpf_write_image(&l, &img, 1), "%s: image written into slot 1", file);
		ok(!bpf_map_lookup_elem(bpf_map__fd(l.skel->maps.pd_services), &k, &svc) &&
		   svc.start == img.services[0].svc.start + l.slot_states &&
		   svc.nclasses == img.services[0].svc.nclasses, "%s: service entry relocated to slot 1", file);
		ok(!bpf_map_lookup_elem(bpf_map__fd(l.skel->maps.pd_outs), &last, &o) &&
		   o.deny == img.outs[img.nstates - 1].deny &&
		   o.cont == img.outs[img.nstates - 1].cont + l.slot_states,
		   "%s: last state's outputs read back", file);
		pk.gen = 1;
		ok(!bpf_map_lookup_elem(bpf_map__fd(l.skel->maps.pd_ports), &pk, &sv) &&
		   sv == img.port_services[0], "%s: port %u maps to its service", file, pk.port);
		pd_bpf_unload(&l);
	}
	pd_image_free(&img);
	pd_policy_free(&p);
	pd_diag_free(&d);
}

/* libbpf's messages (the verifier log) only with PD_VERBOSE=1, on stderr. */
static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN && getenv("PD_VERBOSE") ? vfprintf(stderr, fmt, ap) : 0;
}

int main(int argc, char **argv)
{
	libbpf_set_print(quiet);
	for (int i = 1; i < argc; i++)
		one(argv[i]);
	return done_testing();
}
