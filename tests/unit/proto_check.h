/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the protocol parsers' unit tests share once proto.h is in: a
 * policy compiled from text, one message walked through a service's
 * parser and automaton in random pieces as the BPF program gets them,
 * and the check of its verdict against what a naive matcher wants.
 */
#ifndef PD_PROTO_CHECK_H
#define PD_PROTO_CHECK_H

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>

#include "tap.h"
#include "quick_check.h"

/* text compiled into img (g_img points at it); false, said, if not */
static inline bool compile_text(const char *text, const char *name, struct pd_policy *p,
			 struct pd_image *img)
{
	struct pd_diag d = { 0 };
	bool good = !pd_policy_load_string(text, name, p, &d) && !pd_compile(p, img, &d);

	if (!ok(good, "a policy with the framing's rules compiles (%s)", name))
		pd_diag_print(&d, stdout);
	pd_diag_free(&d);
	g_img = img;
	return good;
}

/* The message at b (n bytes at most) through service 0 of g_img, in
 * pieces of 1 to maxpiece bytes, into m: 1 ended, -1 malformed, 0 not
 * ended (or denied before its end). */
static inline int walk_pieces(const uint8_t *b, size_t n, uint32_t maxpiece, struct pd_match *m)
{
	const struct pd_service *svc = &g_img->services[0].svc;
	const struct pd_classmap *cm = &g_img->services[0].classes;
	struct pd_parse ps = { 0 };
	size_t at = 0;
	int done = 0;

	memset(m, 0, sizeof(*m));
	pd_begin(m, svc, NULL);
	while (at < n && !done && !m->deny) {
		__u32 piece = 1 + rnd(maxpiece);
		long k;

		if (piece > n - at)
			piece = (__u32)(n - at);
		k = pd_proto_walk(&ps, m, svc, cm, b + at, piece, &done, NULL);
		if (k < 0)
			return 0;
		at += (size_t)k;
	}
	return done;
}

/* Whether m (walked to done) is what a naive matcher wants: the deny rule
 * want_deny (0 none), else audit and allow rules as wanted and the end of
 * the message reached. Says why not, with the message. */
static inline bool verdict_is(const struct pd_match *m, int done, uint16_t want_deny,
			      uint16_t audit_rule,
		       bool want_audit, uint16_t allow_rule, bool want_allow, const uint8_t *b,
		       size_t n)
{
	if (m->deny != want_deny && (want_deny || m->deny)) {
		printf("# deny rule %u, want %u\n", m->deny, want_deny);
		show("message", b, n);
		return false;
	}
	if (!want_deny && ((m->audit == audit_rule) != want_audit ||
			   (m->allow == allow_rule) != want_allow || done != 1)) {
		printf("# audit %u allow %u done %d\n", m->audit, m->allow, done);
		show("message", b, n);
		return false;
	}
	return true;
}

/* whether the n bytes at a hold the string w */
static inline bool has(const uint8_t *a, size_t n, const char *w)
{
	size_t k;

	if (!w)
		return false;
	k = strlen(w);

	for (size_t i = 0; i + k <= n; i++)
		if (!memcmp(a + i, w, k))
			return true;
	return false;
}

/* What a naive matcher wants of the command at pos of a stream: where it
 * ends (0: no whole command there), the deny rule, whether the audit and
 * the allow rule match. */
struct want {
	size_t end;
	uint16_t deny;
	bool audit, allow;
};

/* Every command of the stream b (n bytes) walked in pieces and checked
 * against want_at: how many were checked; *bad counts a disagreement (the
 * rest of the stream is then left). */
static inline long check_commands(const uint8_t *b, size_t n, struct want (*want_at)(const uint8_t *,
									     size_t, size_t),
			   uint16_t audit_rule, uint16_t allow_rule, long *bad)
{
	size_t pos = 0;
	long checked = 0;

	while (pos < n) {
		struct want w = want_at(b, n, pos);
		struct pd_match m;
		int done;

		if (!w.end)
			break;
		/* in random pieces, the parser's state carried over */
		done = walk_pieces(b + pos, n - pos, 24, &m);
		if (!verdict_is(&m, done, w.deny, audit_rule, w.audit, allow_rule, w.allow, b + pos,
				w.end - pos)) {
			(*bad)++;
			break;
		}
		checked++;
		pos = w.end;
	}
	return checked;
}

/* The rules of a verdict test, by command name: 1 denies deny1, 2 denies
 * deny2 with its first argument deny2arg, 3 audits audit, 4 allows allow
 * (names compared in any case when fold), 5 denies any token, or the
 * counted contents, that holds contains (no rule 5 when it is NULL: the
 * automaton then needs no byte after a name no rule names). */
struct naive {
	const char *framing, *deny1, *deny2, *deny2arg, *audit, *allow, *contains;
	bool fold;
};

static inline bool naive_eq(const struct naive *nv, const uint8_t *a, size_t n, const char *w)
{
	if (n != strlen(w))
		return false;
	for (size_t i = 0; i < n; i++)
		if (nv->fold ? tolower(a[i]) != tolower((unsigned char)w[i]) : a[i] != (uint8_t)w[i])
			return false;
	return true;
}

/* What the naive matcher wants of a command whose tokens tok(c, i, &len)
 * gives (argc of them), and of its counted contents (data, datalen). */
static inline void naive_want(const struct naive *nv, const void *c, int argc,
			      const uint8_t *(*tok)(const void *, int, size_t *), const uint8_t *data,
			      size_t datalen, struct want *w)
{
	const uint8_t *t0 = NULL, *t1 = NULL;
	size_t l0 = 0, l1 = 0;

	for (int a = 0; a < argc; a++) {
		size_t len;
		const uint8_t *t = tok(c, a, &len);

		if (has(t, len, nv->contains))
			w->deny = 5;
		if (a == 0)
			t0 = t, l0 = len;
		if (a == 1)
			t1 = t, l1 = len;
	}
	if (datalen && has(data, datalen, nv->contains))
		w->deny = 5;
	if (t0 && naive_eq(nv, t0, l0, nv->deny1))
		w->deny = 1;
	if (t1 && naive_eq(nv, t0, l0, nv->deny2) && naive_eq(nv, t1, l1, nv->deny2arg))
		w->deny = 2;
	w->audit = t0 && naive_eq(nv, t0, l0, nv->audit);
	w->allow = t0 && naive_eq(nv, t0, l0, nv->allow);
}

/* The naive rules as a policy of one service, compiled into img (g_img
 * points at it); false, said, if not. */
static inline bool compile_naive(const struct naive *nv, struct pd_policy *p,
				 struct pd_image *img)
{
	char text[1024];

	snprintf(text, sizeof(text), "version = 1;\nservices = ( { name = \"t\"; ports = [ 1 ]; "
		 "framing = \"%s\"; rules = (\n"
		 "  { id = 1; action = \"deny\"; command = \"%s\"; },\n"
		 "  { id = 2; action = \"deny\"; command = \"%s %s\"; },\n"
		 "  { id = 3; action = \"audit\"; command = \"%s\"; },\n"
		 "  { id = 4; action = \"allow\"; command = \"%s\"; }%s%s%s\n); } );\n",
		 nv->framing, nv->deny1, nv->deny2, nv->deny2arg, nv->audit, nv->allow,
		 nv->contains ? ",\n  { id = 5; action = \"deny\"; contains = \"" : "",
		 nv->contains ? nv->contains : "", nv->contains ? "\"; }" : "");
	return compile_text(text, nv->framing, p, img);
}

/* The naive rules compiled, over rounds well-formed streams from gen,
 * each command's verdict against want_at. */
static inline void verdicts_of(const struct naive *nv, long rounds,
			       size_t (*gen)(uint8_t *, size_t, bool),
			       struct want (*want_at)(const uint8_t *, size_t, size_t))
{
	static uint8_t buf[65536];
	struct pd_policy p;
	struct pd_image img;
	long checked = 0, bad = 0;

	if (!compile_naive(nv, &p, &img))
		return;
	for (long i = 0; i < rounds && bad < 3; i++) {
		size_t n = gen(buf, sizeof(buf), true);

		checked += check_commands(buf, n, want_at, 3, 4, &bad);
	}
	ok(!bad, "verdicts of command%s rules against a naive matcher: %ld commands",
	   nv->contains ? " and contains" : "", checked);
	pd_image_free(&img);
	pd_policy_free(&p);
}

/* The parser and the test's reference over the command at a stream's
 * position: what each made of it. */
struct reading {
	int ours;               /* 1 ended, -1 refused, 0 not ended */
	size_t our_end;
	bool plain;             /* the server runs it, read as the parser read it
	                         * (same end and tokens, no laxness) */
	size_t ref_end;
	bool refusable;         /* the server would refuse it, or read it laxly */
	bool waits;             /* the server waits for more */
	char why[160];          /* what differs, when it does */
};

/* Every command of a stream, the parser against the reference (read_at
 * fills a reading): false, with the reason shown, at the first
 * disagreement. valid: a well-formed stream, where nothing is refused. */
static inline bool check_stream(const uint8_t *b, size_t n, bool valid,
				void (*read_at)(const uint8_t *, size_t, size_t, struct reading *),
				long *passed, long *refused)
{
	size_t pos = 0;

	while (pos < n) {
		struct reading r = { 0 };

		read_at(b, n, pos, &r);
		if (r.ours == 1) {
			/* what passes is read by the server as it was judged */
			if (!r.plain) {
				printf("# at %zu: passed (end %zu), but the server reads it otherwise: "
				       "%s\n", pos, r.our_end, r.why);
				return false;
			}
			(*passed)++;
			pos = r.our_end;
			continue;
		}
		if (r.ours == -1) {
			(*refused)++;
			if (valid || !r.refusable) {
				printf("# at %zu: refused at %zu what the server reads plainly%s\n", pos,
				       r.our_end, valid ? " (a well-formed stream)" : "");
				return false;
			}
			return true;    /* the connection ends here */
		}
		/* not ended: the server must wait too, or refuse */
		if (!r.waits && (valid || !r.refusable)) {
			printf("# at %zu: not ended, and the server does not wait\n", pos);
			return false;
		}
		return true;
	}
	return true;
}

/* rounds random streams (gen: valid or odd ones into b) through
 * check_stream; server names the server in the test's name. */
static inline void differential_of(const char *server, long rounds,
				   size_t (*gen)(uint8_t *, size_t, bool),
				   void (*read_at)(const uint8_t *, size_t, size_t, struct reading *))
{
	static uint8_t buf[65536];
	long passed = 0, refused = 0, bad = 0;

	for (long i = 0; i < rounds && bad < 3; i++) {
		bool valid = rnd(2);
		size_t n = gen(buf, sizeof(buf), valid);

		if (!check_stream(buf, n, valid, read_at, &passed, &refused)) {
			show(valid ? "stream" : "odd stream", buf, n);
			bad++;
		}
	}
	ok(!bad, "parser against %s's reading: %ld rounds, %ld commands passed, %ld refused",
	   server, rounds, passed, refused);
	ok(passed > rounds && refused > rounds / 20, "... both outcomes seen");
}

/* quick_disagreement over b (n bytes); false, said, where they
 * disagree. */
static inline bool quick_walk(const uint8_t *b, size_t n, __u32 framing, long *taken)
{
	size_t at = quick_disagreement(b, n, framing, taken);

	if (at == n)
		return true;
	printf("# at %zu (byte 0x%02x): bytes taken one symbol each leave the parser "
	       "otherwise than byte by byte\n", at, b[at]);
	show("stream", b, n);
	return false;
}

/* quick_walk over rounds streams of gen (valid or not). */
static inline void quick_of(__u32 framing, long rounds, size_t (*gen)(uint8_t *, size_t, bool))
{
	static uint8_t buf[65536];
	long bytes = 0, taken = 0, bad = 0;

	for (long i = 0; i < rounds && bad < 3; i++) {
		size_t n = gen(buf, sizeof(buf), rnd(2));

		bytes += (long)n;
		bad += !quick_walk(buf, n, framing, &taken);
	}
	ok(!bad, "bytes taken one symbol each leave the parser as byte by byte: %ld of %ld",
	   taken, bytes);
	ok(taken > bytes / 50, "... and many are");
}

/* main of a parser's test: the seed and the rounds from the environment
 * variables PREFIX_SEED and PREFIX_ROUNDS, then the fixed cases, the
 * differential rounds and a quarter as many verdict rounds. */
static inline int run_parser_tests(const char *prefix, void (*fixed)(void), void (*differential)(long),
			    void (*verdicts)(long))
{
	char name[64];
	const char *seed, *rounds;
	long n;

	snprintf(name, sizeof(name), "%s_SEED", prefix);
	seed = getenv(name);
	snprintf(name, sizeof(name), "%s_ROUNDS", prefix);
	rounds = getenv(name);
	n = rounds ? atol(rounds) : 20000;
	if (seed)
		rng = strtoull(seed, NULL, 0) | 1;
	printf("# seed %llu\n", (unsigned long long)rng);
	fixed();
	differential(n);
	verdicts(n / 4);
	return done_testing();
}

#endif /* PD_PROTO_CHECK_H */
