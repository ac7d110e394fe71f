// SPDX-License-Identifier: GPL-2.0-only
/*
 * Differential test, three ways: the naive reference matcher, pd_walk,
 * and the kernel's fast path (bpf/pd_scan.h: the skip loops, the dual
 * walk, small_walk, windows and callbacks) compiled for the host and
 * driven as pd_msg drives it (policyd/judge.c), on random policies and
 * random streams cut into random sends. Inputs run up to a few windows
 * (PD_WINDOW), with patterns and cuts planted at and around the edges of
 * windows, skip blocks, dual walks and fast blocks; each send's first
 * scatterlist element has a random length (small_walk reads only that);
 * pulls sometimes leave data_end past the window, and sometimes stop
 * short of it where an element ends; the policy slot is laid
 * out as the loader does, or without headroom, or with wider rows.
 *
 * PD_SCAN_SEED=N picks another seed; PD_SCAN_ROUNDS=N runs longer.
 */
#include "policy.h"
#include "judge.h"
#include "tap.h"
#include "ref.h"

#define MAX_IN (3 * 4096 + 700)
#define MAX_MSGS 4096

/* Bytes none of the random patterns has: the fast path passes over them. */
static const uint8_t filler[] = "xyz0123456789-.:;XYZ";

/* Offsets where the fast path changes gear: window ends, skip blocks
 * (64 words), dual walks (128 bytes), fast blocks (32), small sends
 * (128). */
static size_t edge(size_t len)
{
	static const size_t unit[] = { 4096, 512, 128, 64, 32, 8 };
	size_t u = unit[rnd(sizeof(unit) / sizeof(unit[0]))], at;

	if (len < u)
		return rnd((uint32_t)len + 1);
	at = u * (1 + rnd((uint32_t)(len / u)));
	at = at + rnd(9) - 4 + 0u;
	return at > len ? len : at;
}

static size_t random_input(const struct spec *s, uint8_t *in)
{
	uint32_t kind = rnd(4), dense = rnd(3);
	size_t len = kind == 0 ? rnd(64) : kind == 1 ? 64 + rnd(600) :
		     kind == 2 ? 100 + rnd(300) : rnd(MAX_IN - 16);

	for (size_t i = 0; i < len; i++)
		in[i] = rnd(dense ? 64 / dense : 4) ? filler[rnd(sizeof(filler) - 1)] :
			alphabet[rnd(sizeof(alphabet))];
	/* patterns at random places and at edges, maybe in another case */
	for (uint32_t n = rnd(6); n && len > 8; n--) {
		const struct rule *pr = &s->r[rnd((uint32_t)s->n)];
		size_t at = rnd(2) ? edge(len) : rnd((uint32_t)len);

		if (pr->kind == PD_M_LONGER_THAN)
			continue;
		if (rnd(2) && at >= pr->len)
			at -= pr->len;  /* ending at the edge, or starting there */
		for (size_t k = 0; k < pr->len && at + k < len; k++)
			in[at + k] = rnd(2) && isalpha(pr->pat[k]) ? (uint8_t)(pr->pat[k] ^ 0x20) :
				     pr->pat[k];
	}
	if (s->framing == PD_FRAME_LINE && s->def != PD_DEF_DENY && rnd(4) == 0) {
		/* one long line, longer than a hold can keep (an allow list
		 * refuses such a line at once: not the reference's verdict) */
		for (size_t i = 0; i < len; i++)
			if (in[i] == '\n')
				in[i] = 'x';
	}
	if (s->framing == PD_FRAME_LINE || !len)
		in[len++] = '\n';       /* a send is never empty */
	return len;
}

/* For the gram filter of stride gs: one send of quiet filler with one
 * pattern placed at or near where a block of the filter's tests ends
 * (PD_GRAM_TESTS strides from the send's start, or two or three blocks),
 * maybe in another case. */
static size_t gram_edge_input(const struct spec *s, uint32_t gs, uint8_t *in)
{
	size_t len = 4 * PD_GRAM_TESTS * gs + 64, at;
	const struct rule *pr;

	do
		pr = &s->r[rnd((uint32_t)s->n)];
	while (pr->kind != PD_M_CONTAINS);
	for (size_t i = 0; i < len; i++)
		in[i] = filler[rnd(sizeof(filler) - 1)];
	at = (1 + rnd(3)) * PD_GRAM_TESTS * gs + rnd(2 * gs + 6) - gs - 3;
	for (size_t k = 0; k < pr->len; k++)
		in[at + k] = rnd(2) && isalpha(pr->pat[k]) ? (uint8_t)(pr->pat[k] ^ 0x20) :
			     pr->pat[k];
	return len;
}

/* Where the stream is cut into sends: no empty send (the program never
 * sees one). */
static int random_cuts(size_t len, size_t *cuts)
{
	int n = (int)rnd(rnd(4) ? 8 : 24), m = 0;

	for (int i = 0; i < n; i++)
		cuts[i] = rnd(2) ? edge(len) : rnd((uint32_t)len + 1);
	for (int i = 1; i < n; i++)     /* sort */
		for (int k = i; k && cuts[k - 1] > cuts[k]; k--) {
			size_t x = cuts[k];

			cuts[k] = cuts[k - 1];
			cuts[k - 1] = x;
		}
	for (int i = 0; i < n; i++)
		if (cuts[i] && cuts[i] < len && (!m || cuts[m - 1] != cuts[i]))
			cuts[m++] = cuts[i];
	return m;
}

struct collect {
	struct verdict *v;
	int n;
	int other;              /* events within a message, held, unfinished */
};

static void collect(const struct pd_judged *j, const uint8_t *stream, void *arg)
{
	struct collect *c = arg;

	if (j->kind != PD_J_DECIDED) {
		c->other++;
		return;
	}
	if (c->n < MAX_MSGS)
		c->v[c->n++] = (struct verdict){ .v = j->verdict, .rule = j->rule, .audit = j->audit,
						 .state = j->state };
}

/* The fast path's verdicts, or -1 when it failed. */
static int fast_verdicts(struct pd_image *img, const uint8_t *in, size_t inlen, const size_t *cuts,
			 int ncuts, struct verdict *got, int *other)
{
	struct collect c = { .v = got };
	uint32_t states = 0, width = 0, g = rnd(3);
	struct pd_judge *j;
	int r = 0;

	if (g == 1) {           /* no headroom: the table's last rows are read */
		states = img->nstates;
		width = img->row_width;
	} else if (g == 2) {
		states = img->nstates + rnd(300);
		width = img->row_width < 256 && rnd(2) ? 256 : img->row_width;
	}
	j = pd_judge_new(img, 0, false, states, width);
	if (!j)
		return -1;
	if (rnd(3) == 0)
		pd_judge_set_slack(j, rnd(2) ? 1 + rnd(16) : 4096);
	/* windows cut short where a scatterlist element ends (elements
	 * long enough for a send to stay within PD_MAX_WINDOWS windows) */
	if (rnd(3) == 0)
		pd_judge_set_piece(j, 128 + (rnd(2) ? rnd(64) : rnd(8192)));
	for (int k = 0; k <= ncuts && r == 0; k++) {
		size_t from = k ? cuts[k - 1] : 0, to = k < ncuts ? cuts[k] : inlen;
		uint32_t len = (uint32_t)(to - from), elems[2];

		/* the first element: the whole send, or a random part */
		elems[0] = len && rnd(2) ? 1 + rnd(len) : len;
		elems[1] = len - elems[0];
		r = pd_judge_send(j, in + from, len, elems, elems[1] ? 2 : 1, collect, &c);
	}
	pd_judge_end(j, collect, &c);
	pd_judge_free(j);
	*other = c.other;
	return r < 0 ? -1 : c.n;
}

static void dump_verdicts(const char *who, const struct verdict *v, int n)
{
	printf("# %s:", who);
	for (int i = 0; i < n && i < 40; i++)
		printf(" %u/%u/%u@%u", v[i].v, v[i].rule, v[i].audit, v[i].state);
	printf("\n");
}

int main(void)
{
	const char *e = getenv("PD_SCAN_SEED");
	long rounds = getenv("PD_SCAN_ROUNDS") ? atol(getenv("PD_SCAN_ROUNDS")) : 1000;
	long cases = 0, failures = 0, msgs = 0, denied = 0, events = 0, longest = 0, grams = 0,
	     gram_edges = 0;
	static struct verdict ref[MAX_MSGS], walk[MAX_MSGS], fast[MAX_MSGS];
	static uint8_t in[MAX_IN];

	if (e)
		rng = strtoull(e, NULL, 0) | 1;
	for (long round = 0; round < rounds && failures < 3; round++) {
		struct spec s;
		struct pd_policy p;
		struct pd_image img;
		char *text;

		random_spec(&s);
		/* pd_msg applies longer_than rules to a line in progress at each
		 * send's end, and decides a line when its inspect window is done:
		 * the deciding rule then depends on where the sends are cut,
		 * which the reference does not model */
		for (int i = 0; s.framing == PD_FRAME_LINE && i < s.n; i++)
			if (s.r[i].kind == PD_M_LONGER_THAN)
				s.r[i].kind = PD_M_CONTAINS;
		if (rnd(2)) {
			/* a pattern that outlasts the dual walk's overlap */
			struct rule *r = &s.r[rnd((uint32_t)s.n)];

			r->len = 24 + rnd(17);
			for (size_t k = 0; k < r->len; k++)
				r->pat[k] = alphabet[rnd(sizeof(alphabet))];
		}
		if (s.framing == PD_FRAME_NONE && rnd(2) == 0) {
			/* patterns of 5 bytes or more, many of them: the gram
			 * filter's services (compile.c's gram_set) */
			for (int i = 0; i < s.n; i++) {
				struct rule *r = &s.r[i];

				if (r->kind == PD_M_LONGER_THAN)
					r->kind = PD_M_CONTAINS;
				while (r->len < 5 + rnd(8))
					r->pat[r->len++] = alphabet[rnd(sizeof(alphabet))];
			}
			while (s.n < 6) {
				struct rule *r = &s.r[s.n++];

				*r = s.r[0];
				for (size_t k = 0; k < r->len; k++)
					r->pat[k] = alphabet[rnd(sizeof(alphabet))];
			}
		}
		for (int i = 0; i < s.n; i++)
			if (s.inspect && s.r[i].kind != PD_M_LONGER_THAN && s.inspect < s.r[i].len)
				s.inspect = (uint32_t)s.r[i].len;
		if (compile_spec(&s, &text, &p, &img)) {
			failures++;
			continue;
		}
		g_img = &img;
		for (int t = 0; t < 6; t++) {
			uint32_t gs = img.services[0].svc.gstride;
			int edge = gs && rnd(2);
			size_t len = edge ? gram_edge_input(&s, gs, in) : random_input(&s, in), cuts[32];
			int ncuts = edge ? 0 : random_cuts(len, cuts), other = 0;
			int nref = ref_verdicts(&s, in, len, cuts, ncuts, ref, MAX_MSGS);
			int nwalk = walk_verdicts(&s, &img, in, len, cuts, ncuts, walk, MAX_MSGS);
			int nfast = fast_verdicts(&img, in, len, cuts, ncuts, fast, &other);
			int bad = nwalk < 0 ? -2 : verdicts_differ(walk, nwalk, ref, nref);

			if (!bad)
				bad = nfast < 0 ? -3 : verdicts_differ(fast, nfast, ref, nref);
			/* the fast path goes on from where pd_walk does; but the
			 * gram filter leaves the resume state where pd_walk may
			 * be in a prefix that cannot complete (the verdicts of
			 * the messages after it tell whether it could) */
			for (int i = 0; !bad && i < nfast; i++)
				if (fast[i].v != PD_V_DENY && fast[i].state != walk[i].state &&
				    !(img.services[0].svc.gstride &&
				      fast[i].state == img.services[0].svc.resume))
					bad = i + 1;
			cases++;
			grams += gs != 0;
			gram_edges += edge;
			msgs += nref;
			events += other;
			denied += nref && ref[nref - 1].v == PD_V_DENY;
			longest = (long)len > longest ? (long)len : longest;
			if (bad) {
				failures++;
				ok(0, "reference, pd_walk and the fast path agree (round %ld, %s %d)",
				   round, bad == -2 ? "pd_walk failed" : bad == -3 ? "the fast path failed" :
				   "message", bad);
				dump_case(text, in, len, cuts, ncuts);
				dump_verdicts("reference", ref, nref);
				dump_verdicts("pd_walk", walk, nwalk);
				dump_verdicts("fast path", fast, nfast);
				break;
			}
		}
		free_spec(text, &p, &img);
	}
	ok(failures == 0, "reference, pd_walk and the fast path agree on %ld random streams over "
	   "%ld policies (%ld messages, %ld streams ended by a deny, %ld other events, up to %ld "
	   "bytes)", cases, rounds, msgs, denied, events, longest);
	ok(grams * 20 >= cases, "the gram filter was on in %ld of them (%ld with a pattern at "
	   "an end of a block of its tests)", grams, gram_edges);
	return done_testing();
}
