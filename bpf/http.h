/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * framing = "http": where one HTTP/1.x request ends, and the tokens it
 * hands to the matcher. Plain C over one byte at a time and a struct
 * pd_parse, like resp.h: the BPF program and the unit tests include it
 * alike.
 *
 * A request is a request line "METHOD SP target SP HTTP/1.x CRLF",
 * header lines up to an empty line, then a body of Content-Length bytes
 * or in chunked encoding (with trailers). The matcher gets two tokens:
 * the method, then the path as a server sees it:
 *  - the absolute form "http://host/p" (any case of the scheme) is its
 *    path "/p"; the query ('?' or '#' on) is not part of it;
 *  - %XX is decoded (either case of the hex digits), and the decoded byte
 *    counts as if sent as such, the way nginx reads it: "%2e" is a dot of
 *    a dot segment, "%2f" a separator; a decoded NUL is malformed;
 *  - repeated '/' are one, "." segments are dropped.
 * Then, in a section of its own (PD_SYM_QUERY: the automaton goes to the
 * query's start state), the bytes after the '?' or '#' that ended the
 * path, up to the space: %XX decoded as in the path (a NUL too), but an
 * escape that is not one ("50%", "%zz") handed over as sent, the way
 * applications' query parsers read it; '+' stays '+'.
 * Then, in a section of its own (PD_SYM_HEADERS: the automaton goes to
 * the head's start state), the header lines, each as '\n', its name in
 * lower case, ':' and one space, its value in lower case without the
 * spaces and tabs around it and with a run of them inside it as one
 * space; the '\n' that ends the last one: each line as it is usually
 * written. Names are tchars and values hold no control byte but tab, so
 * '\n' and ':' mark where a name begins and ends:
 * `header = "Upgrade: websocket"` is "\nupgrade: websocket\n", whatever
 * the case, the spaces, the header's place. And in a third section
 * (PD_SYM_BODY) the body's bytes as sent, without the chunked encoding's
 * size lines and CRLFs. Trailer lines are not handed over. A section the
 * service has no rule for is not walked, and its counted bytes (the
 * body) are passed over by their length, unread.
 *
 * Strict where servers differ or are lax, so that whatever passes is read
 * as it was judged (anything else is malformed, and denied): one space
 * between the parts of the request line, nothing before the method, a
 * method of upper-case letters, '-' and '_', HTTP/1.0 or HTTP/1.1 (the
 * h2c prior-knowledge preface "PRI * HTTP/2.0" is not one), a ".."
 * segment in the path after decoding (clients resolve them before they
 * send; policyd does not take back what it matched), a bad %-escape, a
 * control byte in the target or a header, a header line without a name
 * and ':', a folded header line, Content-Length twice or with
 * Transfer-Encoding, a Transfer-Encoding other than "chunked" (or one
 * on HTTP/1.0), "Upgrade: h2c", '\r' not followed by '\n'.
 */
#ifndef PD_HTTP_H
#define PD_HTTP_H

#include "resp.h"       /* PD_P_*, struct pd_syms, pd_sym */

enum pd_http_phase {
	PD_H_START = 0,         /* the method's first byte */
	PD_H_METHOD,
	PD_H_TARGET,            /* the target's first byte */
	PD_H_SCHEME,            /* "http://" or "https://", count bytes in */
	PD_H_AUTH,              /* the authority of an absolute form */
	PD_H_PATH,              /* the path (tok: where in a segment, aux: %-escape) */
	PD_H_QUERY,             /* '?' or '#' up to the space */
	PD_H_RAW,               /* an authority form (CONNECT) or '*' */
	PD_H_VERSION,           /* "HTTP/1.x", count bytes in */
	PD_H_LINE_LF,           /* the request line's '\r' */
	PD_H_HDR,               /* a header line's first byte */
	PD_H_HNAME,             /* a header name (aux: candidates, count: bytes) */
	PD_H_HOWS,              /* spaces before a value */
	PD_H_HVAL,              /* a value (count: bytes) */
	PD_H_HVAL_LF,
	PD_H_END_LF,            /* the empty line's '\r' */
	PD_H_BODY,              /* len bytes of the body */
	PD_H_CSIZE,             /* a chunk's size line */
	PD_H_CEXT,              /* its extension */
	PD_H_CSIZE_LF,
	PD_H_CDATA,             /* len bytes of a chunk */
	PD_H_CDATA_CR,
	PD_H_CDATA_LF,
	PD_H_TRAILER,           /* a trailer line's first byte */
	PD_H_TLINE,
	PD_H_TLINE_LF,
	PD_H_TEND_LF,
};

/* tok in PD_H_PATH: where in a segment */
#define PD_H_SEG 0              /* in a segment */
#define PD_H_SLASH 1            /* just after a '/' (one was handed over) */
#define PD_H_DOT1 2             /* "/." so far, the dot not handed over yet */
#define PD_H_DOT2 3             /* "/.." so far */

/* aux in PD_H_PATH: a %-escape, the first digit's value in the high bits */
#define PD_H_PCT1 0x1
#define PD_H_PCT2 0x2

/* aux in PD_H_HNAME: the names the header may still be */
#define PD_H_CL 0x1             /* content-length */
#define PD_H_TE 0x2             /* transfer-encoding */
#define PD_H_UP 0x4             /* upgrade */

/* kind: the header whose value is read */
#define PD_H_K_OTHER 0
#define PD_H_K_CL 1
#define PD_H_K_TE 2
#define PD_H_K_UP 3

/* word: what the head said */
#define PD_H_W_CL 0x1           /* a Content-Length */
#define PD_H_W_TE 0x2           /* Transfer-Encoding: chunked */
#define PD_H_W_10 0x4           /* HTTP/1.0 */
#define PD_H_W_DIGIT 0x8        /* the value read has a digit */
#define PD_H_W_VEND 0x10        /* the value read ended (spaces after it) */
#define PD_H_W_HTTPS 0x20       /* the scheme is https */
#define PD_H_W_QUERY 0x40       /* the target has a query (or a fragment) */

/* aux in PD_H_QUERY: PD_H_PCT1 and PD_H_PCT2 as in the path, and */
#define PD_H_PCTU 0x4           /* the escape's first digit is a capital letter */

/* Byte i of a header name the parser knows (lower case), or 0 past it:
 * content-length, transfer-encoding, upgrade, 8 bytes to a number. */
PD_INLINE __u8 pd_h_name(__u32 which, __u32 i)
{
	__u64 w;

	if (which == PD_H_CL)
		w = i < 8 ? 0x2d746e65746e6f63ull : i < 16 ? 0x6874676e656cull : 0;
	else if (which == PD_H_TE)
		w = i < 8 ? 0x726566736e617274ull : i < 16 ? 0x6e69646f636e652dull :
		    i < 24 ? 0x67ull : 0;
	else
		w = i < 8 ? 0x65646172677075ull : 0;
	return (__u8)(w >> (8 * (i & 7)));
}

/* Byte i of "chunked". */
PD_INLINE __u8 pd_h_chunked(__u32 i)
{
	return i < 7 ? (__u8)(0x64656b6e756863ull >> (8 * i)) : 0;
}

PD_INLINE __u8 pd_h_lower(__u8 b)
{
	return b >= 'A' && b <= 'Z' ? b | 0x20 : b;
}

PD_INLINE int pd_h_hex(__u8 b)
{
	if (b >= '0' && b <= '9')
		return b - '0';
	b = pd_h_lower(b);
	return b >= 'a' && b <= 'f' ? b - 'a' + 10 : -1;
}

/* RFC 9110 tchar: the bytes of a header name */
PD_INLINE int pd_h_tchar(__u8 b)
{
	return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
	       b == '!' || b == '#' || b == '$' || b == '%' || b == '&' || b == '\'' ||
	       b == '*' || b == '+' || b == '-' || b == '.' || b == '^' || b == '_' ||
	       b == '`' || b == '|' || b == '~';
}

/* A byte of the path as the server sees it (decoded). */
PD_INLINE int pd_h_pathc(struct pd_parse *ps, __u8 c, struct pd_syms *o)
{
	switch (ps->tok) {
	case PD_H_SLASH:
		if (c == '/')
			return PD_P_MORE;               /* repeated '/' are one */
		if (c == '.') {
			ps->tok = PD_H_DOT1;
			return PD_P_MORE;
		}
		break;
	case PD_H_DOT1:
		if (c == '/') {
			ps->tok = PD_H_SLASH;           /* a "." segment */
			return PD_P_MORE;
		}
		if (c == '.') {
			ps->tok = PD_H_DOT2;
			return PD_P_MORE;
		}
		pd_sym(o, '.');
		break;
	case PD_H_DOT2:
		if (c == '/')
			return PD_P_BAD;                /* a ".." segment */
		pd_sym(o, '.');
		pd_sym(o, '.');
		break;
	}
	pd_sym(o, c);
	ps->tok = c == '/' ? PD_H_SLASH : PD_H_SEG;
	return PD_P_MORE;
}

/* The path ended (a space, '?' or '#'). */
PD_INLINE int pd_h_path_end(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	if (ps->tok == PD_H_DOT2 || ps->aux)
		return PD_P_BAD;                        /* "/..", an open escape */
	pd_sym(o, PD_SYM_END);
	if (b != ' ') {
		/* the query's section: its bytes from the next one */
		pd_sym(o, PD_SYM_QUERY);
		ps->phase = PD_H_QUERY;
		ps->word |= PD_H_W_QUERY;
		return PD_P_MORE;
	}
	ps->phase = PD_H_VERSION;
	ps->count = 0;
	return PD_P_MORE;
}

/* A byte of the path as sent. */
PD_INLINE int pd_h_path(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	int v;

	if (ps->aux & PD_H_PCT1) {
		v = pd_h_hex(b);
		if (v < 0)
			return PD_P_BAD;
		ps->aux = PD_H_PCT2 | (__u8)(v << 4);
		return PD_P_MORE;
	}
	if (ps->aux & PD_H_PCT2) {
		v = pd_h_hex(b);
		if (v < 0)
			return PD_P_BAD;
		b = (ps->aux & 0xf0) | (__u8)v;
		ps->aux = 0;
		if (!b)
			return PD_P_BAD;
		return pd_h_pathc(ps, b, o);
	}
	if (b == ' ' || b == '?' || b == '#')
		return pd_h_path_end(ps, b, o);
	if (b <= ' ' || b == 0x7f)
		return PD_P_BAD;
	if (b == '%') {
		ps->aux = PD_H_PCT1;
		return PD_P_MORE;
	}
	return pd_h_pathc(ps, b, o);
}

/* A byte of the query as sent. An escape is decoded once it is whole;
 * one that turns out not to be is handed over as it was sent, then the
 * byte that ended it (three symbols at most). */
PD_INLINE int pd_h_query(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	int v = pd_h_hex(b);
	__u8 d;

	if ((ps->aux & PD_H_PCT1) && v >= 0) {
		ps->aux = PD_H_PCT2 | (__u8)(v << 4) | (b >= 'A' && b <= 'F' ? PD_H_PCTU : 0);
		return PD_P_MORE;
	}
	if ((ps->aux & PD_H_PCT2) && v >= 0) {
		pd_sym(o, (ps->aux & 0xf0) | (__u8)v);
		ps->aux = 0;
		return PD_P_MORE;
	}
	if (ps->aux) {
		pd_sym(o, '%');
		if (ps->aux & PD_H_PCT2) {
			d = ps->aux >> 4;
			pd_sym(o, d < 10 ? '0' + d : ((ps->aux & PD_H_PCTU) ? 'A' : 'a') + d - 10);
		}
		ps->aux = 0;
	}
	if (b == ' ') {
		ps->phase = PD_H_VERSION;
		ps->count = 0;
		return PD_P_MORE;
	}
	if (b < ' ' || b == 0x7f)
		return PD_P_BAD;
	if (b == '%')
		ps->aux = PD_H_PCT1;
	else
		pd_sym(o, b);
	return PD_P_MORE;
}

/* Byte count of "http://" (or "https://" with s): the byte expected. */
PD_INLINE __u8 pd_h_scheme(__u32 i, int s)
{
	if (i < 4)
		return (__u8)(0x70747468u >> (8 * i));  /* "http" */
	if (s && i == 4)
		return 's';
	i -= s ? 5 : 4;
	return i == 0 ? ':' : i < 3 ? '/' : 0;
}

/* Byte count of "HTTP/1.": the byte expected. */
PD_INLINE __u8 pd_h_version(__u32 i)
{
	return i < 7 ? (__u8)(0x2e312f50545448ull >> (8 * i)) : 0;
}

/* The request line's target, first byte. */
PD_INLINE int pd_h_target(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	if (b == '/') {
		ps->phase = PD_H_PATH;
		ps->tok = PD_H_SLASH;
		pd_sym(o, '/');
		return PD_P_MORE;
	}
	if (pd_h_lower(b) == 'h') {
		ps->phase = PD_H_SCHEME;
		ps->count = 1;
		return PD_P_MORE;
	}
	if (b <= ' ' || b >= 0x7f)
		return PD_P_BAD;
	ps->phase = PD_H_RAW;           /* '*', or host:port of CONNECT */
	pd_sym(o, b);
	return PD_P_MORE;
}

/* The request line ended: the head's section begins, and its first
 * header line. */
PD_INLINE int pd_h_line_end(struct pd_parse *ps, struct pd_syms *o)
{
	ps->phase = PD_H_HDR;
	pd_sym(o, PD_SYM_HEADERS);
	pd_sym(o, '\n');
	return PD_P_MORE;
}

/* The head ended (its empty line). */
PD_INLINE int pd_h_head_end(struct pd_parse *ps, struct pd_syms *o)
{
	__u32 w = ps->word;

	if ((w & PD_H_W_CL) && (w & PD_H_W_TE))
		return PD_P_BAD;
	if (w & PD_H_W_TE) {
		if (w & PD_H_W_10)
			return PD_P_BAD;
		ps->phase = PD_H_CSIZE;
		ps->len = 0;
		ps->count = 0;
		pd_sym(o, PD_SYM_BODY);
		return PD_P_MORE;
	}
	if ((w & PD_H_W_CL) && ps->name) {
		ps->phase = PD_H_BODY;
		ps->len = (__u32)ps->name;
		pd_sym(o, PD_SYM_BODY);
		return PD_P_MORE;
	}
	return PD_P_DONE;
}

/* A header line ended: its '\n' begins the next one's. */
PD_INLINE int pd_h_header_end(struct pd_parse *ps, struct pd_syms *o)
{
	__u32 w = ps->word;

	if (ps->kind == PD_H_K_CL) {
		if ((w & PD_H_W_CL) || !(w & PD_H_W_DIGIT))
			return PD_P_BAD;
		w |= PD_H_W_CL;
	} else if (ps->kind == PD_H_K_TE) {
		if ((w & PD_H_W_TE) || ps->count < 7)
			return PD_P_BAD;
		w |= PD_H_W_TE;
	}
	ps->word = w & ~(PD_H_W_DIGIT | PD_H_W_VEND);
	ps->kind = PD_H_K_OTHER;
	ps->phase = PD_H_HDR;
	pd_sym(o, '\n');
	return PD_P_MORE;
}

/* A byte of a header value: in lower case, after one space where spaces
 * and tabs came before it inside the value. */
PD_INLINE int pd_h_value(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	if (b == '\r') {
		ps->phase = PD_H_HVAL_LF;
		return PD_P_MORE;
	}
	if (b == '\n')
		return pd_h_header_end(ps, o);
	if ((b < ' ' && b != '\t') || b == 0x7f)
		return PD_P_BAD;
	if (b == ' ' || b == '\t') {
		if (ps->count)
			ps->word |= PD_H_W_VEND;
		return PD_P_MORE;
	}
	if (ps->word & PD_H_W_VEND) {
		/* a byte after spaces inside the value */
		if (ps->kind == PD_H_K_CL || ps->kind == PD_H_K_TE)
			return PD_P_BAD;
		ps->word &= ~PD_H_W_VEND;
		pd_sym(o, ' ');
	}
	pd_sym(o, pd_h_lower(b));
	if (ps->kind == PD_H_K_CL) {
		if (b < '0' || b > '9')
			return PD_P_BAD;
		ps->name = ps->name * 10 + (b - '0');
		if (ps->name > 0xfffffffeull)
			return PD_P_BAD;
		ps->word |= PD_H_W_DIGIT;
	} else if (ps->kind == PD_H_K_TE) {
		if (pd_h_lower(b) != pd_h_chunked(ps->count))
			return PD_P_BAD;
	} else if (ps->kind == PD_H_K_UP && ps->count < 3) {
		if (pd_h_lower(b) != (__u8)(0x633268u >> (8 * ps->count)))
			ps->kind = PD_H_K_OTHER;
		else if (ps->count == 2)
			return PD_P_BAD;        /* Upgrade: h2c */
	}
	if (ps->count < 0xffff)
		ps->count++;
	return PD_P_MORE;
}

/* A byte of a header name (handed over in lower case), or its ':'. */
PD_INLINE int pd_h_hname(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	__u8 c = pd_h_lower(b);
	__u32 k;

	if (b == ':') {
		if (!ps->count)
			return PD_P_BAD;
		ps->kind = PD_H_K_OTHER;
		for (k = 1; k <= 4; k <<= 1)
			if ((ps->aux & k) && !pd_h_name(k, ps->count))
				ps->kind = k == PD_H_CL ? PD_H_K_CL : k == PD_H_TE ? PD_H_K_TE : PD_H_K_UP;
		ps->aux = 0;
		ps->count = 0;
		ps->phase = PD_H_HOWS;
		pd_sym(o, ':');
		pd_sym(o, ' ');
		return PD_P_MORE;
	}
	if (!pd_h_tchar(b))
		return PD_P_BAD;
	pd_sym(o, c);
	for (k = 1; k <= 4; k <<= 1)
		if ((ps->aux & k) && pd_h_name(k, ps->count) != c)
			ps->aux &= ~k;
	if (ps->count < 0xffff)
		ps->count++;
	return PD_P_MORE;
}

/* A byte of a chunk's size line. */
PD_INLINE int pd_h_csize(struct pd_parse *ps, __u8 b)
{
	int v = pd_h_hex(b);

	if (v >= 0 && ps->phase == PD_H_CSIZE) {
		if (ps->count >= 8)
			return PD_P_BAD;
		ps->len = ps->len << 4 | (__u32)v;
		ps->count++;
		return PD_P_MORE;
	}
	if (!ps->count)
		return PD_P_BAD;
	if (b == ';') {
		ps->phase = PD_H_CEXT;
		return PD_P_MORE;
	}
	if (b == '\r') {
		ps->phase = PD_H_CSIZE_LF;
		return PD_P_MORE;
	}
	if (b == '\n') {
		ps->phase = ps->len ? PD_H_CDATA : PD_H_TRAILER;
		return PD_P_MORE;
	}
	if (ps->phase == PD_H_CEXT && b >= ' ' && b != 0x7f)
		return PD_P_MORE;
	return PD_P_BAD;
}

/* A byte that pd_http_byte would hand over as its one symbol (*sym),
 * changing at most the parser's place in a token or its count of a
 * header's bytes: of the method, the path (no escape, no "." or ".."
 * segment begun), the query (no escape), a raw target, a header's name
 * once it can be none of the names the parser looks for, or a header's
 * value (no space before it, not a value the parser reads); taken so
 * (1), or 0 with ps untouched. */
PD_INLINE int pd_http_quick(struct pd_parse *ps, __u8 b, __u8 *sym)
{
	*sym = b;
	switch (ps->phase) {
	case PD_H_START:
	case PD_H_METHOD:
		if (!((b >= 'A' && b <= 'Z') || b == '-' || b == '_'))
			return 0;
		ps->phase = PD_H_METHOD;
		return 1;
	case PD_H_PATH:
		if (ps->aux || b <= ' ' || b == 0x7f || b == '?' || b == '#' || b == '%')
			return 0;
		if (ps->tok == PD_H_SEG) {
			if (b == '/')
				ps->tok = PD_H_SLASH;
			return 1;
		}
		if (ps->tok == PD_H_SLASH && b != '/' && b != '.') {
			ps->tok = PD_H_SEG;
			return 1;
		}
		return 0;
	case PD_H_QUERY:
		return !ps->aux && b > ' ' && b != 0x7f && b != '%';
	case PD_H_RAW:
		return b > ' ' && b < 0x7f;
	case PD_H_HNAME:
		if (ps->aux || b == ':' || !pd_h_tchar(b))
			return 0;
		break;
	case PD_H_HVAL:
		if (b <= ' ' || b == 0x7f || (ps->word & PD_H_W_VEND) || ps->kind == PD_H_K_CL ||
		    ps->kind == PD_H_K_TE || (ps->kind == PD_H_K_UP && ps->count < 3))
			return 0;
		break;
	default:
		return 0;
	}
	/* a header's name or value: in lower case, counted */
	*sym = pd_h_lower(b);
	if (ps->count < 0xffff)
		ps->count++;
	return 1;
}

/* One byte of a request: its symbols into o (o->n set). */
PD_INLINE int pd_http_byte(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	o->n = 0;
	switch (ps->phase) {
	case PD_H_START:
	case PD_H_METHOD:
		if (b == ' ' && ps->phase == PD_H_METHOD) {
			pd_sym(o, PD_SYM_END);
			ps->phase = PD_H_TARGET;
			return PD_P_MORE;
		}
		if (!((b >= 'A' && b <= 'Z') || b == '-' || b == '_'))
			return PD_P_BAD;
		pd_sym(o, b);
		ps->phase = PD_H_METHOD;
		return PD_P_MORE;
	case PD_H_TARGET:
		return pd_h_target(ps, b, o);
	case PD_H_SCHEME:
		if (ps->count == 4 && pd_h_lower(b) == 's')
			ps->word |= PD_H_W_HTTPS;
		if (pd_h_lower(b) != pd_h_scheme(ps->count, !!(ps->word & PD_H_W_HTTPS)))
			return PD_P_BAD;        /* not an http(s) URI */
		ps->count++;
		if (!pd_h_scheme(ps->count, !!(ps->word & PD_H_W_HTTPS)))
			ps->phase = PD_H_AUTH;
		return PD_P_MORE;
	case PD_H_AUTH:
		if (b == '/' || b == ' ' || b == '?' || b == '#') {
			/* the path begins; "http://host" alone is "/" */
			pd_sym(o, '/');
			ps->phase = PD_H_PATH;
			ps->tok = PD_H_SLASH;
			return b == '/' ? PD_P_MORE : pd_h_path_end(ps, b, o);
		}
		if (b < ' ' || b >= 0x7f)
			return PD_P_BAD;
		return PD_P_MORE;
	case PD_H_PATH:
		return pd_h_path(ps, b, o);
	case PD_H_QUERY:
		return pd_h_query(ps, b, o);
	case PD_H_RAW:
		if (b == ' ') {
			pd_sym(o, PD_SYM_END);
			ps->phase = PD_H_VERSION;
			ps->count = 0;
			return PD_P_MORE;
		}
		if (b < ' ' || b >= 0x7f)
			return PD_P_BAD;
		pd_sym(o, b);
		return PD_P_MORE;
	case PD_H_VERSION:
		if (ps->count < 7) {
			if (b != pd_h_version(ps->count))
				return PD_P_BAD;
			ps->count++;
			return PD_P_MORE;
		}
		if (ps->count == 7) {
			if (b != '0' && b != '1')
				return PD_P_BAD;        /* HTTP/1.0 and 1.1 only */
			if (b == '0')
				ps->word |= PD_H_W_10;
			ps->count++;
			return PD_P_MORE;
		}
		if (b == '\r') {
			ps->phase = PD_H_LINE_LF;
			return PD_P_MORE;
		}
		if (b != '\n')
			return PD_P_BAD;
		return pd_h_line_end(ps, o);
	case PD_H_LINE_LF:
	case PD_H_HVAL_LF:
	case PD_H_END_LF:
		if (b != '\n')
			return PD_P_BAD;
		if (ps->phase == PD_H_HVAL_LF)
			return pd_h_header_end(ps, o);
		if (ps->phase == PD_H_END_LF)
			return pd_h_head_end(ps, o);
		return pd_h_line_end(ps, o);
	case PD_H_HDR:
		if (b == '\r') {
			ps->phase = PD_H_END_LF;
			return PD_P_MORE;
		}
		if (b == '\n')
			return pd_h_head_end(ps, o);
		ps->phase = PD_H_HNAME;
		ps->aux = PD_H_CL | PD_H_TE | PD_H_UP;
		ps->count = 0;
		return pd_h_hname(ps, b, o);
	case PD_H_HNAME:
		return pd_h_hname(ps, b, o);
	case PD_H_HOWS:
		if (b == ' ' || b == '\t')
			return PD_P_MORE;
		ps->phase = PD_H_HVAL;
		return pd_h_value(ps, b, o);
	case PD_H_HVAL:
		return pd_h_value(ps, b, o);
	case PD_H_BODY:
		pd_sym(o, b);
		return --ps->len ? PD_P_MORE : PD_P_DONE;
	case PD_H_CSIZE:
	case PD_H_CEXT:
		return pd_h_csize(ps, b);
	case PD_H_CSIZE_LF:
		if (b != '\n')
			return PD_P_BAD;
		ps->phase = ps->len ? PD_H_CDATA : PD_H_TRAILER;
		return PD_P_MORE;
	case PD_H_CDATA:
		pd_sym(o, b);
		if (!--ps->len)
			ps->phase = PD_H_CDATA_CR;
		return PD_P_MORE;
	case PD_H_CDATA_CR:
		if (b != '\r')
			return PD_P_BAD;
		ps->phase = PD_H_CDATA_LF;
		return PD_P_MORE;
	case PD_H_CDATA_LF:
		if (b != '\n')
			return PD_P_BAD;
		ps->phase = PD_H_CSIZE;
		ps->count = 0;
		return PD_P_MORE;
	case PD_H_TRAILER:
		if (b == '\r') {
			ps->phase = PD_H_TEND_LF;
			return PD_P_MORE;
		}
		if (b == '\n')
			return PD_P_DONE;
		ps->phase = PD_H_TLINE;
		return b < ' ' && b != '\t' ? PD_P_BAD : PD_P_MORE;
	case PD_H_TLINE:
		if (b == '\r') {
			ps->phase = PD_H_TLINE_LF;
			return PD_P_MORE;
		}
		if (b == '\n') {
			ps->phase = PD_H_TRAILER;
			return PD_P_MORE;
		}
		return (b < ' ' && b != '\t') || b == 0x7f ? PD_P_BAD : PD_P_MORE;
	case PD_H_TLINE_LF:
	case PD_H_TEND_LF:
		if (b != '\n')
			return PD_P_BAD;
		if (ps->phase == PD_H_TEND_LF)
			return PD_P_DONE;
		ps->phase = PD_H_TRAILER;
		return PD_P_MORE;
	}
	return PD_P_BAD;
}

/* The section of the request the parser is in: 0 the request line's
 * tokens, 1 the rest of the head, 2 the body, 3 the trailers, 4 the
 * target's query (with the space that ends it). */
PD_INLINE int pd_http_section(const struct pd_parse *ps)
{
	if (ps->phase == PD_H_QUERY ||
	    (ps->phase == PD_H_VERSION && !ps->count && (ps->word & PD_H_W_QUERY)))
		return 4;
	if (ps->phase < PD_H_VERSION || (ps->phase == PD_H_VERSION && !ps->count))
		return 0;
	if (ps->phase < PD_H_BODY)
		return 1;
	return ps->phase < PD_H_TRAILER ? 2 : 3;
}

/* Bytes from here that may be passed over by their count: a body's or a
 * chunk's; of a body all but its last byte, which ends the request. */
PD_INLINE __u32 pd_http_counted(const struct pd_parse *ps)
{
	if (ps->phase == PD_H_CDATA)
		return ps->len;
	return ps->phase == PD_H_BODY && ps->len > 1 ? ps->len - 1 : 0;
}

/* A counted byte of the body the matcher needs (pd_http_counted). */
PD_INLINE int pd_http_take(struct pd_parse *ps, __u8 b, struct pd_syms *o)
{
	pd_sym(o, b);
	if (!--ps->len)
		ps->phase = PD_H_CDATA_CR;      /* a chunk's: a body keeps its last byte */
	return PD_P_MORE;
}

PD_INLINE void pd_http_pass(struct pd_parse *ps, __u32 n)
{
	ps->len -= n;
	if (!ps->len)
		ps->phase = PD_H_CDATA_CR;      /* a chunk's: a body keeps its last byte */
}

#endif /* PD_HTTP_H */
