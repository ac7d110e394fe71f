// SPDX-License-Identifier: GPL-2.0-only
/*
 * Differential test: the automaton walk that the BPF program runs
 * (bpf/pd_match.h over a compiled image) against a naive reference
 * matcher, over many random pattern sets and inputs fed in random pieces.
 *
 * PD_MATCH_SEED=N picks another seed; PD_MATCH_ROUNDS=N runs longer.
 */
#include "policy.h"
#include "tap.h"
#include "ref.h"

static int run_case(const struct spec *s, const struct pd_image *img, const uint8_t *in,
		    size_t inlen, const size_t *cuts, int ncuts)
{
	struct verdict got[128], want[128];
	int ngot = walk_verdicts(s, img, in, inlen, cuts, ncuts, got, 128);
	int nwant = ref_verdicts(s, in, inlen, cuts, ncuts, want, 128);

	return ngot < 0 ? -1 : verdicts_differ(got, ngot, want, nwant);
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
		char *text;

		random_spec(&s);
		if (compile_spec(&s, &text, &p, &img)) {
			failures++;
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
				size_t at = pr->len < len ? rnd((uint32_t)(len - pr->len)) : 0;

				for (size_t k = 0; k < pr->len && at + k < len &&
				     pr->kind != PD_M_LONGER_THAN; k++)
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
		free_spec(text, &p, &img);
	}
	ok(failures == 0, "walk and reference agree on %ld random inputs over %ld policies",
	   cases, rounds);
	word_tests(200000);
	return done_testing();
}
