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

	static const struct { const char *release, *version; bool fixed; } stable[] = {
		{ "6.1.0-44-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-10-02)", true },
		{ "6.1.0-40-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.186-1 (2026-08-02)", false },
		{ "6.1.187", "#1 SMP", true },
		{ "6.12.118+deb13-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.12.118-1", true },
		{ "6.12.104", "#1 SMP", false },
		{ "6.12.105", "#1 SMP", true },
		{ "6.6.130", "#1 SMP", false },
		{ "6.1.0-44-amd64", "#1 SMP PREEMPT_DYNAMIC", false },    /* no stable release */
		{ "garbage", "#1", false },
	};

	for (size_t i = 0; i < sizeof(stable) / sizeof(stable[0]); i++)
		ok(pd_stable_has_fixes(stable[i].release, stable[i].version) == stable[i].fixed,
		   "\"%s\" (\"%s\"): %s", stable[i].release, stable[i].version,
		   stable[i].fixed ? "a stable release with every sockmap fix, no warning" :
		   "not known to have every sockmap fix");
	return done_testing();
}
