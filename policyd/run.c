// SPDX-License-Identifier: GPL-2.0-only
/* `policyd run` and `policyd stats`: the data plane arrives in a later change. */
#include <stdio.h>

#include "cli.h"

int pd_cmd_run(const struct pd_opts *o)
{
	(void)o;
	fprintf(stderr, "policyd run: this build has no data plane yet\n");
	return PD_EXIT_RUNTIME;
}

int pd_cmd_stats(const struct pd_opts *o)
{
	(void)o;
	fprintf(stderr, "policyd stats: this build has no data plane yet\n");
	return PD_EXIT_RUNTIME;
}
