/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel floor. Sockmap, tcp_bpf and the sk_msg helpers had bugs that
 * lost, duplicated or leaked bytes (cork, apply_bytes, pop/push, redirect
 * and socket teardown races) until the fixes that were complete in 6.13;
 * below that, policyd still runs where the features are present, but warns.
 */
#ifndef POLICYD_KERNEL_H
#define POLICYD_KERNEL_H

#include <stdbool.h>
#include <stdlib.h>

#define PD_KERNEL_FLOOR_MAJOR 6
#define PD_KERNEL_FLOOR_MINOR 13
#define PD_KERNEL_FLOOR "6.13"

/* Whether a uname release ("6.1.0-18-amd64", "6.13", "5.15.0") is older
 * than major.minor. A release that does not start with two numbers is
 * taken as older: it cannot be shown to have the fixes. */
static inline bool pd_release_below(const char *release, long major, long minor)
{
	char *end;
	long ma = strtol(release, &end, 10), mi;

	if (end == release || *end != '.')
		return true;
	release = end + 1;
	mi = strtol(release, &end, 10);
	if (end == release)
		return true;
	return ma < major || (ma == major && mi < minor);
}

#endif
