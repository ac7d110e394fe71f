/* SPDX-License-Identifier: GPL-2.0-only */
/* Loading: BPF objects sized from an image, and images written into maps. */
#ifndef POLICYD_LOAD_H
#define POLICYD_LOAD_H

#include "policy.h"

struct policyd_bpf;

/* Largest transition table of one policy slot (one map value). */
#define PD_MAX_SLOT_BYTES (1ull << 30)

/* States each policy slot can hold in the maps this load created. */
struct pd_loaded {
	struct policyd_bpf *skel;
	uint32_t slot_states;   /* state index of slot g starts at g * slot_states */
	uint32_t row_width;
};

/* Maps pinned by an instance that stopped with on_exit = "keep": where,
 * and their sizes (from their pd_config). */
struct pd_kept {
	const char *dir;
	uint32_t slot_states;
	uint32_t row_width;
};

/* Open and load the BPF programs with maps sized for img (and a later
 * image of the same size) and a socket map of sockets connections, or,
 * with kept, over the maps pinned there. Returns 0 or -errno; *why says
 * what failed. */
int pd_bpf_load(const struct pd_image *img, const struct pd_kept *kept, uint32_t sockets,
		struct pd_loaded *l, const char **why);
/* Have libbpf's log show the verifier's statistics of the data plane's
 * program (policyd -v). */
void pd_bpf_verifier_stats(bool on);
/* Write img into policy slot gen (0 or 1). Returns 0 or -errno. */
int pd_bpf_write_image(const struct pd_loaded *l, const struct pd_image *img, uint32_t gen);
/* Write the service names of p into policy slot gen (for `policyd
 * stats`). Returns 0 or -errno. */
int pd_bpf_write_names(const struct pd_loaded *l, const struct pd_policy *p, uint32_t gen);
/* Write c into pd_config: one write, which flips the active slot.
 * Returns 0 or -errno. */
int pd_bpf_write_config(const struct pd_loaded *l, const struct pd_config *c);
/* Put socket sock into pd_sinks as sink number sink of slot gen.
 * Returns 0 or -errno. */
int pd_bpf_write_sink(const struct pd_loaded *l, uint32_t gen, uint32_t sink, int sock);
/* Publish where this instance lives (pd_instance), for another instance
 * that finds its programs. Returns 0 or -errno. */
int pd_bpf_write_instance(const struct pd_loaded *l, const char *pin_dir, const char *cgroup);
/* Single connections: */
/* Give socket fd its state st in pd_sk; replace: also over a state it
 * has. Returns 0, -EEXIST (not replace: it has one, the sock_ops
 * program's), or -errno. */
int pd_bpf_write_sock_state(const struct pd_loaded *l, int fd, const struct pd_sock *st,
			    bool replace);
/* Put socket fd, whose cookie is cookie, into the socket map, where the
 * sk_msg program judges its sends. Returns 0, -EEXIST, or -errno. */
int pd_bpf_map_socket(const struct pd_loaded *l, uint64_t cookie, int fd);
/* pd_doomed: the entry of cookie goes (aborted, gone, or not to be
 * aborted), or is written back as v while it is there (BPF_EXIST).
 * Return 0 or -errno. */
int pd_bpf_doomed_forget(const struct pd_loaded *l, uint64_t cookie);
int pd_bpf_doomed_update(const struct pd_loaded *l, uint64_t cookie, const struct pd_doomed *v);

/* Whether img fits the maps of l (a reload needs no new programs). */
bool pd_bpf_fits(const struct pd_loaded *l, const struct pd_image *img);
void pd_bpf_unload(struct pd_loaded *l);

#endif
