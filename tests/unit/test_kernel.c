// SPDX-License-Identifier: GPL-2.0-only
/* The kernel floor: which uname releases policyd warns about. */
#include "kernel.h"
#include "tap.h"

int main(void)
{
	static const struct { const char *release; bool below; } cases[] = {
		{ "6.1.0-18-amd64", true },     /* Debian 12's kernel */
		{ "5.15.0-91-generic", true },
		{ "6.12.9", true },
		{ "6.13", false },
		{ "6.13.0-rc1", false },
		{ "6.18.0-1-cloud-amd64", false },
		{ "7.0.0", false },
		{ "10.2", false },
		{ "6", true },
		{ "", true },
		{ "garbage", true },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ok(pd_release_below(cases[i].release, PD_KERNEL_FLOOR_MAJOR,
				    PD_KERNEL_FLOOR_MINOR) == cases[i].below,
		   "\"%s\" is %s " PD_KERNEL_FLOOR, cases[i].release,
		   cases[i].below ? "below" : "at or above");
	return done_testing();
}
