/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What policyd needs from the running kernel, found out before the real
 * load by loading a minimal program (or creating a map) per feature: a
 * helper or kfunc refused for the program type that calls it is named in
 * one sentence, instead of the verifier's refusal of the whole object.
 */
#ifndef POLICYD_PROBE_H
#define POLICYD_PROBE_H

#include <stdbool.h>
#include <stddef.h>

struct bpf_object;

/* Probe every feature once (later calls return the first result): 0, or
 * -1 after a sentence on stderr when a feature policyd cannot run without
 * is missing, or the probing itself failed. */
int pd_probe(void);
/* Before a load of obj: switch off the programs whose features are
 * missing (probing first if need be). Returns 0, or -1 as pd_probe. */
int pd_probe_apply(struct bpf_object *obj);
/* The i-th missing feature's sentence (what is missing and what the user
 * loses), or NULL after the last one. */
const char *pd_probe_missing(size_t i);
/* Whether the program of that name (in policyd.bpf.c) is loaded. */
bool pd_probe_loads(const char *program);

#endif
