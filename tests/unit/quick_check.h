/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The check of pd_proto_quick against the byte-by-byte parser, shared by
 * the unit tests (proto_check.h) and the fuzz target. Included after
 * proto.h.
 */
#ifndef PD_QUICK_CHECK_H
#define PD_QUICK_CHECK_H

#include <string.h>

/* The n bytes at b byte by byte through framing's parser, as a stream
 * of messages (the next begins after one ends or is refused): where
 * pd_proto_quick takes a byte, the parser must be left as pd_proto_byte
 * leaves it, with the symbol pd_proto_quick said as the one symbol;
 * where it does not, it must be untouched. Adds the bytes it took to *taken; returns the
 * offset of the first byte where the two disagree, or n. */
static inline size_t quick_disagreement(const uint8_t *b, size_t n, __u32 framing, long *taken)
{
	struct pd_parse ps = { 0 };
	struct pd_syms o;

	for (size_t i = 0; i < n; i++) {
		struct pd_parse before = ps, q = ps;
		__u8 sym;
		int took = pd_proto_quick(&q, framing, b[i], &sym);
		int r = pd_proto_byte(&ps, framing, b[i], &o);

		if (took ? r != PD_P_MORE || o.n != 1 || o.s[0] != sym ||
			   memcmp(&q, &ps, sizeof(q)) :
			   memcmp(&q, &before, sizeof(q)))
			return i;
		*taken += took;
		if (r != PD_P_MORE)
			memset(&ps, 0, sizeof(ps));     /* the next message */
	}
	return n;
}

#endif /* PD_QUICK_CHECK_H */
