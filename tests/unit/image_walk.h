/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the unit tests of the automaton and of the protocol parsers share:
 * the walk's table lookups (PD_ROW, PD_OUT) over a compiled image in
 * g_img, so that pd_match.h and proto.h run here as in the BPF program,
 * and a small random generator (the including test defines PD_TEST_SEED
 * before it includes this; main may set rng from the environment).
 */
#ifndef PD_IMAGE_WALK_H
#define PD_IMAGE_WALK_H

#include <stdint.h>
#include <stdio.h>

#include "policy.h"

static const struct pd_image *g_img;

static const __u32 *row_of(__u32 st)
{
	if (st >= g_img->nstates)
		return NULL;
	return &g_img->trans[(size_t)st * g_img->row_width];
}

static const struct pd_state_out *out_of(__u32 st)
{
	return st < g_img->nstates ? &g_img->outs[st] : NULL;
}

#define PD_ROW(ctx, st) row_of(st)
#define PD_OUT(ctx, st) out_of(st)
#define PD_ROW_MASK(ctx) (g_img->row_width - 1)

static uint64_t rng = PD_TEST_SEED;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? (uint32_t)(rng % n) : 0;
}

/* bytes as a C string in a TAP comment */
static inline void show(const char *what, const uint8_t *b, size_t n)
{
	printf("# %s (%zu bytes): \"", what, n);
	for (size_t i = 0; i < n && i < 600; i++)
		printf(b[i] >= ' ' && b[i] < 0x7f && b[i] != '"' && b[i] != '\\' ? "%c" : "\\x%02x",
		       b[i]);
	printf("\"\n");
}

#endif /* PD_IMAGE_WALK_H */
