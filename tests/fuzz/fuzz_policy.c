// SPDX-License-Identifier: GPL-2.0-only
/* libFuzzer target: any bytes through parse + compile must neither crash
 * nor leak, and a policy that loads must compile or explain why not. The
 * same bytes then go through the parser of each protocol-framed service
 * of the policy, as a stream of messages, and so does what follows each
 * comment that opens with a newline (the dictionary has the framings'
 * words, so that inputs reach them; tests/fuzz/http-*.conf hold
 * requests in such comments). The parsers' shortcut for bytes that are
 * their own symbol (pd_proto_quick) must agree with them byte for byte. */
#include <stdlib.h>
#include <string.h>

#include "policy.h"

static const struct pd_image *g_img;

static const __u32 *row_of(__u32 st)
{
	return st < g_img->nstates ? &g_img->trans[(size_t)st * g_img->row_width] : NULL;
}

static const struct pd_state_out *out_of(__u32 st)
{
	return st < g_img->nstates ? &g_img->outs[st] : NULL;
}

#define PD_ROW(ctx, st) row_of(st)
#define PD_OUT(ctx, st) out_of(st)
#define PD_ROW_MASK(ctx) (g_img->row_width - 1)
#include "proto.h"
#include "../unit/quick_check.h"

/* data as a stream of messages through service i's parser and automaton */
static void walk(const struct pd_image *img, size_t i, const uint8_t *data, size_t size)
{
	const struct pd_service *svc = &img->services[i].svc;
	const struct pd_classmap *cm = &img->services[i].classes;
	struct pd_parse ps = { 0 };
	struct pd_match m;
	size_t at = 0;
	int done;

	g_img = img;
	pd_begin(&m, svc, NULL);
	while (at < size) {
		long k = pd_proto_walk(&ps, &m, svc, cm, data + at, (__u32)(size - at), &done, NULL);

		if (k <= 0 || done < 0)
			return;
		at += (size_t)k;
		if (done > 0 || m.deny) {
			memset(&ps, 0, sizeof(ps));
			pd_begin(&m, svc, NULL);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pd_policy p;
	struct pd_image img;
	struct pd_diag d = { 0 };
	char *text;

	if (size > 65536)
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	if (!pd_policy_load_string(text, "fuzz.conf", &p, &d)) {
		if (!pd_compile(&p, &img, &d)) {
			FILE *null = fopen("/dev/null", "w");

			pd_dump_text(null, &p, &img);
			pd_dump_json(null, &p, &img);
			fclose(null);
			for (uint32_t i = 0; i < img.nservices; i++) {
				const uint8_t *c = data;
				long taken = 0;

				if (!PD_FRAME_IS_PROTO(img.services[i].svc.framing))
					continue;
				walk(&img, i, data, size);
				if (quick_disagreement(data, size, img.services[i].svc.framing,
						       &taken) < size)
					abort();
				/* and what each comment "/" "*\n" holds: a request
				 * the policy's rules were written for */
				while ((c = memmem(c, size - (size_t)(c - data), "/*\n", 3))) {
					c += 3;
					walk(&img, i, c, size - (size_t)(c - data));
				}
			}
			pd_image_free(&img);
		}
		pd_policy_free(&p);
	}
	pd_diag_free(&d);
	free(text);
	return 0;
}
