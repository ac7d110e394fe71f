// SPDX-License-Identifier: GPL-2.0-only
/*
 * Differential test: the automaton walk that the BPF program runs
 * (bpf/pd_match.h over a compiled image) against a naive reference
 * matcher, over many random pattern sets and inputs fed in random pieces.
 *
 * PD_MATCH_SEED=N picks another seed; PD_MATCH_ROUNDS=N runs longer.
 */
#include <ctype.h>
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
#include "pd_match.h"

static uint64_t rng = 88172645463325252ull;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? (uint32_t)(rng % n) : 0;
}

/* A small alphabet makes overlaps, shared prefixes and case pairs common. */
static const uint8_t alphabet[] = { 'a', 'b', 'A', 'B', 'c', '\n', '\r', 0, 0xff, ' ' };

struct rule {
	int kind;               /* PD_M_* */
	int action;
	bool nocase;
	uint8_t pat[8];
	size_t len;
	uint32_t longer;
};

struct spec {
	int framing, def;
	uint32_t inspect;
	struct rule r[12];
	int n;
};

struct verdict {
	uint32_t v, rule, audit;
};

static uint8_t fold(uint8_t c, bool nocase)
{
	return nocase && c < 128 && isalpha(c) ? (uint8_t)tolower(c) : c;
}

static char *policy_text(const struct spec *s)
{
	static const char *const act[] = { "", "audit", "allow", "redirect", "deny" };
	static const char *const defs[] = { "allow", "deny", "audit" };
	size_t cap = 8192, len = 0;
	char *t = malloc(cap);

	len += snprintf(t + len, cap - len, "version = 1;\nsinks = ({ name = \"q\"; file = \"/q\"; });\n"
			"services = ({ name = \"s\"; ports = [ 1 ]; framing = \"%s\"; inspect = %u; "
			"default = \"%s\"; rules = (\n", s->framing ? "line" : "none", s->inspect,
			defs[s->def]);
	for (int i = 0; i < s->n; i++) {
		const struct rule *r = &s->r[i];

		len += snprintf(t + len, cap - len, "%s{ id = %d; action = \"%s\"; ", i ? ",\n" : "",
				i + 1, act[r->action]);
		if (r->kind == PD_M_LONGER_THAN) {
			len += snprintf(t + len, cap - len, "longer_than = %u;", r->longer);
		} else {
			len += snprintf(t + len, cap - len, "%s = \"",
					r->kind == PD_M_PREFIX ? "hex_prefix" : "hex_contains");
			for (size_t k = 0; k < r->len; k++)
				len += snprintf(t + len, cap - len, "%02x", r->pat[k]);
			len += snprintf(t + len, cap - len, "\"; nocase = %s;",
					r->nocase ? "true" : "false");
		}
		if (r->action == PD_ACT_REDIRECT)
			len += snprintf(t + len, cap - len, " sink = \"q\";");
		len += snprintf(t + len, cap - len, " }");
	}
	snprintf(t + len, cap - len, "\n); });\n");
	return t;
}

static void merge_rule(struct pd_match *m, int action, uint16_t idx)
{
	struct pd_state_out o = { 0 };

	switch (action) {
	case PD_ACT_DENY: o.deny = idx; break;
	case PD_ACT_REDIRECT: o.redirect = idx; break;
	case PD_ACT_ALLOW: o.allow = idx; break;
	case PD_ACT_AUDIT: o.audit = idx; break;
	}
	pd_merge(m, &o);
}

/* Whether r occurs ending at buf[e] (buf holds the scanned segment). */
static bool ends_at(const struct rule *r, const uint8_t *buf, size_t e)
{
	if (e + 1 < r->len)
		return false;
	for (size_t k = 0; k < r->len; k++)
		if (fold(buf[e + 1 - r->len + k], r->nocase) != fold(r->pat[k], r->nocase))
			return false;
	return true;
}

/* Reference verdict of one message msg[0..len), whose inspected part
 * continues the scanned segment seg[0..seglen). */
static struct verdict ref_message(const struct spec *s, const uint8_t *seg, size_t seglen,
				  const uint8_t *msg, size_t len)
{
	size_t insp = s->inspect && s->inspect < len ? s->inspect : len;
	uint8_t *buf = malloc(seglen + len + 1);
	struct pd_match m = { 0 };
	struct pd_service svc = { .def = (uint8_t)s->def };
	struct verdict v;

	memcpy(buf, seg, seglen);
	memcpy(buf + seglen, msg, len);
	for (size_t e = 0; e < insp && !m.deny; e++) {
		for (int i = 0; i < s->n; i++) {
			const struct rule *r = &s->r[i];

			if (r->kind == PD_M_CONTAINS && ends_at(r, buf, seglen + e))
				merge_rule(&m, r->action, (uint16_t)(i + 1));
			if (r->kind == PD_M_PREFIX && e + 1 == r->len && ends_at(r, msg, e))
				merge_rule(&m, r->action, (uint16_t)(i + 1));
		}
		/* a line's length is known only as far as it was read: a deny
		 * stops the reading */
		if (m.deny && s->framing == PD_FRAME_LINE)
			len = e + 1;
	}
	for (int i = 0; i < s->n; i++)
		if (s->r[i].kind == PD_M_LONGER_THAN && len > s->r[i].longer)
			merge_rule(&m, s->r[i].action, (uint16_t)(i + 1));
	v.v = pd_verdict(&m, &svc, &v.rule);
	v.audit = m.audit;
	free(buf);
	return v;
}

/* The walk, driven as the data plane drives it: a message at a time, in
 * chunks of random size, skipping past the inspect window. */
struct driver {
	const struct pd_service *svc;
	const struct pd_classmap *cm;
	struct pd_match m;
	bool in_msg, skipping;
	uint32_t msglen;
	bool failed;
};

static struct verdict finish(struct driver *d, bool whole)
{
	struct verdict v;

	pd_length(&d->m, d->svc, d->msglen);
	v.v = pd_verdict(&d->m, d->svc, &v.rule);
	v.audit = d->m.audit;
	pd_end(&d->m, d->svc, whole);
	d->in_msg = false;
	return v;
}

static int walk_some(struct driver *d, const uint8_t *p, uint32_t n, int *ended)
{
	uint32_t chunk = 1 + rnd(rnd(2) ? 4 : PD_WALK_MAX);
	int k;

	if (n > chunk)
		n = chunk;
	k = pd_walk(&d->m, d->svc, d->cm, p, p + n, n, ended, NULL);
	if (k < 0)
		d->failed = true;
	return k < 0 ? 0 : k;
}

static int run_case(const struct spec *s, const struct pd_image *img, const uint8_t *in,
		    size_t inlen, const size_t *cuts, int ncuts)
{
	struct driver d = { .svc = &img->services[0].svc, .cm = &img->services[0].classes };
	struct verdict got[128], want[128];
	int ngot = 0, nwant = 0;
	uint8_t seg[256];
	size_t seglen = 0, start = 0;
	bool dead = false;

	d.m.state = d.svc->resume;
	/* the walk */
	for (int c = 0; c <= ncuts && !dead; c++) {
		size_t from = c ? cuts[c - 1] : 0, to = c < ncuts ? cuts[c] : inlen;
		const uint8_t *p = in + from;
		uint32_t len = (uint32_t)(to - from), pos = 0;

		if (s->framing == PD_FRAME_NONE) {
			uint32_t insp = s->inspect && s->inspect < len ? s->inspect : len;
			int ended;

			pd_begin(&d.m, d.svc, NULL);
			while (pos < insp && !d.m.deny && !d.failed)
				pos += walk_some(&d, p + pos, insp - pos, &ended);
			d.msglen = len;
			got[ngot] = finish(&d, insp == len);
			dead = got[ngot++].v == PD_V_DENY;
			continue;
		}
		while (pos < len && !dead && !d.failed) {
			int ended = 0;

			if (!d.in_msg) {
				pd_begin(&d.m, d.svc, NULL);
				d.in_msg = true;
				d.skipping = false;
				d.msglen = 0;
			}
			if (!d.skipping && s->inspect && d.m.seen >= s->inspect)
				d.skipping = true;
			if (!d.skipping) {
				uint32_t n = len - pos, k;

				if (s->inspect && n > s->inspect - d.m.seen)
					n = s->inspect - d.m.seen;
				k = (uint32_t)walk_some(&d, p + pos, n, &ended);
				pos += k;
				d.msglen += k;
			} else {
				const uint8_t *nl = memchr(p + pos, '\n', len - pos);
				uint32_t k = nl ? (uint32_t)(nl - (p + pos)) + 1 : len - pos;

				pos += k;
				d.msglen += k;
				ended = nl != NULL;
			}
			if (ended || d.m.deny) {
				got[ngot] = finish(&d, true);
				dead = got[ngot++].v == PD_V_DENY;
			}
		}
	}
	/* the reference */
	dead = false;
	if (s->framing == PD_FRAME_NONE) {
		for (int c = 0; c <= ncuts && !dead; c++) {
			size_t from = c ? cuts[c - 1] : 0, to = c < ncuts ? cuts[c] : inlen;
			size_t len = to - from, insp = s->inspect && s->inspect < len ? s->inspect : len;

			want[nwant] = ref_message(s, seg, seglen, in + from, len);
			dead = want[nwant++].v == PD_V_DENY;
			if (insp < len) {
				seglen = 0;
			} else {
				memcpy(seg + seglen, in + from, len);
				seglen += len;
			}
		}
	} else {
		for (size_t i = 0; i < inlen && !dead; i++)
			if (in[i] == '\n') {
				want[nwant] = ref_message(s, seg, 0, in + start, i + 1 - start);
				dead = want[nwant++].v == PD_V_DENY;
				start = i + 1;
			}
	}
	if (d.failed || ngot != nwant)
		return -1;
	for (int i = 0; i < ngot; i++)
		if (got[i].v != want[i].v || got[i].rule != want[i].rule ||
		    (got[i].v != PD_V_DENY && got[i].audit != want[i].audit))
			return i + 1;
	return 0;
}

static void random_spec(struct spec *s)
{
	size_t maxlen = 0;

	memset(s, 0, sizeof(*s));
	s->framing = (int)rnd(2);
	s->def = (int)rnd(3);
	s->n = 1 + (int)rnd(10);
	for (int i = 0; i < s->n; i++) {
		struct rule *r = &s->r[i];

		r->kind = rnd(8) == 0 ? PD_M_LONGER_THAN : rnd(3) == 0 ? PD_M_PREFIX : PD_M_CONTAINS;
		r->action = 1 + (int)rnd(4);
		r->nocase = rnd(2);
		r->len = 1 + rnd(rnd(2) ? 3 : 7);
		r->longer = rnd(12);
		/* often extend an earlier pattern: prefixes of one another */
		if (i && rnd(3) == 0 && s->r[i - 1].kind != PD_M_LONGER_THAN) {
			memcpy(r->pat, s->r[i - 1].pat, s->r[i - 1].len);
			if (r->len < s->r[i - 1].len)
				r->len = s->r[i - 1].len;
			for (size_t k = s->r[i - 1].len; k < r->len; k++)
				r->pat[k] = alphabet[rnd(sizeof(alphabet))];
		} else {
			for (size_t k = 0; k < r->len; k++)
				r->pat[k] = alphabet[rnd(sizeof(alphabet))];
		}
		if (r->kind != PD_M_LONGER_THAN && r->len > maxlen)
			maxlen = r->len;
	}
	s->inspect = rnd(2) ? 0 : (uint32_t)(maxlen + rnd(12));
}

static void dump_case(const char *text, const uint8_t *in, size_t len, const size_t *cuts,
		      int ncuts)
{
	printf("# policy:\n# %s\n# input:", text);
	for (size_t i = 0; i < len; i++)
		printf(" %02x", in[i]);
	printf("\n# cuts:");
	for (int i = 0; i < ncuts; i++)
		printf(" %zu", cuts[i]);
	printf("\n");
}

/* The word tests of the skipping scan (pd_hit*) against the bytes one by
 * one: nonzero exactly when some byte of the word is one of the keys'.
 * Words are drawn from the keys' bytes, bytes next to them (XOR 1, 0x80),
 * 0, 0xff and random bytes, so that borrows and high bits are exercised;
 * the keys are repeated bytes, below 0x80 for the _ascii forms. */
static void word_tests(long n)
{
	static const char *what[] = { "pd_hit2_ascii", "pd_hit4_ascii", "pd_hit4" };
	long bad[3] = { 0 }, hits[3] = { 0 };

	for (long t = 0; t < n; t++) {
		for (int f = 0; f < 3; f++) {
			uint8_t kb[4], wb[8];
			__u64 k[4], v = 0, got;
			int want = 0, nk = f == 0 ? 2 : 4;

			for (int j = 0; j < 4; j++) {
				kb[j] = (uint8_t)rnd(256);
				if (f < 2)
					kb[j] &= 0x7f;
				if (j >= nk)
					kb[j] = kb[0];
				k[j] = 0x0101010101010101ull * kb[j];
			}
			for (int b = 0; b < 8; b++) {
				uint8_t x = kb[rnd((uint32_t)nk)];

				switch (rnd(8)) {
				case 0: wb[b] = x; break;
				case 1: wb[b] = x ^ 1; break;
				case 2: wb[b] = x ^ 0x80; break;
				case 3: wb[b] = 0; break;
				case 4: wb[b] = 0xff; break;
				default: wb[b] = (uint8_t)rnd(256); break;
				}
				if (t & 1 && wb[b] == x)        /* half the words without a key */
					wb[b] ^= 2;
				for (int j = 0; j < nk; j++)
					want |= wb[b] == kb[j];
				v |= (__u64)wb[b] << (8 * b);
			}
			got = f == 0 ? pd_hit2_ascii(v, k[0], k[1], PD_BYTES_01, PD_BYTES_80) :
			      f == 1 ? pd_hit4_ascii(v, k[0], k[1], k[2], k[3], PD_BYTES_01,
						     PD_BYTES_80) :
				       pd_hit4(v, k[0], k[1], k[2], k[3], PD_BYTES_01, PD_BYTES_80);
			hits[f] += want;
			if (!!got != want && bad[f]++ < 3)
				printf("# %s: word %016llx keys %02x %02x %02x %02x: got %d, want %d\n",
				       what[f], (unsigned long long)v, kb[0], kb[1], kb[2], kb[3],
				       !!got, want);
		}
	}
	for (int f = 0; f < 3; f++)
		ok(!bad[f] && hits[f] > n / 8 && hits[f] < n - n / 8,
		   "%s agrees with the bytes one by one on %ld words (%ld with a key's byte)",
		   what[f], n, hits[f]);
	ok(pd_keys_ascii(0x2424242424242424ull, 0x0a0a0a0a0a0a0a0aull, 0, 0) &&
	   !pd_keys_ascii(0x2424242424242424ull, 0xffffffffffffffffull, 0, 0),
	   "pd_keys_ascii tells keys below 0x80 from others");
}

int main(void)
{
	const char *e = getenv("PD_MATCH_SEED");
	long rounds = getenv("PD_MATCH_ROUNDS") ? atol(getenv("PD_MATCH_ROUNDS")) : 3000;
	long cases = 0, failures = 0;

	if (e)
		rng = strtoull(e, NULL, 0) | 1;
	for (long round = 0; round < rounds && failures < 3; round++) {
		struct spec s;
		struct pd_policy p;
		struct pd_image img;
		struct pd_diag d = { 0 };
		char *text;

		random_spec(&s);
		text = policy_text(&s);
		if (pd_policy_load_string(text, "random.conf", &p, &d) || pd_compile(&p, &img, &d)) {
			pd_diag_print(&d, stdout);
			ok(0, "random policy compiles");
			printf("# %s\n", text);
			failures++;
			free(text);
			pd_diag_free(&d);
			continue;
		}
		g_img = &img;
		for (int t = 0; t < 8; t++) {
			uint8_t in[96];
			size_t len = rnd(64), cuts[32];
			int ncuts = (int)rnd(8), r;

			for (size_t i = 0; i < len; i++)
				in[i] = alphabet[rnd(sizeof(alphabet))];
			/* sometimes plant a pattern, maybe in another case */
			if (len > 8 && rnd(2)) {
				const struct rule *pr = &s.r[rnd((uint32_t)s.n)];
				size_t at = rnd((uint32_t)(len - pr->len));

				for (size_t k = 0; k < pr->len && pr->kind != PD_M_LONGER_THAN; k++)
					in[at + k] = rnd(2) && isalpha(pr->pat[k]) ?
						(uint8_t)(pr->pat[k] ^ 0x20) : pr->pat[k];
			}
			if (s.framing == PD_FRAME_LINE)
				in[len++] = '\n';
			for (int i = 0; i < ncuts; i++)
				cuts[i] = len ? rnd((uint32_t)len + 1) : 0;
			for (int i = 1; i < ncuts; i++)  /* sort */
				for (int k = i; k && cuts[k - 1] > cuts[k]; k--) {
					size_t x = cuts[k];

					cuts[k] = cuts[k - 1];
					cuts[k - 1] = x;
				}
			cases++;
			r = run_case(&s, &img, in, len, cuts, ncuts);
			if (r) {
				failures++;
				ok(0, "walk and reference agree (round %ld, message %d)", round, r);
				dump_case(text, in, len, cuts, ncuts);
				break;
			}
		}
		pd_image_free(&img);
		pd_policy_free(&p);
		pd_diag_free(&d);
		free(text);
	}
	ok(failures == 0, "walk and reference agree on %ld random inputs over %ld policies",
	   cases, rounds);
	word_tests(200000);
	return done_testing();
}
