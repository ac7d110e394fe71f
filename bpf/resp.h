/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * framing = "resp": where one Redis command ends, and the tokens it
 * hands to the matcher. Plain C over one byte at a time and a struct
 * pd_parse (no helpers, no maps): the BPF program and the unit tests
 * include it alike.
 *
 * A command is what Redis 7 reads as one: when its first byte is '*', a
 * RESP array "*N\r\n" of N bulk strings "$L\r\n" + L bytes + "\r\n";
 * otherwise an inline line up to its first '\n', split into tokens the
 * way Redis splits it (blanks, "double quotes" with \xHH \n \r \t \b \a
 * escapes, 'single quotes' with \'). The tokens go to the matcher each
 * followed by PD_SYM_END, the same whichever way they were sent.
 *
 * Stricter than Redis where Redis is lax, so that whatever passes is read
 * by Redis exactly as it was judged (anything else is malformed, and
 * denied):
 *  - "\r" is followed by "\n" wherever RESP puts "\r\n" (Redis skips the
 *    byte after a header's "\r" and the two bytes after a bulk string
 *    unread);
 *  - lengths are decimal without sign or leading zeros, an array holds
 *    1 to 2^31-1 strings, a bulk string at most 512 MiB (Redis's
 *    proto-max-bulk-len);
 *  - an inline line holds no NUL byte (Redis 7.0 looks for its end with
 *    strchr, which stops there: such a line never runs) and no unbalanced
 *    quote, and a closing quote is followed by a blank or the line's end
 *    (Redis refuses the line).
 */
#ifndef PD_RESP_H
#define PD_RESP_H

#include "policyd.h"

#ifndef PD_INLINE
#define PD_INLINE static inline __attribute__((always_inline))
#endif

/* What a byte did to the message (every framing's parser). */
#define PD_P_BAD (-1)           /* malformed: the message is denied */
#define PD_P_MORE 0
#define PD_P_DONE 1             /* the message ended with this byte */

PD_INLINE void pd_sym(struct pd_syms *o, __u16 s)
{
	if (o->n < 3)
		o->s[o->n++] = s;
}

#define PD_RESP_MAX_COUNT 0x7fffffffu   /* Redis: INT_MAX */
#define PD_RESP_MAX_BULK (512u << 20)   /* Redis: proto-max-bulk-len */

enum pd_resp_phase {
	PD_RESP_START = 0,      /* a command's first byte */
	PD_RESP_COUNT,          /* "*": the array's length */
	PD_RESP_COUNT_LF,       /* its "\r" */
	PD_RESP_HDR,            /* a bulk string's "$" is due */
	PD_RESP_LEN,            /* "$": its length */
	PD_RESP_LEN_LF,
	PD_RESP_DATA,           /* len bytes of the string (passed over by length
	                         * where no rule needs them) */
	PD_RESP_DATA_CR,
	PD_RESP_DATA_LF,
	PD_RESP_BLANK,          /* inline: between tokens */
	PD_RESP_TOKEN,          /* inline: in an unquoted token */
	PD_RESP_DQ,             /* in "double quotes" */
	PD_RESP_DQ_ESC,         /* after a backslash there */
	PD_RESP_DQ_X,           /* after "\x" */
	PD_RESP_DQ_X1,          /* after "\x" and a hex digit (in aux) */
	PD_RESP_SQ,             /* in 'single quotes' */
	PD_RESP_SQ_ESC,         /* after a backslash there */
	PD_RESP_CLOSED,         /* after a closing quote: a blank or the end is due */
};

/* aux while a number is read */
#define PD_RESP_DIGIT 0x1       /* a digit was read */
#define PD_RESP_ZERO 0x2        /* ... and it was a leading 0 */

/* Redis's isspace(): blanks between inline tokens */
PD_INLINE int pd_resp_blank(__u8 b)
{
	return b == ' ' || (b >= '\t' && b <= '\r');
}

PD_INLINE int pd_resp_hex(__u8 b)
{
	return (b >= '0' && b <= '9') || ((b | 0x20) >= 'a' && (b | 0x20) <= 'f');
}

PD_INLINE __u8 pd_resp_hexval(__u8 b)
{
	return b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;
}

/* One digit of a length, as Redis's string2ll reads it (no sign, no
 * leading zero), up to max. 0 or PD_P_BAD. */
PD_INLINE int pd_resp_digit(struct pd_parse *ps, __u8 b, __u32 max)
{
	__u64 v;

	if (b < '0' || b > '9' || (ps->aux & PD_RESP_ZERO))
		return PD_P_BAD;
	if (!(ps->aux & PD_RESP_DIGIT) && b == '0')
		ps->aux |= PD_RESP_ZERO;
	ps->aux |= PD_RESP_DIGIT;
	v = (__u64)ps->len * 10 + (b - '0');
	if (v > max)
		return PD_P_BAD;
	ps->len = (__u32)v;
	return PD_P_MORE;
}

PD_INLINE void pd_resp_token_end(struct pd_parse *ps, struct pd_syms *o)
{
	pd_sym(o, PD_SYM_END);
	if (ps->tok < 255)
		ps->tok++;
}

/* Inside "double quotes". */
PD_INLINE int pd_resp_dq(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	if (b == '\\') {
		ps->phase = PD_RESP_DQ_ESC;
	} else if (b == '"') {
		pd_resp_token_end(ps, o);
		ps->phase = PD_RESP_CLOSED;
	} else {
		pd_sym(o, b);
	}
	return PD_P_MORE;
}

/* Inside 'single quotes'. */
PD_INLINE int pd_resp_sq(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	if (b == '\\') {
		ps->phase = PD_RESP_SQ_ESC;
	} else if (b == '\'') {
		pd_resp_token_end(ps, o);
		ps->phase = PD_RESP_CLOSED;
	} else {
		pd_sym(o, b);
	}
	return PD_P_MORE;
}

/* Outside quotes, in a token or at its first byte. */
PD_INLINE int pd_resp_unquoted(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	if (b == ' ' || b == '\r' || b == '\t') {
		pd_resp_token_end(ps, o);
		ps->phase = PD_RESP_BLANK;
	} else if (b == '"') {
		ps->phase = PD_RESP_DQ;
	} else if (b == '\'') {
		ps->phase = PD_RESP_SQ;
	} else {
		ps->phase = PD_RESP_TOKEN;
		pd_sym(o, b);
	}
	return PD_P_MORE;
}

/* One byte of an inline command. */
PD_INLINE int pd_resp_inline(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	__u8 c;

	if (!b)
		return PD_P_BAD;
	if (b == '\n') {
		/* the line ends at its first '\n', whatever the quotes */
		if (ps->phase == PD_RESP_TOKEN)
			pd_resp_token_end(ps, o);
		else if (ps->phase != PD_RESP_BLANK && ps->phase != PD_RESP_CLOSED)
			return PD_P_BAD;        /* an open quote */
		return PD_P_DONE;
	}
	switch (ps->phase) {
	case PD_RESP_BLANK:
		if (pd_resp_blank(b))
			return PD_P_MORE;
		return pd_resp_unquoted(ps, b, o);
	case PD_RESP_TOKEN:
		return pd_resp_unquoted(ps, b, o);
	case PD_RESP_CLOSED:
		if (!pd_resp_blank(b))
			return PD_P_BAD;
		ps->phase = PD_RESP_BLANK;
		return PD_P_MORE;
	case PD_RESP_DQ:
		return pd_resp_dq(ps, b, o);
	case PD_RESP_DQ_ESC:
		ps->phase = PD_RESP_DQ;
		if (b == 'x') {
			ps->phase = PD_RESP_DQ_X;
			return PD_P_MORE;
		}
		c = b == 'n' ? '\n' : b == 'r' ? '\r' : b == 't' ? '\t' : b == 'b' ? '\b' :
		    b == 'a' ? '\a' : b;
		pd_sym(o, c);
		return PD_P_MORE;
	case PD_RESP_DQ_X:
		if (pd_resp_hex(b)) {
			ps->aux = b;
			ps->phase = PD_RESP_DQ_X1;
			return PD_P_MORE;
		}
		/* not an escape after all: "\x" is an 'x' */
		pd_sym(o, 'x');
		ps->phase = PD_RESP_DQ;
		return pd_resp_dq(ps, b, o);
	case PD_RESP_DQ_X1:
		ps->phase = PD_RESP_DQ;
		if (pd_resp_hex(b)) {
			pd_sym(o, (__u16)(pd_resp_hexval(ps->aux) << 4 | pd_resp_hexval(b)));
			ps->aux = 0;
			return PD_P_MORE;
		}
		pd_sym(o, 'x');
		pd_sym(o, ps->aux);
		ps->aux = 0;
		return pd_resp_dq(ps, b, o);
	case PD_RESP_SQ:
		return pd_resp_sq(ps, b, o);
	case PD_RESP_SQ_ESC:
		ps->phase = PD_RESP_SQ;
		if (b == '\'') {
			pd_sym(o, '\'');
			return PD_P_MORE;
		}
		pd_sym(o, '\\');
		return pd_resp_sq(ps, b, o);
	}
	return PD_P_BAD;
}

/* A byte of an inline token that pd_resp_byte would hand over as its one
 * symbol (the byte itself), at most beginning the token (phase BLANK to
 * TOKEN): taken so (1), or 0 with ps untouched. */
PD_INLINE int pd_resp_quick(struct pd_parse *ps, __u8 b)
{
	if (!b || b == '\n')
		return 0;
	switch (ps->phase) {
	case PD_RESP_BLANK:
		if (pd_resp_blank(b) || b == '"' || b == '\'')
			return 0;
		ps->phase = PD_RESP_TOKEN;
		return 1;
	case PD_RESP_TOKEN:
		return b != ' ' && b != '\r' && b != '\t' && b != '"' && b != '\'';
	case PD_RESP_DQ:
		return b != '\\' && b != '"';
	case PD_RESP_SQ:
		return b != '\\' && b != '\'';
	}
	return 0;
}

/* A byte of a bulk string's contents (phase PD_RESP_DATA). */
PD_INLINE int pd_resp_take(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	pd_sym(o, b);
	if (!--ps->len) {
		pd_resp_token_end(ps, o);
		ps->phase = PD_RESP_DATA_CR;
	}
	return PD_P_MORE;
}

/* One byte of a command: its symbols into o (o->n set). PD_P_DONE leaves
 * ps as it stands; the caller starts the next command from zero. */
PD_INLINE int pd_resp_byte(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	o->n = 0;
	switch (ps->phase) {
	case PD_RESP_START:
		if (b == '*') {
			ps->phase = PD_RESP_COUNT;
			return PD_P_MORE;
		}
		ps->phase = PD_RESP_BLANK;
		return pd_resp_inline(ps, b, o);
	case PD_RESP_COUNT:
		if (b != '\r')
			return pd_resp_digit(ps, b, PD_RESP_MAX_COUNT);
		if (!ps->len)
			return PD_P_BAD;        /* no digit, or an empty array */
		ps->count = ps->len;
		ps->phase = PD_RESP_COUNT_LF;
		return PD_P_MORE;
	case PD_RESP_COUNT_LF:
	case PD_RESP_DATA_LF:
		if (b != '\n')
			return PD_P_BAD;
		if (ps->phase == PD_RESP_DATA_LF && !--ps->count)
			return PD_P_DONE;
		ps->phase = PD_RESP_HDR;
		return PD_P_MORE;
	case PD_RESP_HDR:
		if (b != '$')
			return PD_P_BAD;
		ps->phase = PD_RESP_LEN;
		ps->len = 0;
		ps->aux = 0;
		return PD_P_MORE;
	case PD_RESP_LEN:
		if (b != '\r')
			return pd_resp_digit(ps, b, PD_RESP_MAX_BULK);
		if (!(ps->aux & PD_RESP_DIGIT))
			return PD_P_BAD;
		ps->phase = PD_RESP_LEN_LF;
		return PD_P_MORE;
	case PD_RESP_LEN_LF:
		if (b != '\n')
			return PD_P_BAD;
		ps->phase = PD_RESP_DATA;
		if (!ps->len) {
			pd_resp_token_end(ps, o);
			ps->phase = PD_RESP_DATA_CR;
		}
		return PD_P_MORE;
	case PD_RESP_DATA:
		return pd_resp_take(ps, b, o);
	case PD_RESP_DATA_CR:
		if (b != '\r')
			return PD_P_BAD;
		ps->phase = PD_RESP_DATA_LF;
		return PD_P_MORE;
	}
	return pd_resp_inline(ps, b, o);
}

/* A length of at most digits digits, then "\r\n", at p: the value, or
 * -1 when anything else is there (the byte-by-byte walk then says what). */
PD_INLINE long pd_resp_number_of(const __u8 *p, const __u8 *end, __u32 max, __u32 *used,
				 __u32 digits)
{
	__u64 v = 0;
	__u32 k;

	for (k = 0; k < digits; k++) {
		if (p + k + 1 > end)
			return -1;
		if (p[k] < '0' || p[k] > '9')
			break;
		v = v * 10 + (p[k] - '0');
	}
	if (!k || (p[0] == '0' && k > 1) || v > max || p + k + 2 > end || p[k] != '\r' ||
	    p[k + 1] != '\n')
		return -1;
	*used = k + 2;
	return (long)v;
}

/* The same with up to 10 digits, all a length can have. */
PD_INLINE long pd_resp_number(const __u8 *p, const __u8 *end, __u32 max, __u32 *used)
{
	return pd_resp_number_of(p, end, max, used, 10);
}

/* How far pd_resp_headers passes over contents at most: a window. */
#define PD_RESP_SKIP_REACH 4096

/* The headers of a RESP array from here at once, where they are whole
 * and well-formed between p and end: "*N\r\n" at a command's start, the
 * "\r\n" that ends a bulk string, "$L\r\n" (L > 0) that begins one; and
 * with skip (the matcher needs no more of the command), that string's
 * contents too where they lie whole within max bytes, and the "\r\n"
 * after them when they are the command's last. Leaves ps where
 * pd_resp_byte would over the same bytes, and returns how many it took
 * (0: none; the byte-by-byte walk goes on, and tells what is wrong).
 * *done: the command ended with the bytes taken (its last bulk string's
 * "\r\n"). */
PD_INLINE __u32 pd_resp_headers(struct pd_parse *ps, const __u8 *p, const __u8 *end, __u32 max,
				int skip, int *done_)
{
	__u32 done = 0, k;
	long v;

	if (ps->phase == PD_RESP_START) {
		if (p + 1 > end || p[0] != '*')
			return 0;
		v = pd_resp_number(p + 1, end, PD_RESP_MAX_COUNT, &k);
		if (v <= 0)
			return 0;
		ps->count = (__u32)v;
		ps->phase = PD_RESP_HDR;
		done = 1 + k;
	} else if (ps->phase == PD_RESP_DATA_CR) {
		if (!ps->count || p + 2 > end || p[0] != '\r' || p[1] != '\n')
			return 0;
		ps->phase = PD_RESP_DATA_LF;
		if (!--ps->count) {
			*done_ = 1;
			return 2;
		}
		ps->phase = PD_RESP_HDR;
		done = 2;
	}
	if (ps->phase != PD_RESP_HDR || p + done + 1 > end || p[done] != '$')
		return done;
	v = pd_resp_number(p + done + 1, end, PD_RESP_MAX_BULK, &k);
	if (v <= 0)
		return done;
	ps->len = (__u32)v;
	ps->aux = PD_RESP_DIGIT;
	ps->phase = PD_RESP_DATA;
	done += 1 + k;
	if (!skip)
		return done;
	/* the contents, passed over unread (as pd_resp_pass), where they
	 * end within max bytes and a window (a bound the verifier keeps) */
	k = done + (__u32)v;
	asm volatile("" : "+r"(k));
	if (k > max || k > PD_RESP_SKIP_REACH)
		return done;
	done = k;
	ps->len = 0;
	if (ps->tok < 255)
		ps->tok++;
	ps->phase = PD_RESP_DATA_CR;
	p += done;
	if (ps->count == 1 && done + 2 <= max && p + 2 <= end && p[0] == '\r' && p[1] == '\n') {
		ps->phase = PD_RESP_DATA_LF;
		ps->count = 0;
		*done_ = 1;
		return done + 2;
	}
	return done;
}

/* Bytes from here that are a bulk string's contents: the caller may pass
 * over them unread (pd_resp_pass) when the matcher needs none of them. */
PD_INLINE __u32 pd_resp_counted(const struct pd_parse *ps)
{
	return ps->phase == PD_RESP_DATA ? ps->len : 0;
}

/* Pass over n (<= pd_resp_counted) bytes unread. The token's end is not
 * handed over: the matcher, which needed none of it, needs no end. */
PD_INLINE void pd_resp_pass(struct pd_parse *ps, __u32 n)
{
	ps->len -= n;
	if (!ps->len) {
		if (ps->tok < 255)
			ps->tok++;
		ps->phase = PD_RESP_DATA_CR;
	}
}

#endif /* PD_RESP_H */
