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
#include "proto.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? (uint32_t)(rng % n) : 0;
}

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

static void show(const char *what, const uint8_t *b, size_t n)
{
	printf("# %s (%zu bytes): \"", what, n);
	for (size_t i = 0; i < n && i < 600; i++)
		printf(b[i] >= ' ' && b[i] < 0x7f && b[i] != '"' && b[i] != '\\' ? "%c" : "\\x%02x",
		       b[i]);
	printf("\"\n");
}

/* Every command of a stream, ours against memcached's reading. */
static bool check_stream(const uint8_t *b, size_t n, bool valid, long *passed, long *refused)
{
	size_t pos = 0;

	while (pos < n) {
		struct cmd c;
		struct got g;

		ref_parse(b, n, pos, &c);
		our_parse(b, n, pos, &g);
		if (g.done == 1) {
			if (c.kind != REF_CMD || c.end != g.end || !same_args(&c, &g) || c.odd) {
				printf("# at %zu: passed (end %zu, %d tokens) but memcached reads kind "
				       "%d end %zu, %d tokens%s\n", pos, g.end, g.argc, c.kind, c.end,
				       c.argc, c.odd ? ", a bad data chunk" : "");
				return false;
			}
			(*passed)++;
			pos = g.end;
			continue;
		}
		if (g.done == -1) {
			(*refused)++;
			if (valid) {
				printf("# at %zu: a well-formed command refused at %zu\n", pos, g.end);
				return false;
			}
			return true;
		}
		if (c.kind == REF_CMD || (valid && c.kind != REF_WAIT)) {
			printf("# at %zu: not ended, memcached reads kind %d\n", pos, c.kind);
			return false;
		}
		return true;
	}
	return true;
}

static void differential(long rounds)
{
	static uint8_t buf[8192];
	long passed = 0, refused = 0, bad = 0;

	for (long i = 0; i < rounds && bad < 3; i++) {
		bool valid = rnd(2);
		size_t n = gen_stream(buf, sizeof(buf), valid);

		if (!check_stream(buf, n, valid, &passed, &refused)) {
			show(valid ? "stream" : "odd stream", buf, n);
			bad++;
		}
	}
	ok(!bad, "parser against memcached's reading: %ld rounds, %ld commands passed, %ld refused",
	   rounds, passed, refused);
	ok(passed > rounds && refused > rounds / 20, "... both outcomes seen");
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

static bool eq(const uint8_t *a, size_t n, const char *w)
{
	return n == strlen(w) && !memcmp(a, w, n);
}

static bool has(const uint8_t *a, size_t n, const char *w)
{
	size_t k = strlen(w);

	for (size_t i = 0; i + k <= n; i++)
		if (!memcmp(a + i, w, k))
			return true;
	return false;
}

static void verdicts(long rounds)
{
	static const char text[] =
		"version = 1;\n"
		"services = ( { name = \"m\"; ports = [ 1 ]; framing = \"memcache\"; rules = (\n"
		"  { id = 1; action = \"deny\"; command = \"flush_all\"; },\n"
		"  { id = 2; action = \"deny\"; command = \"stats cachedump\"; },\n"
		"  { id = 3; action = \"audit\"; command = \"stats\"; },\n"
		"  { id = 4; action = \"allow\"; command = \"get\"; },\n"
		"  { id = 5; action = \"deny\"; contains = \"x4f\"; }\n"
		"); } );\n";
	static uint8_t buf[8192];
	struct pd_policy p;
	struct pd_image img;
	struct pd_diag d = { 0 };
	long checked = 0, bad = 0;

	if (!ok(!pd_policy_load_string(text, "memcache.conf", &p, &d) && !pd_compile(&p, &img, &d),
		"a memcache policy compiles")) {
		pd_diag_print(&d, stdout);
		return;
	}
	g_img = &img;
	for (long i = 0; i < rounds && bad < 3; i++) {
		size_t n = gen_stream(buf, sizeof(buf), true), pos = 0;
		const struct pd_service *svc = &img.services[0].svc;
		const struct pd_classmap *cm = &img.services[0].classes;

		while (pos < n) {
			struct pd_parse ps = { 0 };
			struct pd_match m = { 0 };
			struct cmd c;
			uint16_t want = 0;
			int done = 0;
			long k;
			size_t at = pos;

			ref_parse(buf, n, pos, &c);
			if (c.kind != REF_CMD)
				break;
			pd_begin(&m, svc, NULL);
			while (at < n && !done && !m.deny) {
				__u32 piece = 1 + rnd(24);

				if (piece > n - at)
					piece = (__u32)(n - at);
				k = pd_proto_walk(&ps, &m, svc, cm, buf + at, piece, &done, NULL);
				if (k < 0)
					break;
				at += (size_t)k;
			}
			for (int a = 0; a < c.argc; a++)
				if (has(c.argv[a], c.arglen[a], "x4f"))
					want = 5;
			if (c.datalen && has(buf + c.data, c.datalen, "x4f"))
				want = 5;
			if (c.argc && eq(c.argv[0], c.arglen[0], "flush_all"))
				want = 1;
			if (c.argc > 1 && eq(c.argv[0], c.arglen[0], "stats") &&
			    eq(c.argv[1], c.arglen[1], "cachedump"))
				want = 2;
			if (m.deny != want && (want || m.deny)) {
				printf("# deny rule %u, want %u\n", m.deny, want);
				show("command", buf + pos, c.end - pos);
				bad++;
				break;
			}
			if (!want) {
				bool audit = c.argc && eq(c.argv[0], c.arglen[0], "stats");
				bool allow = c.argc && eq(c.argv[0], c.arglen[0], "get");

				if ((m.audit == 3) != audit || (m.allow == 4) != allow || done != 1) {
					printf("# audit %u allow %u done %d\n", m.audit, m.allow, done);
					show("command", buf + pos, c.end - pos);
					bad++;
					break;
				}
			}
			checked++;
			pos = c.end;
		}
	}
	ok(!bad, "verdicts of command and contains rules against a naive matcher: %ld commands",
	   checked);
	pd_image_free(&img);
	pd_policy_free(&p);
	pd_diag_free(&d);
}

int main(void)
{
	const char *seed = getenv("PD_MC_SEED"), *rounds = getenv("PD_MC_ROUNDS");
	long n = rounds ? atol(rounds) : 20000;

	if (seed)
		rng = strtoull(seed, NULL, 0) | 1;
	printf("# seed %llu\n", (unsigned long long)rng);
	fixed();
	differential(n);
	verdicts(n / 4);
	return done_testing();
}
