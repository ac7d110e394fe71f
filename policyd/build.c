// SPDX-License-Identifier: GPL-2.0-only
/*
 * Building a policy: read the policy file, check it and compile it into
 * the image the loader writes into the maps. Every command that takes a
 * policy file starts here, so that they all accept and refuse the same
 * files with the same messages.
 */
#include <stdio.h>
#include <time.h>

#include "build.h"
#include "cli.h"

int pd_policy_build(const char *file, struct pd_policy *p, struct pd_image *img,
		    struct pd_diag *d, double *ms)
{
	double t0 = pd_now_ms();

	if (pd_policy_load(file, p, d) || pd_compile(p, img, d)) {
		if (p->file)
			pd_policy_free(p);
		return -1;
	}
	if (ms)
		*ms = pd_now_ms() - t0;
	return 0;
}

int pd_load_and_compile(const char *file, struct pd_policy *p, struct pd_image *img,
			double *ms)
{
	struct pd_diag d = { 0 };
	int ret = PD_EXIT_OK;

	if (pd_policy_build(file, p, img, &d, ms)) {
		pd_diag_print(&d, stderr);
		ret = PD_EXIT_POLICY;
	}
	pd_diag_free(&d);
	return ret;
}
