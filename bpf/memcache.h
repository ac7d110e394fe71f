/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * framing = "memcache": where one memcached text-protocol command ends,
 * and the tokens it hands to the matcher. Plain C over one byte at a time
 * and a struct pd_parse, like resp.h: the BPF program and the unit tests
 * include it alike.
 *
 * A command is what memcached 1.6 reads as one: a line up to its '\n'
 * (one '\r' before it dropped), and, after a storage command (set, add,
 * replace, append, prepend, cas, ms), the data block whose length the
 * line states, then "\r\n". The line is split as memcached splits it:
 * at spaces only (repeated and leading ones skipped; a tab or a '\r'
 * inside the line is part of a token), and a NUL byte ends what memcached
 * reads of the line (it looks at it with strlen): "flush_all\0junk" is
 * the command flush_all. Names are compared exactly (memcached answers
 * ERROR to "FLUSH_ALL").
 *
 * Stricter than memcached where memcached would read the bytes after a
 * storage line some other way than as its data block (it answers an
 * error and reads the block as commands): such a line is malformed, and
 * denied. That is a storage command with the wrong number of tokens, a
 * key longer than 250 bytes, a flags, expiry, length or cas value that
 * is not plain decimal (at most 19 digits for flags and cas, a sign and
 * 9 digits for the expiry, 9 digits for the length). A data block not
 * followed by "\r\n" and a command that begins with the binary
 * protocol's magic byte 0x80 are malformed too.
 */
#ifndef PD_MEMCACHE_H
#define PD_MEMCACHE_H

#include "resp.h"       /* PD_P_*, struct pd_syms, pd_sym */

enum pd_mc_phase {
	PD_MC_START = 0,        /* a command's first byte */
	PD_MC_BLANK,            /* between tokens */
	PD_MC_TOKEN,            /* in a token */
	PD_MC_CR,               /* after a '\r' that may end the line */
	PD_MC_IGNORE,           /* after a NUL: up to the line's end */
	PD_MC_DATA,             /* len bytes of the data block */
	PD_MC_DATA_CR,
	PD_MC_DATA_LF,
};

/* kind: the command, once its name ended; PD_MC_K_BAD added when one of
 * the line's numbers or its key cannot be what memcached needs */
#define PD_MC_K_OTHER 1         /* no data block */
#define PD_MC_K_STORE 2         /* set add replace append prepend: key flags exptime bytes */
#define PD_MC_K_CAS 3           /* cas: ... bytes cas-unique */
#define PD_MC_K_MSET 4          /* ms: key datalen flags... */
#define PD_MC_K_BAD 0x80

/* aux */
#define PD_MC_INTOK 0x1         /* the pending '\r' came inside a token */
#define PD_MC_NEG 0x2           /* the expiry began with '-' */
#define PD_MC_LONE 0x4          /* the pending '\r' is the line's first byte: a
                                 * line "\r\n" keeps it (memcached drops a '\r'
                                 * only from a line of two bytes or more) */

#define PD_MC_KEY_MAX 250       /* memcached's KEY_MAX_LENGTH */

/* A name of up to 8 bytes as the little-endian number pd_parse.name
 * holds. */
#define PD_MC_NAME(a, b, c, d, e, f, g) \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | \
	 (__u64)(e) << 32 | (__u64)(f) << 40 | (__u64)(g) << 48)

/* The command a name of n bytes is. */
PD_INLINE __u8 pd_mc_kind(__u64 name, __u32 n)
{
	if ((n == 3 && (name == PD_MC_NAME('s', 'e', 't', 0, 0, 0, 0) ||
			name == PD_MC_NAME('a', 'd', 'd', 0, 0, 0, 0))) ||
	    (n == 6 && name == PD_MC_NAME('a', 'p', 'p', 'e', 'n', 'd', 0)) ||
	    (n == 7 && (name == PD_MC_NAME('r', 'e', 'p', 'l', 'a', 'c', 'e') ||
			name == PD_MC_NAME('p', 'r', 'e', 'p', 'e', 'n', 'd'))))
		return PD_MC_K_STORE;
	if (n == 3 && name == PD_MC_NAME('c', 'a', 's', 0, 0, 0, 0))
		return PD_MC_K_CAS;
	if (n == 2 && name == PD_MC_NAME('m', 's', 0, 0, 0, 0, 0))
		return PD_MC_K_MSET;
	return PD_MC_K_OTHER;
}

/* At most how many digits token tok of a storage command may have (0:
 * any bytes, the key's limit aside). */
PD_INLINE __u32 pd_mc_digits(__u8 kind, __u8 tok)
{
	if (kind == PD_MC_K_MSET)
		return tok == 2 ? 9 : 0;
	if (kind != PD_MC_K_STORE && kind != PD_MC_K_CAS)
		return 0;
	if (tok == 2 || (tok == 5 && kind == PD_MC_K_CAS))
		return 19;              /* flags, cas unique: 64-bit */
	if (tok == 3 || tok == 4)
		return 9;               /* expiry, length: 32-bit */
	return 0;
}

/* The token that gives the data block's length. */
PD_INLINE int pd_mc_len_tok(__u8 kind, __u8 tok)
{
	return (kind == PD_MC_K_MSET && tok == 2) ||
	       ((kind == PD_MC_K_STORE || kind == PD_MC_K_CAS) && tok == 4);
}

/* One byte of a token. */
PD_INLINE void pd_mc_tokbyte(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	__u8 kind = ps->kind & ~PD_MC_K_BAD;
	__u32 max;

	pd_sym(o, b);
	ps->phase = PD_MC_TOKEN;
	if (ps->tok == 0) {
		if (ps->count < 8)
			ps->name |= (__u64)b << (8 * ps->count);
		if (ps->count < 0xffff)
			ps->count++;
		return;
	}
	if (ps->count < 0xffff)
		ps->count++;
	if (kind < PD_MC_K_STORE)
		return;
	if (ps->tok == 1) {
		if (ps->count > PD_MC_KEY_MAX)
			ps->kind |= PD_MC_K_BAD;
		return;
	}
	max = pd_mc_digits(kind, ps->tok);
	if (!max)
		return;
	if (b == '-' && ps->count == 1 && ps->tok == 3 && kind != PD_MC_K_MSET) {
		ps->aux |= PD_MC_NEG;
		return;
	}
	if (b < '0' || b > '9' || ps->count - !!(ps->aux & PD_MC_NEG) > max) {
		ps->kind |= PD_MC_K_BAD;
		return;
	}
	if (pd_mc_len_tok(kind, ps->tok))
		ps->len = ps->len * 10 + (b - '0');
}

/* A token ended. */
PD_INLINE void pd_mc_tokend(struct pd_parse *ps, struct pd_syms *o)
{
	pd_sym(o, PD_SYM_END);
	if (ps->tok == 0)
		ps->kind = pd_mc_kind(ps->name, ps->count);
	else if (pd_mc_digits(ps->kind & ~PD_MC_K_BAD, ps->tok) &&
		 ps->count == !!(ps->aux & PD_MC_NEG))
		ps->kind |= PD_MC_K_BAD;        /* a sign alone */
	if (ps->tok < 255)
		ps->tok++;
	ps->count = 0;
	ps->aux &= ~PD_MC_NEG;
	ps->phase = PD_MC_BLANK;
}

/* The line ended (its '\n'): the command ends, or its data block
 * follows. */
PD_INLINE int pd_mc_eol(struct pd_parse *ps, struct pd_syms *o)
{
	__u8 kind;

	if (ps->phase == PD_MC_TOKEN)
		pd_mc_tokend(ps, o);
	kind = ps->kind;
	if (kind & PD_MC_K_BAD)
		return PD_P_BAD;
	if (kind == PD_MC_K_STORE && ps->tok != 5 && ps->tok != 6)
		return PD_P_BAD;
	if (kind == PD_MC_K_CAS && ps->tok != 6 && ps->tok != 7)
		return PD_P_BAD;
	if (kind == PD_MC_K_MSET && ps->tok < 3)
		return PD_P_BAD;
	if (kind < PD_MC_K_STORE)
		return PD_P_DONE;
	ps->phase = ps->len ? PD_MC_DATA : PD_MC_DATA_CR;
	return PD_P_MORE;
}

/* A byte of the line in a token or between tokens. */
PD_INLINE int pd_mc_line(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	if (b == '\n')
		return pd_mc_eol(ps, o);
	if (b == '\r') {
		ps->aux = (ps->aux & ~PD_MC_INTOK) | (ps->phase == PD_MC_TOKEN ? PD_MC_INTOK : 0);
		ps->phase = PD_MC_CR;
		return PD_P_MORE;
	}
	if (!b) {
		if (ps->phase == PD_MC_TOKEN)
			pd_mc_tokend(ps, o);
		ps->phase = PD_MC_IGNORE;
		return PD_P_MORE;
	}
	if (b == ' ') {
		if (ps->phase == PD_MC_TOKEN)
			pd_mc_tokend(ps, o);
		return PD_P_MORE;
	}
	pd_mc_tokbyte(ps, b, o);
	return PD_P_MORE;
}

/* A byte of the data block (phase PD_MC_DATA). */
PD_INLINE int pd_mc_take(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	pd_sym(o, b);
	if (!--ps->len) {
		pd_sym(o, PD_SYM_END);
		ps->phase = PD_MC_DATA_CR;
	}
	return PD_P_MORE;
}

/* One byte of a command: its symbols into o (o->n set). */
PD_INLINE int pd_mc_byte(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	o->n = 0;
	switch (ps->phase) {
	case PD_MC_START:
		if (b == 0x80)
			return PD_P_BAD;        /* the binary protocol */
		if (b == '\r')
			ps->aux |= PD_MC_LONE;
		ps->phase = PD_MC_BLANK;
		return pd_mc_line(ps, b, o);
	case PD_MC_BLANK:
	case PD_MC_TOKEN:
		return pd_mc_line(ps, b, o);
	case PD_MC_CR:
		if (b == '\n') {
			ps->phase = ps->aux & PD_MC_INTOK ? PD_MC_TOKEN : PD_MC_BLANK;
			if (ps->aux & PD_MC_LONE)
				pd_mc_tokbyte(ps, '\r', o);
			return pd_mc_eol(ps, o);
		}
		ps->aux &= ~PD_MC_LONE;
		/* not the line's end: the '\r' is a byte of a token */
		pd_mc_tokbyte(ps, '\r', o);
		return pd_mc_line(ps, b, o);
	case PD_MC_IGNORE:
		if (b == '\n') {
			ps->phase = PD_MC_BLANK;
			return pd_mc_eol(ps, o);
		}
		return PD_P_MORE;
	case PD_MC_DATA:
		return pd_mc_take(ps, b, o);
	case PD_MC_DATA_CR:
		if (b != '\r')
			return PD_P_BAD;
		ps->phase = PD_MC_DATA_LF;
		return PD_P_MORE;
	case PD_MC_DATA_LF:
		return b == '\n' ? PD_P_DONE : PD_P_BAD;
	}
	return PD_P_BAD;
}

/* At most how many bytes pd_mc_skip takes at once (a bounded loop for
 * the verifier; a 250-byte key takes four). */
#define PD_MC_SKIP_MAX 64

/* Bytes from p on (up to end, at most max) that the caller, whose
 * automaton needs no more symbols of this command, may pass over: a
 * token after the name (a get's key, a storage command's key; the
 * numbers after a key are checked byte by byte), or what follows a NUL.
 * It stops before what ends a token or changes the line (' ', '\n',
 * '\r', NUL). Leaves ps as pd_mc_byte would over the same bytes; returns
 * how many (0: none here). The loop looks at bytes only, so that the
 * verifier follows it once per byte, not once per state it could leave. */
PD_INLINE __u32 pd_mc_skip(struct pd_parse *ps, const __u8 *p, const __u8 *end, __u32 max)
{
	__u32 k, n;
	__u8 b;

	if (max > PD_MC_SKIP_MAX)
		max = PD_MC_SKIP_MAX;
	if (ps->phase == PD_MC_IGNORE) {
		for (k = 0; k < max && p + k + 1 <= end; k++)
			if (p[k] == '\n')
				break;
		return k;
	}
	if ((ps->phase != PD_MC_BLANK && ps->phase != PD_MC_TOKEN) || !ps->tok ||
	    (ps->kind != PD_MC_K_OTHER && ps->tok != 1))
		return 0;
	for (k = 0; k < max && p + k + 1 <= end; k++) {
		b = p[k];
		if (b == ' ' || b == '\n' || b == '\r' || !b)
			break;
	}
	if (!k)
		return 0;
	/* k bytes of one token, as pd_mc_tokbyte takes them */
	ps->phase = PD_MC_TOKEN;
	n = ps->count + k;
	ps->count = n < 0xffff ? n : 0xffff;
	if (ps->kind != PD_MC_K_OTHER && ps->count > PD_MC_KEY_MAX)
		ps->kind |= PD_MC_K_BAD;
	return k;
}

/* Bytes from here that are the data block. */
PD_INLINE __u32 pd_mc_counted(const struct pd_parse *ps)
{
	return ps->phase == PD_MC_DATA ? ps->len : 0;
}

/* Pass over n (<= pd_mc_counted) bytes unread. */
PD_INLINE void pd_mc_pass(struct pd_parse *ps, __u32 n)
{
	ps->len -= n;
	if (!ps->len)
		ps->phase = PD_MC_DATA_CR;
}

#endif /* PD_MEMCACHE_H */
