// SPDX-License-Identifier: GPL-2.0-only
/*
 * framing = "memcache": the parser the BPF program runs (bpf/memcache.h
 * through bpf/proto.h) against a reference written here the way
 * memcached 1.6 reads its buffer (the line up to memchr's '\n', one '\r'
 * before it dropped, cut at its first NUL as strlen cuts it, split at
 * spaces; a storage command's numbers read as strtoul/strtol read them,
 * and its data block taken by length, or the line refused with no data
 * block when they are not numbers), on random commands, separators,
 * numbers and send boundaries. What the parser lets pass must be exactly
 * what memcached runs, and a well-formed stream must pass whole. Then the
 * verdicts of a compiled policy against a naive matcher.
 *
 * PD_MC_SEED=N picks another seed; PD_MC_ROUNDS=N runs longer.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "tap.h"

#define PD_TEST_SEED 0x2545f4914f6cdd1dull
#include "image_walk.h"
#include "proto.h"
#include "proto_check.h"

/* ---- the reference: how memcached 1.6 reads one command at pos ---- */

#define MAXARGS 24
#define MAXARG 300

enum { REF_CMD, REF_ERRLINE, REF_WAIT };

struct cmd {
	int kind;
	size_t end;             /* where the next command begins */
	int argc;
	uint8_t argv[MAXARGS][MAXARG];
	size_t arglen[MAXARGS];
	size_t data, datalen;   /* REF_CMD of a storage command: its data block */
	bool odd;               /* read, but a data block not ended by "\r\n" */
};

/* safe_strtoul / safe_strtol / safe_strtoull: a number, then the token's
 * end or a blank */
static bool num(const uint8_t *t, size_t n, bool sign, long long lo, long long hi, long long *v)
{
	char s[MAXARG + 1], *e;

	memcpy(s, t, n);
	s[n] = 0;
	errno = 0;
	if (sign) {
		long long x = strtoll(s, &e, 10);

		if (errno || e == s || (*e && !isspace((unsigned char)*e)) || x < lo || x > hi)
			return false;
		*v = x;
		return true;
	}
	unsigned long long x = strtoull(s, &e, 10);

	if (errno || e == s || (*e && !isspace((unsigned char)*e)) || memchr(s, '-', (size_t)(e - s)))
		return false;
	*v = (long long)(x > (unsigned long long)hi ? (unsigned long long)hi : x);
	return true;
}

static void ref_parse(const uint8_t *b, size_t len, size_t pos, struct cmd *c)
{
	const uint8_t *l = b + pos, *nl = memchr(l, '\n', len - pos);
	size_t n, eff, next, s = 0;
	long long v;
	int data = 0;

	memset(c, 0, sizeof(*c));
	if (!nl) {
		c->kind = REF_WAIT;
		return;
	}
	n = (size_t)(nl - l);
	next = pos + n + 1;
	if (n > 1 && l[n - 1] == '\r')
		n--;
	for (eff = 0; eff < n && l[eff]; eff++)
		;
	for (size_t i = 0; i <= eff; i++) {
		if (i == eff || l[i] == ' ') {
			if (i > s && c->argc < MAXARGS) {
				c->arglen[c->argc] = i - s < MAXARG ? i - s : MAXARG;
				memcpy(c->argv[c->argc], l + s, c->arglen[c->argc]);
				c->argc++;
			}
			s = i + 1;
		}
	}
	c->kind = REF_CMD;
	c->end = next;
	if (!c->argc)
		return;
#define IS(w) (c->arglen[0] == strlen(w) && !memcmp(c->argv[0], w, strlen(w)))
	if (IS("set") || IS("add") || IS("replace") || IS("append") || IS("prepend"))
		data = (c->argc == 5 || c->argc == 6) ? 1 : -1;
	else if (IS("cas"))
		data = (c->argc == 6 || c->argc == 7) ? 2 : -1;
	else if (IS("ms"))
		data = c->argc >= 3 ? 3 : -1;
	if (!data)
		return;
	if (data < 0 || c->arglen[1] > 250) {
		c->kind = REF_ERRLINE;
		return;
	}
	if (data == 3) {
		if (!num(c->argv[2], c->arglen[2], true, 0, 0x7ffffffd, &v)) {
			c->kind = REF_ERRLINE;
			return;
		}
	} else {
		long long f, e, u;

		if (!num(c->argv[2], c->arglen[2], false, 0, 0xffffffff, &f) ||
		    !num(c->argv[3], c->arglen[3], true, -0x80000000ll, 0x7fffffff, &e) ||
		    !num(c->argv[4], c->arglen[4], true, 0, 0x7ffffffd, &v) ||
		    (data == 2 && !num(c->argv[5], c->arglen[5], false, 0, 0x7fffffffffffffffll, &u))) {
			c->kind = REF_ERRLINE;
			return;
		}
	}
	if (next + (size_t)v + 2 > len) {
		c->kind = REF_WAIT;
		return;
	}
	c->data = next;
	c->datalen = (size_t)v;
	c->end = next + (size_t)v + 2;
	c->odd = b[next + v] != '\r' || b[next + v + 1] != '\n';
#undef IS
}

/* ---- ours, from pos, counted bytes passed over in random pieces ---- */

struct got {
	int done;               /* 1 ended, -1 refused, 0 more needed */
	size_t end;
	int argc;               /* tokens of the line */
	uint8_t argv[MAXARGS][MAXARG];
	size_t arglen[MAXARGS];
};

static void our_parse(const uint8_t *b, size_t len, size_t pos, struct got *g)
{
	struct pd_parse ps = { 0 };
	struct pd_syms o;
	bool data = false;
	int r;

	memset(g, 0, sizeof(*g));
	while (pos < len) {
		__u32 k = pd_proto_counted(&ps, PD_FRAME_MEMCACHE);

		if (k && rnd(2)) {
			k = 1 + rnd(k);
			if (k > len - pos)
				k = (__u32)(len - pos);
			pd_proto_pass(&ps, PD_FRAME_MEMCACHE, k);
			pos += k;
			continue;
		}
		if (ps.phase == PD_MC_DATA)
			data = true;
		r = pd_proto_byte(&ps, PD_FRAME_MEMCACHE, b[pos++], &o);
		for (__u32 i = 0; i < o.n && !data; i++) {
			if (o.s[i] == PD_SYM_END) {
				g->argc++;
				continue;
			}
			if (g->argc < MAXARGS && g->arglen[g->argc]++ < MAXARG)
				g->argv[g->argc][g->arglen[g->argc] - 1] = (uint8_t)o.s[i];
		}
		if (ps.phase == PD_MC_DATA || ps.phase == PD_MC_DATA_CR)
			data = true;
		if (r == PD_P_BAD || r == PD_P_DONE) {
			g->done = r == PD_P_DONE ? 1 : -1;
			g->end = pos;
			return;
		}
	}
}

static bool same_args(const struct cmd *c, const struct got *g)
{
	if (c->argc != g->argc)
		return false;
	for (int i = 0; i < c->argc && i < MAXARGS; i++)
		if (c->arglen[i] != g->arglen[i] || memcmp(c->argv[i], g->argv[i], c->arglen[i]))
			return false;
	return true;
}

/* ---- random input ---- */

static size_t put(uint8_t *b, size_t n, size_t cap, const void *s, size_t k)
{
	if (n + k <= cap)
		memcpy(b + n, s, k);
	return n + k;
}

#define PUTS(s) do { const char *s_ = (s); n = put(b, n, cap, s_, strlen(s_)); } while (0)

static const char *const names[] = { "get", "gets", "set", "add", "replace", "append", "prepend",
				     "cas", "ms", "mg", "md", "mn", "delete", "incr", "touch",
				     "flush_all", "stats", "shutdown", "watch", "verbosity", "FLUSH_ALL",
				     "sett", "se", "casx", "m", "msx", "replac" };

/* a separator: well-formed ones are spaces */
static void sep(uint8_t *b, size_t *np, size_t cap, bool valid)
{
	size_t n = *np;

	if (!valid && !rnd(6)) {
		static const char *const odd[] = { "\t", "\r", " \t", "\v", "\0", " \r " };
		const char *s = odd[rnd(6)];

		n = put(b, n, cap, s, s[0] ? strlen(s) : 1);
	} else {
		for (uint32_t k = 1 + (rnd(4) ? 0 : rnd(3)); k--;)
			PUTS(" ");
	}
	*np = n;
}

static void number(uint8_t *b, size_t *np, size_t cap, bool valid, uint32_t val)
{
	size_t n = *np;
	char t[32];

	if (!valid && !rnd(5)) {
		static const char *const odd[] = { "+5", "abc", "-1", "5x", "", "0000000000012",
						   "99999999999999999999", "-", "3\t" };
		PUTS(odd[rnd(9)]);
	} else {
		snprintf(t, sizeof(t), "%u", val);
		PUTS(t);
	}
	*np = n;
}

static size_t gen_cmd(uint8_t *b, size_t n, size_t cap, bool valid)
{
	const char *name = names[rnd(valid ? 20 : sizeof(names) / sizeof(names[0]))];
	bool store = !strcmp(name, "set") || !strcmp(name, "add") || !strcmp(name, "replace") ||
		     !strcmp(name, "append") || !strcmp(name, "prepend");
	bool cas = !strcmp(name, "cas"), ms = !strcmp(name, "ms");
	uint32_t dlen = rnd(4) ? rnd(12) : rnd(300);
	char key[300];

	if (!rnd(5))
		sep(b, &n, cap, valid);         /* leading blanks */
	PUTS(name);
	if (store || cas || ms) {
		size_t kl = rnd(8) ? 1 + rnd(10) : (valid ? 250 : 240 + rnd(20));

		for (size_t i = 0; i < kl; i++)
			key[i] = "kKx4_:"[rnd(6)];
		key[kl] = 0;
		sep(b, &n, cap, valid);
		PUTS(key);
		sep(b, &n, cap, valid);
		if (ms) {
			number(b, &n, cap, valid, dlen);
			if (rnd(2)) {
				sep(b, &n, cap, valid);
				PUTS(rnd(2) ? "T0" : "F5 q");
			}
		} else {
			number(b, &n, cap, valid, rnd(2) ? rnd(100) : 4000000000u);
			sep(b, &n, cap, valid);
			number(b, &n, cap, valid, rnd(1000));
			sep(b, &n, cap, valid);
			number(b, &n, cap, valid, dlen);
			if (cas) {
				sep(b, &n, cap, valid);
				number(b, &n, cap, valid, rnd(100000));
			}
			if (!rnd(4) || (!valid && !rnd(6))) {
				sep(b, &n, cap, valid);
				PUTS(valid || rnd(4) ? "noreply" : "x y");
			}
		}
	} else {
		for (uint32_t a = rnd(4); a--;) {
			static const char *const args[] = { "cachedump", "k", "1", "0", "flush_all",
							    "noreply", "xx4y", "detail" };
			sep(b, &n, cap, valid);
			PUTS(args[rnd(8)]);
		}
	}
	if (!valid && !rnd(8))
		n = put(b, n, cap, "\0junk", 5);
	PUTS(rnd(3) ? "\r\n" : valid || rnd(2) ? "\n" : "\r\r\n");
	if (store || cas || ms) {
		uint32_t dl = valid || rnd(4) ? dlen : dlen + rnd(3) - 1;

		for (uint32_t i = 0; i < dl && n < cap; i++)
			b[n++] = "ab\r\n x4flush_all"[rnd(16)];
		PUTS(valid || rnd(4) ? "\r\n" : "\n");
	}
	return n;
}

static size_t gen_stream(uint8_t *b, size_t cap, bool valid)
{
	size_t n = 0;

	for (int i = 1 + (int)rnd(5); i--;)
		n = gen_cmd(b, n, cap, valid);
	if (n > cap)
		n = cap;
	if (!valid && rnd(2))
		for (uint32_t k = 1 + rnd(3); k-- && n;)
			b[rnd((uint32_t)n)] = " \r\n\0x5"[rnd(6)];
	return n;
}

/* The command at pos, ours against memcached's reading. */
static void read_at(const uint8_t *b, size_t n, size_t pos, struct reading *r)
{
	struct cmd c;
	struct got g;

	ref_parse(b, n, pos, &c);
	our_parse(b, n, pos, &g);
	r->ours = g.done;
	r->our_end = g.end;
	r->plain = c.kind == REF_CMD && c.end == g.end && same_args(&c, &g) && !c.odd;
	r->refusable = true;    /* stricter than memcached by design: odd numbers, keys */
	r->waits = c.kind == REF_WAIT;
	snprintf(r->why, sizeof(r->why), "kind %d, end %zu, %d tokens (ours %d)%s", c.kind, c.end,
		 c.argc, g.argc, c.odd ? ", a bad data chunk" : "");
}

static void skips(long rounds);

static void differential(long rounds)
{
	differential_of("memcached", rounds, gen_stream, read_at);
	skips(rounds / 4);
}

/* ---- the forms of the issue, and the edges ---- */

static void fixed(void)
{
	static const struct {
		const char *in;
		size_t len;
		int done, argc;
		const char *arg0, *arg1;
	} t[] = {
		{ "flush_all\0\r\n", 12, 1, 1, "flush_all", NULL },
		{ "shutdown\0\n", 10, 1, 1, "shutdown", NULL },
		{ "watch\0 junk\r\n", 13, 1, 1, "watch", NULL },
		{ "stats  cachedump 1 0\r\n", 22, 1, 4, "stats", "cachedump" },
		{ "   stats cachedump\n", 19, 1, 2, "stats", "cachedump" },
		{ "flush_all\t\r\n", 12, 1, 1, "flush_all\t", NULL },
		{ "flush_all\r\r\n", 12, 1, 1, "flush_all\r", NULL },
		{ "flush_all\r\0\r\n", 13, 1, 1, "flush_all\r", NULL },
		{ "flush_all \r\n", 12, 1, 1, "flush_all", NULL },
		{ "FLUSH_ALL\r\n", 11, 1, 1, "FLUSH_ALL", NULL },
		{ "\r\n", 2, 1, 1, "\r", NULL },
		{ " \r\n", 3, 1, 0, NULL, NULL },
		{ "set k 0 0 11\r\nflush_all\r\n\r\n", 27, 1, 5, "set", "k" },
		{ "set k 0 0 abc\r\nflush_all\r\n", 15, -1, 0, NULL, NULL },
		{ "set k 0 0 9 noreply x\r\n", 23, -1, 0, NULL, NULL },
		{ "set k 0 0 +9\r\n", 14, -1, 0, NULL, NULL },
		{ "set k 0 0 -1\r\n", 14, -1, 0, NULL, NULL },
		{ "set k 0 0 9\r\nflush_allXY\r\n", 24, -1, 0, NULL, NULL },
		{ "set k 0 -5 1\r\nx\r\n", 17, 1, 5, "set", "k" },
		{ "set k 0 0 0\r\n\r\n", 15, 1, 5, "set", "k" },
		{ "cas k 0 0 1 77 noreply\r\nx\r\n", 27, 1, 7, "cas", "k" },
		{ "cas k 0 0 1\r\nx\r\n", 16, -1, 0, NULL, NULL },
		{ "ms k 2 T0\r\nhi\r\n", 15, 1, 4, "ms", "k" },
		{ "ms k\r\n", 6, -1, 0, NULL, NULL },
		{ "ms k x\r\n", 8, -1, 0, NULL, NULL },
		{ "\x80\x01\x00\x00", 1, -1, 0, NULL, NULL },
		{ "get \x80\r\n", 7, 1, 2, "get", "\x80" },
		{ "replacex k 0 0 2\r\n", 18, 1, 5, "replacex", "k" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct got g;

		our_parse((const uint8_t *)t[i].in, t[i].len, 0, &g);
		if (t[i].done < 0) {
			ok(g.done == -1, "case %zu: refused", i);
			continue;
		}
		ok(g.done == 1 && g.end == t[i].len && g.argc == t[i].argc &&
		   (!t[i].arg0 || (g.arglen[0] == strlen(t[i].arg0) &&
				   !memcmp(g.argv[0], t[i].arg0, g.arglen[0]))) &&
		   (!t[i].arg1 || (g.arglen[1] == strlen(t[i].arg1) &&
				   !memcmp(g.argv[1], t[i].arg1, g.arglen[1]))), "case %zu: passes", i);
	}
}

/* ---- verdicts through a compiled policy ---- */

static const struct naive rules = {
	.framing = "memcache", .deny1 = "flush_all", .deny2 = "stats", .deny2arg = "cachedump",
	.audit = "stats", .allow = "get", .contains = "x4f", .fold = false,
};

static const uint8_t *token(const void *cmd, int i, size_t *len)
{
	const struct cmd *c = cmd;

	*len = c->arglen[i];
	return c->argv[i];
}

/* the same without a contains rule: past a name that no rule names the
 * walk takes the rest of the line at once (pd_mc_skip) */
static const struct naive names_only = {
	.framing = "memcache", .deny1 = "flush_all", .deny2 = "stats", .deny2arg = "cachedump",
	.audit = "stats", .allow = "get", .contains = NULL, .fold = false,
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
	naive_want(nv, &c, c.argc, token, buf + c.data, c.datalen, &w);
	return w;
}

static struct want mc_want(const uint8_t *buf, size_t n, size_t pos)
{
	return want_of(&rules, buf, n, pos);
}

static struct want mc_want_names(const uint8_t *buf, size_t n, size_t pos)
{
	return want_of(&names_only, buf, n, pos);
}

static void verdicts(long rounds)
{
	verdicts_of(&rules, rounds, gen_stream, mc_want);
	verdicts_of(&names_only, rounds, gen_stream, mc_want_names);
}

/* ---- bytes taken at once (pd_mc_skip) leave the parser as byte by byte ---- */

static void skips(long rounds)
{
	static uint8_t b[65536];
	long places = 0, taken = 0, bad = 0;

	for (long r = 0; r < rounds && bad < 3; r++) {
		size_t n = gen_stream(b, sizeof(b), rnd(2));
		struct pd_parse ps = { 0 };
		struct pd_syms o;

		for (size_t pos = 0; pos < n && bad < 3;) {
			struct pd_parse fast = ps, slow = ps;
			__u32 max = 1 + rnd(80), k;
			int rr = PD_P_MORE;

			k = pd_proto_skip(&fast, PD_FRAME_MEMCACHE, b + pos, b + n, max);
			if (k) {
				places++;
				taken += k;
				for (__u32 i = 0; i < k && rr == PD_P_MORE && pos + i < n; i++)
					rr = pd_proto_byte(&slow, PD_FRAME_MEMCACHE, b[pos + i], &o);
				if (k > max || k > PD_MC_SKIP_MAX || pos + k > n || rr != PD_P_MORE ||
				    memcmp(&fast, &slow, sizeof(fast))) {
					printf("# at %zu: %u bytes taken at once (max %u) leave the parser "
					       "otherwise than byte by byte\n", pos, k, max);
					show("stream", b, n);
					bad++;
				}
			}
			rr = pd_proto_byte(&ps, PD_FRAME_MEMCACHE, b[pos++], &o);
			if (rr != PD_P_MORE)
				memset(&ps, 0, sizeof(ps));     /* the next command */
		}
	}
	ok(!bad, "bytes taken at once leave the parser as byte by byte: %ld places, %ld bytes",
	   places, taken);
	ok(places > rounds && taken > 8 * places, "... keys and lines taken at once");
}

int main(void)
{
	return run_parser_tests("PD_MC", fixed, differential, verdicts);
}
