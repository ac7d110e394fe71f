// SPDX-License-Identifier: GPL-2.0-only
/*
 * framing = "resp": the parser the BPF program runs (bpf/resp.h through
 * bpf/proto.h) against a reference written here the way Redis 7.0 reads
 * its query buffer (whole buffers, the first '\r' or '\n' found the way
 * strchr finds it, lengths read as string2ll reads them, inline lines
 * split as sdssplitargs splits them), on random commands, random
 * quoting, random corruption and random send boundaries. What the parser
 * lets pass must be exactly what Redis runs; what it refuses must be
 * malformed for Redis or for the parser's stated strictness. Then the
 * verdicts of compiled policies with command and contains rules against
 * a naive matcher over the reference's arguments.
 *
 * PD_RESP_SEED=N picks another seed; PD_RESP_ROUNDS=N runs longer.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "tap.h"

#define PD_TEST_SEED 0x9e3779b97f4a7c15ull
#include "image_walk.h"
#include "proto.h"
#include "proto_check.h"

/* ---- the reference: how Redis 7.0 reads one command at pos ---- */

#define MAXARGS 16
#define MAXARG 64

enum { REF_CMD, REF_EMPTY, REF_ERROR, REF_WAIT };

struct cmd {
	int kind;
	size_t end;             /* REF_CMD, REF_EMPTY: where the next one begins */
	int argc;
	uint8_t argv[MAXARGS][MAXARG];
	size_t arglen[MAXARGS];
	bool lax;               /* REF_CMD, REF_EMPTY: read only thanks to Redis's
	                         * laxness (bytes it skips unread, an empty array) */
};

/* strchr over a NUL-terminated buffer of len bytes */
static long find(const uint8_t *b, size_t len, size_t from, uint8_t c)
{
	for (size_t i = from; i < len && b[i]; i++)
		if (b[i] == c)
			return (long)i;
	return -1;
}

/* string2ll: optional '-', then "0" alone or a digit 1-9 and more digits */
static bool to_ll(const uint8_t *p, size_t n, long long *v)
{
	size_t i = 0;
	bool neg = false;
	unsigned long long x = 0;

	if (!n || n > 20)
		return false;
	if (n == 1 && p[0] == '0') {
		*v = 0;
		return true;
	}
	if (p[0] == '-') {
		neg = true;
		if (++i == n)
			return false;
	}
	if (p[i] < '1' || p[i] > '9')
		return false;
	for (; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		x = x * 10 + (p[i] - '0');
		if (x > (1ull << 62))
			return false;
	}
	*v = neg ? -(long long)x : (long long)x;
	return true;
}

static void add_byte(struct cmd *c, uint8_t b)
{
	if (c->arglen[c->argc] < MAXARG)
		c->argv[c->argc][c->arglen[c->argc]] = b;
	c->arglen[c->argc]++;
}

static bool hexd(uint8_t c)
{
	return isxdigit(c);
}

static int hexv(uint8_t c)
{
	return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

/* sdssplitargs over line[0, n) (which holds no NUL: strchr found the
 * line's end before any) */
static bool split(const uint8_t *l, size_t n, struct cmd *c)
{
	size_t i = 0;

	c->argc = 0;
	for (;;) {
		while (i < n && (l[i] == ' ' || (l[i] >= 9 && l[i] <= 13)))
			i++;
		if (i >= n)
			return true;
		if (c->argc == MAXARGS)
			return true;
		c->arglen[c->argc] = 0;
		int inq = 0, insq = 0, done = 0;

		while (!done) {
			uint8_t ch = i < n ? l[i] : 0, nx = i + 1 < n ? l[i + 1] : 0;

			if (inq || insq) {
				if (inq && ch == '\\' && nx == 'x' && i + 3 < n + 0 && hexd(l[i + 2]) &&
				    hexd(l[i + 3])) {
					add_byte(c, (uint8_t)(hexv(l[i + 2]) * 16 + hexv(l[i + 3])));
					i += 3;
				} else if (inq && ch == '\\' && nx) {
					i++;
					ch = l[i];
					add_byte(c, ch == 'n' ? '\n' : ch == 'r' ? '\r' : ch == 't' ? '\t' :
						 ch == 'b' ? '\b' : ch == 'a' ? '\a' : ch);
				} else if (insq && ch == '\\' && nx == '\'') {
					i++;
					add_byte(c, '\'');
				} else if (ch == (inq ? '"' : '\'')) {
					/* a closing quote: a blank or the end must follow */
					if (nx && !(nx == ' ' || (nx >= 9 && nx <= 13)))
						return false;
					done = 1;
				} else if (!ch) {
					return false;
				} else {
					add_byte(c, ch);
				}
			} else {
				switch (ch) {
				case ' ': case '\n': case '\r': case '\t': case 0:
					done = 1;
					break;
				case '"':
					inq = 1;
					break;
				case '\'':
					insq = 1;
					break;
				default:
					add_byte(c, ch);
				}
			}
			if (i < n)
				i++;
		}
		c->argc++;
	}
}

/* One command of buf[0, len) from pos, as Redis reads it. */
static void ref_parse(const uint8_t *b, size_t len, size_t pos, struct cmd *c)
{
	long nl;
	long long ll, n;

	memset(c, 0, sizeof(*c));
	if (pos >= len || !b[pos]) {
		c->kind = REF_WAIT;
		return;
	}
	if (b[pos] != '*') {
		size_t e;

		nl = find(b, len, pos, '\n');
		if (nl < 0) {
			c->kind = REF_WAIT;
			return;
		}
		e = (size_t)nl;
		if (e > pos && b[e - 1] == '\r')
			e--;
		c->kind = split(b + pos, e - pos, c) ? REF_CMD : REF_ERROR;
		c->end = (size_t)nl + 1;
		return;
	}
	nl = find(b, len, pos, '\r');
	if (nl < 0 || (size_t)nl + 2 > len) {
		c->kind = REF_WAIT;
		return;
	}
	if (!to_ll(b + pos + 1, (size_t)nl - pos - 1, &n) || n > 0x7fffffff) {
		c->kind = REF_ERROR;
		return;
	}
	c->lax |= b[nl + 1] != '\n';
	pos = (size_t)nl + 2;
	if (n <= 0) {
		c->kind = REF_EMPTY;
		c->end = pos;
		c->lax = true;
		return;
	}
	for (long long a = 0; a < n; a++) {
		nl = find(b, len, pos, '\r');
		if (nl < 0 || (size_t)nl + 2 > len) {
			c->kind = REF_WAIT;
			return;
		}
		if (b[pos] != '$' || !to_ll(b + pos + 1, (size_t)nl - pos - 1, &ll) || ll < 0 ||
		    ll > (512ll << 20)) {
			c->kind = REF_ERROR;
			return;
		}
		c->lax |= b[nl + 1] != '\n';
		pos = (size_t)nl + 2;
		if (len - pos < (size_t)ll + 2) {
			c->kind = REF_WAIT;
			return;
		}
		if (c->argc < MAXARGS) {
			c->arglen[c->argc] = 0;
			for (long long k = 0; k < ll; k++)
				add_byte(c, b[pos + k]);
			c->argc++;
		}
		c->lax |= b[pos + ll] != '\r' || b[pos + ll + 1] != '\n';
		pos += (size_t)ll + 2;
	}
	c->kind = REF_CMD;
	c->end = pos;
}

/* ---- the parser under test, fed in pieces ---- */

struct got {
	int done;               /* 1 ended, -1 malformed, 0 not yet */
	size_t end;
	int argc;
	uint8_t argv[MAXARGS][MAXARG];
	size_t arglen[MAXARGS];
};

/* The parser from pos: byte by byte, but counted contents passed over in
 * random pieces as the BPF program passes them (their bytes collected
 * here from the buffer). */
static void our_parse(const uint8_t *b, size_t len, size_t pos, struct got *g)
{
	struct pd_parse ps = { 0 };
	struct pd_syms o;
	int r;

	memset(g, 0, sizeof(*g));
	while (pos < len) {
		__u32 k = pd_proto_counted(&ps, PD_FRAME_RESP);

		if (k && rnd(2)) {
			k = 1 + rnd(k);
			if (k > len - pos)
				k = (__u32)(len - pos);
			for (__u32 i = 0; i < k; i++)
				if (g->argc < MAXARGS && g->arglen[g->argc]++ < MAXARG)
					g->argv[g->argc][g->arglen[g->argc] - 1] = b[pos + i];
			pd_proto_pass(&ps, PD_FRAME_RESP, k);
			pos += k;
			if (ps.phase == PD_RESP_DATA_CR)
				g->argc++;      /* passed over to its end */
			continue;
		}
		if (rnd(2)) {
			/* headers at once, as the BPF program takes them */
			int hdone;

			k = pd_proto_headers(&ps, PD_FRAME_RESP, b + pos, b + len,
					     (__u32)(len - pos), &hdone);
			pos += k;
			if (hdone) {
				g->done = 1;
				g->end = pos;
				return;
			}
			if (k)
				continue;
		}
		r = pd_proto_byte(&ps, PD_FRAME_RESP, b[pos++], &o);
		for (__u32 i = 0; i < o.n; i++) {
			if (o.s[i] == PD_SYM_END) {
				g->argc++;
				continue;
			}
			if (g->argc < MAXARGS && g->arglen[g->argc]++ < MAXARG)
				g->argv[g->argc][g->arglen[g->argc] - 1] = (uint8_t)o.s[i];
		}
		if (r == PD_P_BAD) {
			g->done = -1;
			g->end = pos;
			return;
		}
		if (r == PD_P_DONE) {
			g->done = 1;
			g->end = pos;
			return;
		}
	}
}

static bool same_args(const struct cmd *c, const struct got *g)
{
	if (c->argc != g->argc)
		return false;
	for (int i = 0; i < c->argc && i < MAXARGS; i++) {
		size_t n = c->arglen[i] < MAXARG ? c->arglen[i] : MAXARG;

		if (c->arglen[i] != g->arglen[i] || memcmp(c->argv[i], g->argv[i], n))
			return false;
	}
	return true;
}

/* ---- random input ---- */

static const uint8_t alpha[] = { 'a', 'B', 'F', 'L', 'x', '4', ' ', '\t', '\v', '\r', '\n', '"',
				 '\'', '\\', '$', '*', 0, 0xff, '0', '1' };

static size_t put(uint8_t *b, size_t n, size_t cap, const void *s, size_t k)
{
	if (n + k <= cap)
		memcpy(b + n, s, k);
	return n + k;
}

/* A random argument: ordinary bytes mostly, now and then the bytes that
 * matter to the grammar. */
static size_t rand_arg(uint8_t *a, size_t max)
{
	static const char *const words[] = { "FLUSHALL", "flushall", "CONFIG", "set", "SET",
					     "GET", "Config", "x", "" };
	size_t n;

	if (rnd(3) == 0) {
		const char *w = words[rnd(9)];

		n = strlen(w);
		memcpy(a, w, n);
		return n;
	}
	n = rnd((uint32_t)max);
	for (size_t i = 0; i < n; i++)
		a[i] = rnd(3) ? (uint8_t)('a' + rnd(26)) : alpha[rnd(sizeof(alpha))];
	return n;
}

static size_t gen_resp(uint8_t *b, size_t n, size_t cap)
{
	uint8_t a[24];
	char h[32];
	int argc = 1 + (int)rnd(4);

	n = put(b, n, cap, h, (size_t)snprintf(h, sizeof(h), "*%d\r\n", argc));
	for (int i = 0; i < argc; i++) {
		size_t k = rand_arg(a, sizeof(a));

		n = put(b, n, cap, h, (size_t)snprintf(h, sizeof(h), "$%zu\r\n", k));
		n = put(b, n, cap, a, k);
		n = put(b, n, cap, "\r\n", 2);
	}
	return n;
}

/* An inline command: tokens plain, in double quotes (with escapes) or in
 * single quotes, between random blanks. */
static size_t gen_inline(uint8_t *b, size_t n, size_t cap)
{
	static const char blanks[] = { ' ', '\t', '\v', '\f', '\r' };
	uint8_t a[24];
	int ntok = (int)rnd(4);

	if (rnd(2))
		n = put(b, n, cap, &blanks[rnd(5)], 1);
	for (int t = 0; t < ntok; t++) {
		size_t k = rand_arg(a, 8), style = rnd(3);

		if (t)
			for (uint32_t j = 1 + rnd(2); j--;)
				n = put(b, n, cap, &blanks[rnd(5)], 1);
		if (style == 0) {
			for (size_t i = 0; i < k; i++)
				if (a[i] > ' ' && a[i] != '"' && a[i] != '\'' && a[i] < 0x7f &&
				    a[i] != '*')
					n = put(b, n, cap, &a[i], 1);
			if (!t && !k)
				n = put(b, n, cap, "P", 1);
		} else if (style == 1) {
			n = put(b, n, cap, "\"", 1);
			for (size_t i = 0; i < k; i++) {
				char e[8];

				if (a[i] == '"' || a[i] == '\\' || a[i] < ' ' || a[i] >= 0x7f || !rnd(6))
					n = put(b, n, cap, e, (size_t)snprintf(e, sizeof(e), "\\x%02x", a[i]));
				else if (!rnd(8))
					n = put(b, n, cap, "\\x4", 3);  /* not an escape */
				else
					n = put(b, n, cap, &a[i], 1);
			}
			n = put(b, n, cap, "\"", 1);
		} else {
			size_t f = 0;

			/* a NUL or a newline cannot be quoted this way */
			for (size_t i = 0; i < k; i++)
				if (a[i] && a[i] != '\n')
					a[f++] = a[i];
			/* nor a backslash before the closing quote */
			while (f && a[f - 1] == '\\')
				f--;
			k = f;
			n = put(b, n, cap, "'", 1);
			for (size_t i = 0; i < k; i++) {
				if (a[i] == '\'')
					n = put(b, n, cap, "\\'", 2);
				else
					n = put(b, n, cap, &a[i], 1);
			}
			n = put(b, n, cap, "'", 1);
		}
	}
	return rnd(2) ? put(b, n, cap, "\r\n", 2) : put(b, n, cap, "\n", 1);
}

static size_t gen_stream(uint8_t *b, size_t cap, bool corrupt)
{
	size_t n = 0;
	int cmds = 1 + (int)rnd(4);

	for (int i = 0; i < cmds; i++)
		n = rnd(3) ? gen_resp(b, n, cap) : gen_inline(b, n, cap);
	if (n > cap)
		n = cap;
	if (corrupt)
		for (uint32_t k = 1 + rnd(3); k-- && n;) {
			size_t at = rnd((uint32_t)n);

			switch (rnd(3)) {
			case 0: b[at] = alpha[rnd(sizeof(alpha))]; break;
			case 1: if (n < cap) { memmove(b + at + 1, b + at, n - at); b[at] = alpha[rnd(sizeof(alpha))]; n++; } break;
			case 2: memmove(b + at, b + at + 1, n - at - 1); n--; break;
			}
		}
	return n;
}

/* The command at pos, ours against Redis's reading. */
static void read_at(const uint8_t *b, size_t n, size_t pos, struct reading *r)
{
	struct cmd c;
	struct got g;

	ref_parse(b, n, pos, &c);
	our_parse(b, n, pos, &g);
	r->ours = g.done;
	r->our_end = g.end;
	r->plain = c.kind == REF_CMD && c.end == g.end && same_args(&c, &g) && !c.lax;
	r->refusable = !((c.kind == REF_CMD || c.kind == REF_EMPTY) && !c.lax);
	r->waits = c.kind == REF_WAIT;
	snprintf(r->why, sizeof(r->why), "kind %d, end %zu, %d args (ours %d)%s", c.kind, c.end,
		 c.argc, g.argc, c.lax ? ", laxly" : "");
}

static size_t gen_valid_or_not(uint8_t *b, size_t cap, bool valid)
{
	return gen_stream(b, cap > 4096 ? 4096 : cap, !valid);
}

/* Two parser states alike in what they will do: where a bulk string's
 * header is due, the number last read and its digit flags are dead (the
 * '$' clears them), and headers taken at once leave them as they were. */
static bool same_state(struct pd_parse a, struct pd_parse b)
{
	if (a.phase == PD_RESP_HDR) {
		a.len = b.len = 0;
		a.aux = b.aux = 0;
	}
	return !memcmp(&a, &b, sizeof(a));
}

/* Headers taken at once with the contents they announce (the walk's way
 * once the matcher needs no more of a command) leave the parser where
 * byte by byte would: at every position of random streams, from the
 * state the bytes before left, within a random reach. */
static void skips(long rounds)
{
	static uint8_t b[4096];
	long places = 0, taken = 0, ended = 0, bad = 0;

	for (long r = 0; r < rounds && bad < 3; r++) {
		size_t n = gen_stream(b, sizeof(b), rnd(4) == 0);
		struct pd_parse ps = { 0 };
		struct pd_syms o;

		for (size_t pos = 0; pos < n && bad < 3;) {
			struct pd_parse fast = ps, slow = ps;
			__u32 max = 1 + rnd(64), k;
			int hdone, rr = PD_P_MORE;

			if (max > n - pos)
				max = (__u32)(n - pos);
			/* the reach ends the readable bytes too, as a window's end
			 * does (headers past max would be given back by the caller) */
			k = pd_proto_headers(&fast, PD_FRAME_RESP | PD_PM_SKIP, b + pos,
					     b + pos + max, max, &hdone);
			if (k) {
				places++;
				taken += k;
				ended += hdone;
				for (__u32 i = 0; i < k && rr == PD_P_MORE && pos + i < n; i++)
					rr = pd_proto_byte(&slow, PD_FRAME_RESP, b[pos + i], &o);
				if (k > max || rr != (hdone ? PD_P_DONE : PD_P_MORE) ||
				    !same_state(fast, slow)) {
					printf("# at %zu: %u bytes taken at once (max %u, done %d) leave "
					       "the parser otherwise than byte by byte\n", pos, k, max,
					       hdone);
					show("stream", b, n);
					bad++;
				}
			}
			rr = pd_proto_byte(&ps, PD_FRAME_RESP, b[pos++], &o);
			if (rr != PD_P_MORE)
				memset(&ps, 0, sizeof(ps));     /* the next command */
		}
	}
	ok(!bad, "headers and contents taken at once leave the parser as byte by byte: %ld "
	   "places, %ld bytes", places, taken);
	ok(places > rounds && ended > rounds / 4, "... commands ended by them seen (%ld)", ended);
}

/* One byte of the byte-by-byte walk, parser and automaton. */
static int walk_byte(struct pd_parse *ps, struct pd_match *m, const struct pd_service *svc,
		     const struct pd_classmap *cm, uint8_t b)
{
	struct pd_syms o;
	int r = pd_proto_byte(ps, PD_FRAME_RESP, b, &o);

	if (r != PD_P_BAD && pd_proto_feeds(m, svc, ps))
		pd_proto_match(m, svc, cm, &o, NULL);
	return r;
}

/* pd_resp_whole over s from a fresh command (or from *ps): bytes taken,
 * and whether it ended the command. */
static long whole_of(const char *s, struct pd_parse *ps, struct pd_match *m,
		     const struct pd_service *svc, const struct pd_classmap *cm, int *done)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n = strlen(s);
	__u32 via;
	long k = pd_resp_whole(ps, m, svc, cm, p, p + n, (__u32)n, &via, NULL);

	*done = ps->phase == PD_RESP_DATA_LF;
	return k;
}

/* Fixed cases: a command followed by what looks like a further string is
 * taken to its own end; one of 20 strings is taken in two calls. */
static void whole_fixed(const struct naive *nv, const struct pd_service *svc,
			const struct pd_classmap *cm)
{
	char big[256] = "*20\r\n";
	struct pd_parse ps = { 0 };
	struct pd_match m;
	long k1, k2;
	int d1, d2;

	memset(&m, 0, sizeof(m));
	pd_begin(&m, svc, NULL);
	k1 = whole_of("*1\r\n$1\r\nx\r\n$1\r\ny\r\n", &ps, &m, svc, cm, &d1);
	ok(k1 == 11 && d1 && ps.count == 0, "a command taken whole ends at its last string, "
	   "not at a '$' after it (%ld bytes, ended %d)", k1, d1);
	if (nv->contains)
		return;         /* every string goes to the automaton: not taken */
	for (int i = 0; i < 20; i++)
		strcat(big, "$1\r\nx\r\n");
	memset(&ps, 0, sizeof(ps));
	memset(&m, 0, sizeof(m));
	pd_begin(&m, svc, NULL);
	k1 = whole_of(big, &ps, &m, svc, cm, &d1);
	k2 = k1 > 0 ? whole_of(big + k1, &ps, &m, svc, cm, &d2) : 0;
	ok(k1 == 5 + 16 * 7 && !d1 && k2 == 4 * 7 && d2,
	   "20 strings are taken 16 and then 4 (%ld, then %ld bytes)", k1, k2);
}

/* A command taken whole (pd_resp_whole: the BPF walk's way where a
 * command, or the rest of one, lies in a window) leaves the parser and
 * the automaton where the byte-by-byte walk does over the same bytes,
 * through the rules of nv: from every command's start in random streams,
 * well-formed or not, and from between two of a command's strings once
 * the automaton needs no more of it, within a random reach. */
static void wholes(const struct naive *nv, long rounds)
{
	static uint8_t b[4096];
	const struct pd_service *svc;
	const struct pd_classmap *cm;
	struct pd_policy p;
	struct pd_image img;
	long starts = 0, taken = 0, ended = 0, resumed = 0, matched = 0, denied = 0, bad = 0;

	if (!compile_naive(nv, &p, &img))
		return;
	svc = &img.services[0].svc;
	cm = &img.services[0].classes;
	whole_fixed(nv, svc, cm);
	for (long r = 0; r < rounds && bad < 3; r++) {
		size_t n = gen_stream(b, sizeof(b), rnd(4) == 0), pos, i;
		struct pd_parse ps = { 0 };
		struct pd_match m;

		memset(&m, 0, sizeof(m));
		pd_begin(&m, svc, NULL);
		for (pos = 0; pos < n && bad < 3; pos++) {
			int start = ps.phase == PD_RESP_START, rr = PD_P_MORE;

			if (!m.deny && (start || (ps.phase == PD_RESP_HDR &&
						  !pd_proto_feeds(&m, svc, &ps)))) {
				struct pd_parse wp = ps, bp = ps;
				struct pd_match wm = m, bm = m;
				__u32 max = 1 + rnd(rnd(2) ? 64 : 600);
				__u32 via;
				long k;
				int done;

				if (max > n - pos)
					max = (__u32)(n - pos);
				/* the bytes go on past the reach, as an sk_msg's
				 * may past its window */
				k = pd_resp_whole(&wp, &wm, svc, cm, b + pos, b + n, max, &via, NULL);
				done = wp.phase == PD_RESP_DATA_LF;
				for (i = 0; k > 0 && i < (size_t)k && rr == PD_P_MORE; i++)
					rr = walk_byte(&bp, &bm, svc, cm, b[pos + i]);
				starts += start;
				if (k > 0) {
					taken += start;
					ended += start && done;
					resumed += !start;
					matched += done && (wm.allow || wm.audit);
				}
				if (k < 0 || (k > 0 && (k > max || i != (size_t)k || bm.deny ||
							rr != (done ? PD_P_DONE : PD_P_MORE) ||
							(!done && wp.phase != PD_RESP_HDR) ||
							!same_state(wp, bp) || memcmp(&wm, &bm, sizeof(m))))) {
					printf("# at %zu (%s): taken whole (%ld bytes, reach %u, "
					       "ended %d) otherwise than byte by byte (%zu bytes, "
					       "outcome %d; state %u/%u, deny %u/%u, allow %u/%u, "
					       "audit %u/%u)\n", pos, start ? "start" : "between strings",
					       k, max, done, i, rr, wm.state, bm.state, wm.deny, bm.deny,
					       wm.allow, bm.allow, wm.audit, bm.audit);
					show("stream", b, n);
					bad++;
				}
			}
			if ((ps.phase != PD_RESP_START && ps.phase != PD_RESP_HDR) || m.deny) {
				/* elsewhere in a command nothing is taken, nor
				 * once a deny rule matched (the walk goes on to
				 * the command's end piece by piece) */
				struct pd_parse wp = ps;
				struct pd_match wm = m;
				__u32 via;

				if (pd_resp_whole(&wp, &wm, svc, cm, b + pos, b + n, (__u32)(n - pos),
						  &via, NULL)) {
					printf("# at %zu: taken whole in phase %u\n", pos, ps.phase);
					bad++;
				}
			}
			rr = walk_byte(&ps, &m, svc, cm, b[pos]);
			if (rr != PD_P_MORE) {
				denied += m.deny != 0;
				memset(&ps, 0, sizeof(ps));
				memset(&m, 0, sizeof(m));
				pd_begin(&m, svc, NULL);
			}
		}
	}
	ok(!bad, "commands taken whole leave parser and automaton as byte by byte (%s): %ld "
	   "of %ld commands from their start (%ld of them to their end), %ld from between "
	   "strings", nv->contains ? "command and contains rules" : "command rules", taken,
	   starts, ended, resumed);
	/* with a contains rule every byte goes to the automaton: only short
	 * commands are taken whole; with command rules alone, most are, and
	 * what follows the name of a long one is taken from between strings */
	ok(ended * (nv->contains ? 20 : 5) > starts && matched >= 10 && denied >= 10 &&
	   (nv->contains || resumed * 20 > starts),
	   "... enough taken, %ld of them matching an audit or allow rule; %ld denied", matched,
	   denied);
	pd_image_free(&img);
	pd_policy_free(&p);
}

static void differential(long rounds)
{
	differential_of("Redis", rounds, gen_valid_or_not, read_at);
	skips(rounds / 4);
	quick_of(PD_FRAME_RESP, rounds / 4, gen_valid_or_not);
}

/* Fixed cases, each with what the parser must make of it. */
static void no_inline(void);

static void fixed(void)
{
	static const struct {
		const char *in;
		size_t len;
		int done;
		int argc;
		const char *arg0;
	} t[] = {
		{ "*1\r\n$8\r\nFLUSHALL\r\n", 18, 1, 1, "FLUSHALL" },
		{ "*1\r\n$8\rXFLUSHALL\r\n", 18, -1, 0, NULL },
		{ "*1\r\n$8\r\nFLUSHALLXY", 18, -1, 0, NULL },
		{ "*01\r\n$8\r\nFLUSHALL\r\n", 19, -1, 0, NULL },
		{ "*0\r\n", 4, -1, 0, NULL },
		{ "*-1\r\n", 5, -1, 0, NULL },
		{ "*1\r\n$-1\r\n", 9, -1, 0, NULL },
		{ "*1\r\n$0\r\n\r\n", 10, 1, 1, "" },
		{ "*1\r\n$536870913\r\n", 16, -1, 0, NULL },
		{ " FLUSHALL\r\n", 11, 1, 1, "FLUSHALL" },
		{ "\tFLUSHALL\n", 10, 1, 1, "FLUSHALL" },
		{ "\vFLUSHALL\r\n", 11, 1, 1, "FLUSHALL" },
		{ "\"FLUSHALL\"\r\n", 12, 1, 1, "FLUSHALL" },
		{ "\"\\x46LUSHALL\"\r\n", 15, 1, 1, "FLUSHALL" },
		{ "'FLUSHALL'\r\n", 12, 1, 1, "FLUSHALL" },
		{ "FLU\"SHALL\"\r\n", 12, 1, 1, "FLUSHALL" },
		{ "FLU\"SH\"ALL\r\n", 12, -1, 0, NULL },
		{ "\"FLUSHALL\r\n", 11, -1, 0, NULL },
		{ "FLUSHALL\0\r\n", 11, -1, 0, NULL },
		{ "FLUSH\vALL\r\n", 11, 1, 1, "FLUSH\vALL" },
		{ "\"\\x4g\"\r\n", 8, 1, 1, "x4g" },
		{ "'a\\'b'\r\n", 8, 1, 1, "a'b" },
		{ "'a\\b'\r\n", 7, 1, 1, "a\\b" },
		{ "\r\n", 2, 1, 0, NULL },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct got g;
		char name[96];

		our_parse((const uint8_t *)t[i].in, t[i].len, 0, &g);
		snprintf(name, sizeof(name), "case %zu: %s", i, t[i].done > 0 ? "passes" : "refused");
		if (t[i].done < 0) {
			ok(g.done == -1, "%s", name);
			continue;
		}
		ok(g.done == 1 && g.end == t[i].len && g.argc == t[i].argc &&
		   (!t[i].arg0 || (g.arglen[0] == strlen(t[i].arg0) &&
				   !memcmp(g.argv[0], t[i].arg0, g.arglen[0]))), "%s", name);
	}
	no_inline();
}

/* inline = false: a command whose first byte is not '*' is malformed at
 * that byte, in one piece or in many; RESP arrays pass as before */
static void no_inline(void)
{
	static const char *const inl[] = { "PING\r\n", " FLUSHALL\r\n", "\"GET\" k\r\n", "\r\n" };
	static const char text[] = "version = 1;\nservices = ( { name = \"r\"; ports = [ 1 ]; "
		"framing = \"resp\"; inline = false;\n rules = ( { id = 1; action = \"deny\"; "
		"command = \"FLUSHALL\"; } ); } );\n";
	static const uint8_t arr[] = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$8\r\nflushall\r\n";
	struct pd_policy p;
	struct pd_image img;
	struct pd_match m;
	int bad = 0;

	if (!compile_text(text, "inline.conf", &p, &img))
		return;
	ok(img.services[0].svc.pflags & PD_PF_NO_INLINE, "inline = false sets PD_PF_NO_INLINE");
	for (size_t i = 0; i < sizeof(inl) / sizeof(inl[0]); i++)
		for (uint32_t piece = 1; piece <= 4; piece++)
			bad += walk_pieces((const uint8_t *)inl[i], strlen(inl[i]), piece, &m) != -1 ||
			       m.seen != 1;
	ok(!bad, "inline = false: inline commands are malformed at their first byte");
	ok(walk_pieces(arr, 20, 3, &m) == 1 && !m.deny, "inline = false: a RESP GET passes");
	ok(walk_pieces(arr + 20, 18, 5, &m) >= 0 && m.deny != 0,
	   "inline = false: a RESP FLUSHALL is denied by its rule");
	pd_image_free(&img);
	pd_policy_free(&p);
}

/* ---- verdicts through compiled policies ---- */

static const struct naive rules = {
	.framing = "resp", .deny1 = "FLUSHALL", .deny2 = "CONFIG", .deny2arg = "SET",
	.audit = "config", .allow = "GET", .contains = "xx4", .fold = true,
};

static const uint8_t *token(const void *cmd, int i, size_t *len)
{
	const struct cmd *c = cmd;

	*len = c->arglen[i] < MAXARG ? c->arglen[i] : MAXARG;
	return c->argv[i];
}

/* the same without a contains rule: past a name that no rule names the
 * walk passes the rest of the command over with its headers */
static const struct naive names_only = {
	.framing = "resp", .deny1 = "FLUSHALL", .deny2 = "CONFIG", .deny2arg = "SET",
	.audit = "config", .allow = "GET", .contains = NULL, .fold = true,
};

/* What the naive matcher under nv wants of the command at pos. */
static struct want want_of(const struct naive *nv, const uint8_t *buf, size_t n, size_t pos)
{
	struct want w = { 0 };
	struct cmd c;

	ref_parse(buf, n, pos, &c);
	if (c.kind != REF_CMD)
		return w;
	w.end = c.end;
	naive_want(nv, &c, c.argc < MAXARGS ? c.argc : MAXARGS, token, NULL, 0, &w);
	return w;
}

static struct want resp_want(const uint8_t *buf, size_t n, size_t pos)
{
	return want_of(&rules, buf, n, pos);
}

static struct want resp_want_names(const uint8_t *buf, size_t n, size_t pos)
{
	return want_of(&names_only, buf, n, pos);
}

static void verdicts(long rounds)
{
	verdicts_of(&rules, rounds, gen_valid_or_not, resp_want);
	verdicts_of(&names_only, rounds, gen_valid_or_not, resp_want_names);
	wholes(&rules, rounds / 4);
	wholes(&names_only, rounds / 4);
}

int main(void)
{
	return run_parser_tests("PD_RESP", fixed, differential, verdicts);
}
