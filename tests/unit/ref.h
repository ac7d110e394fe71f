/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the differential tests of matching share: random policies of one
 * service (a small alphabet, so that overlaps, shared prefixes and case
 * pairs are common), a naive reference matcher, and pd_walk driven as the
 * data plane drives it, each giving the verdicts of a stream cut into
 * sends. The includer includes tap.h and policy.h first.
 */
#ifndef PD_TEST_REF_H
#define PD_TEST_REF_H

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define PD_TEST_SEED 88172645463325252ull
#include "image_walk.h"
#include "pd_match.h"

/* A small alphabet makes overlaps, shared prefixes and case pairs common. */
static const uint8_t alphabet[] = { 'a', 'b', 'A', 'B', 'c', '\n', '\r', 0, 0xff, ' ' };

struct rule {
	int kind;               /* PD_M_* */
	int action;
	bool nocase;
	uint8_t pat[40];
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
	uint32_t state;         /* where the automaton goes on from (not the reference's) */
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
	v.state = d->m.state;
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

/* pd_walk's verdicts for in[0..inlen) sent in pieces cut at cuts: at
 * most max; returns how many, or -1 when the walk failed. */
static int walk_verdicts(const struct spec *s, const struct pd_image *img, const uint8_t *in,
			 size_t inlen, const size_t *cuts, int ncuts, struct verdict *got, int max)
{
	struct driver d = { .svc = &img->services[0].svc, .cm = &img->services[0].classes };
	int ngot = 0;
	bool dead = false;

	d.m.state = d.svc->resume;
	for (int c = 0; c <= ncuts && !dead && ngot < max; c++) {
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
		while (pos < len && !dead && !d.failed && ngot < max) {
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
	return d.failed ? -1 : ngot;
}

/* The reference's verdicts for the same (at most max). */
static int ref_verdicts(const struct spec *s, const uint8_t *in, size_t inlen, const size_t *cuts,
			int ncuts, struct verdict *want, int max)
{
	uint8_t seg[64];        /* the end of the messages walked whole before */
	size_t seglen = 0, start = 0;
	int nwant = 0;
	bool dead = false;

	if (s->framing == PD_FRAME_LINE) {
		for (size_t i = 0; i < inlen && !dead && nwant < max; i++)
			if (in[i] == '\n') {
				want[nwant] = ref_message(s, seg, 0, in + start, i + 1 - start);
				dead = want[nwant++].v == PD_V_DENY;
				start = i + 1;
			}
		return nwant;
	}
	for (int c = 0; c <= ncuts && !dead && nwant < max; c++) {
		size_t from = c ? cuts[c - 1] : 0, to = c < ncuts ? cuts[c] : inlen;
		size_t len = to - from, insp = s->inspect && s->inspect < len ? s->inspect : len;

		want[nwant] = ref_message(s, seg, seglen, in + from, len);
		dead = want[nwant++].v == PD_V_DENY;
		if (insp < len) {
			seglen = 0;
			continue;
		}
		/* patterns are at most 40 bytes: the last ones are enough */
		for (size_t k = 0; k < len; k++) {
			if (seglen == sizeof(seg)) {
				memmove(seg, seg + 1, sizeof(seg) - 1);
				seglen--;
			}
			seg[seglen++] = in[from + k];
		}
	}
	return nwant;
}

/* Whether two lists of verdicts agree; 0, or the first message that
 * differs (1-based), or -1 when their numbers differ. */
static int verdicts_differ(const struct verdict *a, int na, const struct verdict *b, int nb)
{
	if (na != nb)
		return -1;
	for (int i = 0; i < na; i++)
		if (a[i].v != b[i].v || a[i].rule != b[i].rule ||
		    (a[i].v != PD_V_DENY && a[i].audit != b[i].audit))
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
		if (rnd(8) == 0)        /* longer than the dual walk's overlap */
			r->len = 17 + rnd(24);
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

/* s as a policy (its text in *text), compiled into *img; 0, or -1 after
 * a failed test point that shows why (nothing left to free). */
static int compile_spec(const struct spec *s, char **text, struct pd_policy *p,
			struct pd_image *img)
{
	struct pd_diag d = { 0 };
	int err = 0;

	*text = policy_text(s);
	if (pd_policy_load_string(*text, "random.conf", p, &d)) {
		err = -1;
	} else if (pd_compile(p, img, &d)) {
		pd_policy_free(p);
		err = -1;
	}
	if (err) {
		pd_diag_print(&d, stdout);
		ok(0, "random policy compiles");
		printf("# %s\n", *text);
		free(*text);
	}
	pd_diag_free(&d);
	return err;
}

static void free_spec(char *text, struct pd_policy *p, struct pd_image *img)
{
	pd_image_free(img);
	pd_policy_free(p);
	free(text);
}

static void dump_case(const char *text, const uint8_t *in, size_t len, const size_t *cuts,
		      int ncuts)
{
	printf("# policy:\n# %s\n# input:", text);
	for (size_t i = 0; i < len && i < 2048; i++)
		printf(" %02x", in[i]);
	if (len > 2048)
		printf(" ... (%zu bytes)", len);
	printf("\n# cuts:");
	for (int i = 0; i < ncuts; i++)
		printf(" %zu", cuts[i]);
	printf("\n");
}

#endif
