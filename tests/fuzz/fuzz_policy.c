// SPDX-License-Identifier: GPL-2.0-only
/* libFuzzer target: any bytes through parse + compile must neither crash
 * nor leak, and a policy that loads must compile or explain why not. */
#include <stdlib.h>
#include <string.h>

#include "policy.h"

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
			pd_image_free(&img);
		}
		pd_policy_free(&p);
	}
	pd_diag_free(&d);
	free(text);
	return 0;
}
