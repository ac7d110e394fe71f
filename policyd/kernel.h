/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What policyd needs from the running kernel (kernel.c).
 *
 * Features: found out before the real load by loading a minimal program
 * (or creating a map) per feature: a helper or kfunc refused for the
 * program type that calls it is named in one sentence, instead of the
 * verifier's refusal of the whole object.
 *
 * The floor: sockmap, tcp_bpf and the sk_msg helpers had bugs that lost,
 * duplicated or leaked bytes (cork, apply_bytes, pop/push, redirect and
 * socket teardown races) until the fixes that were complete in 6.13;
 * below that, policyd still runs where the features are present, but
 * warns. The release tests are inline for the unit tests.
 */
#ifndef POLICYD_KERNEL_H
#define POLICYD_KERNEL_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bpf_object;

/* Probe every feature once (later calls return the first result).
 * Returns 0; -EOPNOTSUPP when a feature policyd cannot run without is
 * missing, *why the sentence that names it; or the -errno of a probe
 * that failed, *why saying what it probed for. */
int pd_probe(const char **why);
/* Before a load of obj: switch off the programs whose features are
 * missing (probing first if need be). Returns 0, or as pd_probe. */
int pd_probe_apply(struct bpf_object *obj, const char **why);
/* The i-th missing feature's sentence (what is missing and what the user
 * loses), or NULL after the last one. */
const char *pd_probe_missing(size_t i);
/* Whether the program of that name (in policyd.bpf.c) is loaded. */
bool pd_probe_loads(const char *program);
/* Whether the running kernel has SMC (AF_SMC): loaded, built in, or as a
 * module it would load on demand. Read from /proc and /lib/modules, so
 * that asking loads nothing. */
bool pd_kernel_has_smc(void);

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

/* The stable release of a kernel: major.minor.patch from the uname
 * release, or, where the release says .0 (Debian 12: "6.1.0-37-amd64"),
 * from the uname version ("#1 SMP ... Debian 6.1.187-1 (...)"). False if
 * the release does not start with major.minor. */
static inline bool pd_kernel_release(const char *release, const char *version,
				     long *major, long *minor, long *patch)
{
	char tag[32];
	const char *v;
	int n;

	*patch = 0;
	n = sscanf(release, "%ld.%ld.%ld", major, minor, patch);
	if (n < 2)
		return false;
	if (*patch || !version)
		return true;
	snprintf(tag, sizeof(tag), " %ld.%ld.", *major, *minor);
	for (v = strstr(version, tag); v; v = strstr(v + 1, tag))
		if (sscanf(v + strlen(tag), "%ld", patch) == 1 && *patch)
			break;
	return true;
}

/* Whether a kernel older than the floor is a stable release known to
 * carry every sockmap fix the floor stands for as backports: 6.1 from
 * 6.1.187 and 6.12 from 6.12.105 (the last of them, the cork and sk_redir
 * use-after-free fixes, came to those series then; README lists each fix
 * with the Debian version that brought it). */
static inline bool pd_stable_has_fixes(const char *release, const char *version)
{
	long ma, mi, pa;

	if (!pd_kernel_release(release, version, &ma, &mi, &pa))
		return false;
	return ma == 6 && ((mi == 12 && pa >= 105) || (mi == 1 && pa >= 187));
}

/* The warning for a running kernel below the floor that is not such a
 * stable release, or NULL. */
const char *pd_kernel_old(void);

#endif
