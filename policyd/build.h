/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The policy file in, the checked policy and its image out: the first
 * step of check, dump, test, run (at start and on each SIGHUP) and
 * reload (which checks a refused policy again to say why).
 */
#ifndef POLICYD_BUILD_H
#define POLICYD_BUILD_H

#include "policy.h"

/* Read file and compile it into p and img. Returns 0 (ms, if not NULL:
 * the time it took), or -1 with every error in d and p freed. */
int pd_policy_build(const char *file, struct pd_policy *p, struct pd_image *img,
		    struct pd_diag *d, double *ms);
/* The same for a command: every error printed on stderr. Returns
 * PD_EXIT_OK, or PD_EXIT_POLICY. */
int pd_load_and_compile(const char *file, struct pd_policy *p, struct pd_image *img,
			double *ms);

#endif
