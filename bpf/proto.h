/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Protocol framings (resp, memcache, http): the parsers of each framing
 * behind one interface, and how their tokens reach the service's
 * automaton. Plain C over bytes, pointers and bounds, and the automaton
 * through pd_match.h's PD_ROW/PD_OUT: included by the BPF program and by
 * the unit tests alike.
 *
 * A parser reads a message one byte at a time (pd_proto_byte) and hands
 * over symbols: the bytes of the tokens that name what the message does
 * (a command and its arguments; a method, path and headers), each token
 * followed by PD_SYM_END. The automaton walks the symbols, not the bytes:
 * `command = "CONFIG SET"` is the anchored pattern "CONFIG" END "SET" END,
 * and a contains rule matches within one token. Where the parser is in a
 * counted part of the message (a bulk string, a data block, a body of
 * known length) and the automaton needs none of it, the caller passes
 * over the bytes by their count (pd_proto_counted, pd_proto_pass).
 */
#ifndef PD_PROTO_H
#define PD_PROTO_H

#include "pd_match.h"
#include "resp.h"
#include "memcache.h"
#include "http.h"

/* What the parsers are told of a service (pd_proto_mode): its framing,
 * and for resp whether inline commands are refused. */
#define PD_PM_FRAMING 0xff
#define PD_PM_NO_INLINE 0x100
#define PD_PM_SKIP 0x200        /* pd_proto_headers: the automaton needs no symbols */

PD_INLINE __u32 pd_proto_mode(const struct pd_service *svc)
{
	return svc->framing | (svc->pflags & PD_PF_NO_INLINE ? PD_PM_NO_INLINE : 0);
}

/* One byte of the message in progress, under mode (pd_proto_mode, or a
 * framing alone); its symbols in o. */
PD_INLINE int pd_proto_byte(struct pd_parse *ps, __u32 mode, __u8 b, struct pd_syms *o)
{
	__u32 framing = mode & PD_PM_FRAMING;

	if (framing == PD_FRAME_RESP) {
		if ((mode & PD_PM_NO_INLINE) && ps->phase == PD_RESP_START && b != '*') {
			o->n = 0;
			return PD_P_BAD;        /* inline = false */
		}
		return pd_resp_byte(ps, b, o);
	}
	if (framing == PD_FRAME_MEMCACHE)
		return pd_mc_byte(ps, b, o);
	if (framing == PD_FRAME_HTTP)
		return pd_http_byte(ps, b, o);
	o->n = 0;
	return PD_P_BAD;
}

/* Whether pd_proto_headers may take anything here: at a RESP command's
 * start, after a bulk string and where a bulk string's header is due
 * (other framings have no headers to take at once). */
PD_INLINE int pd_proto_headed(const struct pd_parse *ps, __u32 framing)
{
	return framing == PD_FRAME_RESP &&
	       (ps->phase == PD_RESP_START || ps->phase == PD_RESP_DATA_CR ||
		ps->phase == PD_RESP_HDR);
}

/* The headers of the protocol's structure at once, where they are whole
 * between p and end (pd_resp_headers), taking at most max bytes; under
 * mode PD_PM_SKIP (the automaton needs no more symbols of the message:
 * pd_proto_hmode) the contents they announce too. Bytes taken, 0 for
 * none; *done set when they end the message. */
PD_INLINE __u32 pd_proto_headers(struct pd_parse *ps, __u32 mode, const __u8 *p,
				 const __u8 *end, __u32 max, int *done)
{
	*done = 0;
	if ((mode & PD_PM_FRAMING) == PD_FRAME_RESP)
		return pd_resp_headers(ps, p, end, max, !!(mode & PD_PM_SKIP), done);
	return 0;
}

/* Bytes from p on (up to end, at most max) that would give the
 * automaton nothing but symbols, taken at once: only when it needs no
 * more of them (pd_proto_feeds is 0). How many, 0 for none. */
PD_INLINE __u32 pd_proto_skip(struct pd_parse *ps, __u32 framing, const __u8 *p,
			      const __u8 *end, __u32 max)
{
	if (framing == PD_FRAME_MEMCACHE)
		return pd_mc_skip(ps, p, end, max);
	return 0;
}

/* A byte of counted contents the automaton needs (pd_proto_counted is
 * not 0): its symbols in o. */
PD_INLINE int pd_proto_take(struct pd_parse *ps, __u32 framing, __u8 b, struct pd_syms *o)
{
	o->n = 0;
	if (framing == PD_FRAME_RESP)
		return pd_resp_take(ps, b, o);
	if (framing == PD_FRAME_MEMCACHE)
		return pd_mc_take(ps, b, o);
	if (framing == PD_FRAME_HTTP)
		return pd_http_take(ps, b, o);
	return PD_P_BAD;
}

/* A byte that pd_proto_byte would hand over as its one symbol (*sym),
 * changing at most where in a token the parser is (and, HTTP, how many
 * bytes of a header it counted): taken so (1), or 0 with ps untouched
 * (pd_proto_byte takes it). The BPF walk takes runs of such bytes at
 * once, as it takes counted contents. */
PD_INLINE int pd_proto_quick(struct pd_parse *ps, __u32 framing, __u8 b, __u8 *sym)
{
	*sym = b;
	if (framing == PD_FRAME_RESP)
		return pd_resp_quick(ps, b);
	if (framing == PD_FRAME_HTTP)
		return pd_http_quick(ps, b, sym);
	return 0;
}

/* Bytes from here that may be passed over by their count. */
PD_INLINE __u32 pd_proto_counted(const struct pd_parse *ps, __u32 framing)
{
	if (framing == PD_FRAME_RESP)
		return pd_resp_counted(ps);
	if (framing == PD_FRAME_MEMCACHE)
		return pd_mc_counted(ps);
	if (framing == PD_FRAME_HTTP)
		return pd_http_counted(ps);
	return 0;
}

PD_INLINE void pd_proto_pass(struct pd_parse *ps, __u32 framing, __u32 n)
{
	if (framing == PD_FRAME_RESP)
		pd_resp_pass(ps, n);
	else if (framing == PD_FRAME_MEMCACHE)
		pd_mc_pass(ps, n);
	else if (framing == PD_FRAME_HTTP)
		pd_http_pass(ps, n);
}

/* Whether the automaton still needs tokens by its state alone: back in
 * the resume state with no contains rule, no rule can match any more
 * (all of pd_proto_feeds outside an HTTP request's sections). */
PD_INLINE int pd_proto_state_feeds(const struct pd_match *m, const struct pd_service *svc)
{
	return m->state != svc->resume || (svc->pflags & PD_PF_CONTENT);
}

/* Whether the automaton still needs tokens: some rule may still match
 * (pd_proto_state_feeds). An HTTP request's head and body are walked
 * where the service has rules for them, its trailers never. */
PD_INLINE int pd_proto_feeds(const struct pd_match *m, const struct pd_service *svc,
			     const struct pd_parse *ps)
{
	int sec;

	if (svc->framing == PD_FRAME_HTTP) {
		sec = pd_http_section(ps);
		if (sec == 1)
			return !!(svc->pflags & PD_PF_HEADERS);
		if (sec == 2)
			return !!(svc->pflags & PD_PF_BODY);
		if (sec == 3)
			return 0;
		if (sec == 4)
			return !!(svc->pflags & PD_PF_QUERY);
	}
	return pd_proto_state_feeds(m, svc);
}

/* The mode pd_proto_headers takes here: the framing, with PD_PM_SKIP
 * once the automaton needs no more symbols. */
PD_INLINE __u32 pd_proto_hmode(const struct pd_match *m, const struct pd_service *svc,
			       const struct pd_parse *ps)
{
	return svc->framing | (pd_proto_feeds(m, svc, ps) ? 0 : PD_PM_SKIP);
}

/* pd_proto_skip where the automaton needs no more symbols of the
 * message here, else 0 (the walks of the tests and of `policyd test`). */
PD_INLINE __u32 pd_proto_skip_unfed(const struct pd_match *m, const struct pd_service *svc,
				    struct pd_parse *ps, const __u8 *p, const __u8 *end,
				    __u32 max)
{
	return pd_proto_feeds(m, svc, ps) ? 0 : pd_proto_skip(ps, svc->framing, p, end, max);
}

/* Whether some rule may still match the message: the automaton is fed,
 * or (framing http) a later section of the request has rules. */
PD_INLINE int pd_proto_live(const struct pd_match *m, const struct pd_service *svc,
			    const struct pd_parse *ps)
{
	int sec = svc->framing == PD_FRAME_HTTP ? pd_http_section(ps) : 0;

	if (sec == 1 && (svc->pflags & PD_PF_BODY))
		return 1;
	if (sec == 4 && (svc->pflags & (PD_PF_HEADERS | PD_PF_BODY)))
		return 1;
	return pd_proto_feeds(m, svc, ps);
}

/* Framing http, past the request line: whether a deny or redirect rule
 * of the section the request is in, or of a later one, keeps it held. */
PD_INLINE int pd_http_holds(const struct pd_service *svc, const struct pd_parse *ps)
{
	int sec = pd_http_section(ps);

	if (sec == 4)
		return !!(svc->pflags & (PD_PF_HOLD_QUERY | PD_PF_HOLD_HEAD));
	if (sec == 1)
		return !!(svc->pflags & PD_PF_HOLD_HEAD);
	return sec == 2 && (svc->pflags & PD_PF_HOLD_BODY);
}

/* One symbol through the automaton. 0, or -1 on inconsistent tables. */
PD_INLINE int pd_proto_sym(struct pd_match *m, const struct pd_service *svc,
			   const struct pd_classmap *cm, __u32 s, void *ctx)
{
	__u32 cls;

	/* a byte first: nearly every symbol is one */
	if (s < PD_SYM_END) {
		/* the mask itself bounds the index for the BPF verifier:
		 * kept, not folded into the comparison above */
		asm volatile("" : "+r"(s));
		cls = cm->cls[s & 0xff];
	} else if (s != PD_SYM_HEADERS && s != PD_SYM_BODY && s != PD_SYM_QUERY) {
		cls = svc->end_class;           /* PD_SYM_END */
	} else {
		/* framing http: the head's, the body's or the query's section
		 * begins */
		m->state = s == PD_SYM_HEADERS ? svc->hstart :
			   s == PD_SYM_BODY ? svc->bstart : svc->qstart;
		return 0;
	}
	return pd_step(&m->state, m, cls, ctx);
}

/* The symbols of one byte through the automaton. 0, or -1 on
 * inconsistent tables. Written out, not a loop: 6.1's verifier refuses
 * the loop the compiler makes of it (entered in its middle, closed by a
 * fall-through). */
PD_INLINE int pd_proto_match(struct pd_match *m, const struct pd_service *svc,
			     const struct pd_classmap *cm, const struct pd_syms *o, void *ctx)
{
	__u32 n = o->n;

	if (n > 0 && pd_proto_sym(m, svc, cm, o->s[0], ctx))
		return -1;
	if (n > 1 && pd_proto_sym(m, svc, cm, o->s[1], ctx))
		return -1;
	if (n > 2 && pd_proto_sym(m, svc, cm, o->s[2], ctx))
		return -1;
	return 0;
}

/* A RESP command taken whole, or as much of it as lies in the window: at
 * most this many bulk strings a call, and bytes of each of the first
 * PD_RESP_WHOLE_FED of them through the automaton (bounds the verifier
 * keeps; the rest of a command is taken by the next call, or walked
 * piece by piece). */
#define PD_RESP_WHOLE_ARGS 16
#define PD_RESP_WHOLE_FED 2
#define PD_RESP_WHOLE_BYTES 24

/* A field of the parser read and written where it lies, each time. */
#define PD_RESP_VOL(x) (*(volatile __typeof__(x) *)&(x))

/* The offset o, bounded to 13 bits, passed through memory (*via): the
 * BPF verifier then knows o by those bounds alone, whatever path led to
 * it, so that the passes of a loop do not multiply its paths, and p + o
 * stays a bounded offset. o is smaller. */
PD_INLINE __u32 pd_resp_off(__u32 o, __u32 *via)
{
	*(volatile __u32 *)via = o;
	return *(volatile __u32 *)via & 0x1fff;
}

/* A RESP command at once: from its first byte (ps fresh, at
 * PD_RESP_START), "*N\r\n" and then its bulk strings; or, between two
 * of its bulk strings (PD_RESP_HDR; the walk calls it there once the
 * automaton needs no more of the command), the strings that follow; never
 * once a deny rule matched. Takes the strings that lie whole and
 * well-formed within max bytes (and before end), at most
 * PD_RESP_WHOLE_ARGS. Each string's contents go to the automaton in m the
 * way the byte-by-byte walk hands them over (each byte, and PD_SYM_END
 * after the last, while pd_proto_feeds asked before each byte says so;
 * the rest is passed over). ps is left as the byte-by-byte walk leaves
 * it: at the command's last byte (PD_P_DONE; ps->phase PD_RESP_DATA_LF)
 * when its last string was taken, else before the next string's '$'
 * (PD_RESP_HDR). Returns the bytes taken; 0 where none is, a deny rule
 * matched, or a string the automaton was given is malformed at its end:
 * ps and m may then have changed, and the caller, which works on copies,
 * walks the command piece by piece. -1 on inconsistent tables. via:
 * scratch for pd_resp_off (in the BPF program, memory that is not the
 * stack). */
PD_INLINE long pd_resp_whole(struct pd_parse *ps, struct pd_match *m,
			     const struct pd_service *svc, const struct pd_classmap *cm,
			     const __u8 *p, const __u8 *end, __u32 max, __u32 *via, void *ctx)
{
	const __u8 *q;
	__u32 pos, took, k, a, j;
	long v;

	if (max > PD_RESP_SKIP_REACH || m->deny)
		return 0;
	if (ps->phase == PD_RESP_START) {
		q = p + pd_resp_off(0, via);
		if (q + 1 > end || q[0] != '*')
			return 0;
		v = pd_resp_number_of(q + 1, end, PD_RESP_MAX_COUNT, &k, 4);
		if (v <= 0 || 1 + k > max)
			return 0;
		ps->phase = PD_RESP_HDR;
		pos = 1 + k;
	} else if (ps->phase == PD_RESP_HDR && ps->count) {
		v = ps->count;
		pos = 0;
	} else {
		return 0;
	}
	/* the strings still to come and the length of the current one
	 * are where pd_resp_byte keeps them (ps), and read from there:
	 * the verifier then knows no range of them, and a test of one
	 * against a pass's constant makes no path differ from another */
	PD_RESP_VOL(ps->count) = (__u32)v;
	/* and so is the reach, which the two ways in knew otherwise */
	max = pd_resp_off(max, via);
	/* where a string does not lie whole in reach, the strings before
	 * it are taken: up to took */
	took = pos;
	for (a = 0; a < PD_RESP_WHOLE_ARGS; a++) {
		if (!PD_RESP_VOL(ps->count))
			break;
		pos = pd_resp_off(pos, via);
		if (pos > max)
			return 0;
		q = p + pos;
		if (q + 1 > end || q[0] != '$')
			break;
		v = pd_resp_number_of(q + 1, end, PD_RESP_SKIP_REACH, &k, 4);
		if (v < 0)
			break;
		PD_RESP_VOL(ps->len) = (__u32)v;
		PD_RESP_VOL(ps->aux) = PD_RESP_DIGIT | (v ? 0 : PD_RESP_ZERO);
		pos = pd_resp_off(pos + 1 + k, via);
		if (pos + PD_RESP_VOL(ps->len) + 2 > max)
			break;
		/* the contents the automaton needs, byte by byte */
		for (j = 0; j < PD_RESP_WHOLE_BYTES + 1; j++) {
			if (!pd_proto_state_feeds(m, svc))
				break;  /* pd_proto_feeds, framing resp */
			if (a >= PD_RESP_WHOLE_FED || j >= PD_RESP_WHOLE_BYTES)
				return 0;
			if (j < PD_RESP_VOL(ps->len)) {
				q = p + pd_resp_off(pos + j, via);
				if (q + 1 > end)
					return 0;
				if (pd_proto_sym(m, svc, cm, q[0], ctx))
					return -1;
			}
			if (j + 1 >= PD_RESP_VOL(ps->len)) {
				if (pd_proto_sym(m, svc, cm, PD_SYM_END, ctx))
					return -1;
				if (m->deny)
					return 0;
				break;
			}
			if (m->deny)
				return 0;
		}
		pos = pd_resp_off(pos + PD_RESP_VOL(ps->len), via);
		q = p + pos;
		if (q + 2 > end || q[0] != '\r' || q[1] != '\n')
			return 0;
		if (ps->tok < 255)
			ps->tok++;
		pos += 2;
		took = pos;
		PD_RESP_VOL(ps->count) = PD_RESP_VOL(ps->count) - 1;
	}
	if (PD_RESP_VOL(ps->count))
		return took;
	ps->phase = PD_RESP_DATA_LF;
	ps->len = 0;
	return pos;
}

/* Whether a message that goes on past what was sent so far must be held
 * back: a rule that would deny or divert it may still match (1), or it
 * is an allow list's and no allow rule matched yet (1), or a contains
 * rule that denies may still match anywhere in it (2). 0: it may leave.
 * -1 on inconsistent tables. */
PD_INLINE int pd_proto_must_hold(const struct pd_match *m, const struct pd_service *svc,
				 const struct pd_parse *ps, void *ctx)
{
	const struct pd_state_out *o;
	int done = !pd_proto_live(m, svc, ps);

	if (m->deny)
		return 0;
	if ((svc->hold & PD_HOLD_ANCHORED) && m->state != svc->resume) {
		o = PD_OUT(ctx, m->state);
		if (!o)
			return -1;
		if (o->flags & PD_SF_ANCHORED)
			return 1;
	}
	if ((svc->hold & PD_HOLD_ALLOWLIST) && !m->allow && !m->redirect && !done)
		return 1;
	if (svc->framing == PD_FRAME_HTTP && pd_http_section(ps))
		return pd_http_holds(svc, ps) ? 2 : 0;
	if ((svc->hold & PD_HOLD_LINE) && !done)
		return 2;
	return 0;
}

/* A message walked at once (the tests' and `policyd test`'s walk; the
 * BPF program walks the same bytes window by window). From ps and m,
 * over at most n bytes at p: stops after the byte that ends the message
 * (*done 1), at a malformed byte (*done -1, the byte counted) or once a
 * deny rule matched. Returns the bytes consumed, or -1 on inconsistent
 * tables. */
PD_INLINE long pd_proto_walk(struct pd_parse *ps, struct pd_match *m,
			     const struct pd_service *svc, const struct pd_classmap *cm,
			     const __u8 *p, __u32 n, int *done, void *ctx)
{
	struct pd_syms o;
	__u32 i = 0, k;
	int r;

	*done = 0;
	while (i < n && !m->deny) {
		k = pd_proto_counted(ps, svc->framing);
		if (k && !pd_proto_feeds(m, svc, ps)) {
			if (k > n - i)
				k = n - i;
			pd_proto_pass(ps, svc->framing, k);
			m->seen += k;
			i += k;
			continue;
		}
		k = pd_proto_skip_unfed(m, svc, ps, p + i, p + n, n - i);
		if (k) {
			m->seen += k;
			i += k;
			continue;
		}
		k = pd_proto_headers(ps, pd_proto_hmode(m, svc, ps), p + i, p + n, n - i, &r);
		if (k) {
			m->seen += k;
			i += k;
			if (r) {
				*done = 1;
				break;
			}
			continue;
		}
		r = pd_proto_byte(ps, pd_proto_mode(svc), p[i++], &o);
		m->seen++;
		if (r == PD_P_BAD) {
			*done = -1;
			break;
		}
		if (pd_proto_feeds(m, svc, ps) && pd_proto_match(m, svc, cm, &o, ctx))
			return -1;
		if (r == PD_P_DONE) {
			*done = 1;
			break;
		}
	}
	return i;
}

#endif /* PD_PROTO_H */
