/* Minimal TAP producer for the unit tests (read by prove). */
#ifndef PD_TAP_H
#define PD_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

static inline __attribute__((format(printf, 2, 3))) int ok(int cond, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("%s %d - %s\n", cond ? "ok" : "not ok", ++tap_n, msg);
	/* a "# TODO" test is a known failure: reported, not counted */
	if (!cond && !strstr(msg, "# TODO"))
		tap_failed++;
	return cond;
}

static inline int is_str(const char *got, const char *want, const char *name)
{
	int r = ok(got && want && !strcmp(got, want), "%s", name);

	if (!r)
		printf("#   got:  '%s'\n#   want: '%s'\n", got ? got : "(null)", want ? want : "(null)");
	return r;
}

static inline int done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
