// SPDX-License-Identifier: GPL-2.0-only
/*
 * The words of every enum a user reads or writes: in the policy file, in
 * dump, test and stats output, in log lines. One table per enum, indexed
 * by value; the parser looks a word up, the printers a value.
 */
#include <errno.h>
#include <string.h>

#include "policy.h"

#define NAMES(t, w, first, count) { .what = (w), .name = (t), .lo = (first), .n = (count) }

static const char *const action[PD_ACT_MAX] = {
	[PD_ACT_NONE] = "none",
	[PD_ACT_AUDIT] = "audit",
	[PD_ACT_ALLOW] = "allow",
	[PD_ACT_REDIRECT] = "redirect",
	[PD_ACT_DENY] = "deny",
};
const struct pd_names pd_actions = NAMES(action, "action", 0, PD_ACT_MAX);
/* a rule always does something: no "none" in a policy */
const struct pd_names pd_rule_actions = NAMES(action, "action", PD_ACT_AUDIT, PD_ACT_MAX);

static const char *const def[PD_DEF_MAX] = {
	[PD_DEF_ALLOW] = "allow",
	[PD_DEF_DENY] = "deny",
	[PD_DEF_AUDIT] = "audit",
};
const struct pd_names pd_defaults = NAMES(def, "default", 0, PD_DEF_MAX);

static const char *const framing[PD_FRAME_MAX] = {
	[PD_FRAME_NONE] = "none",
	[PD_FRAME_LINE] = "line",
	[PD_FRAME_RESP] = "resp",
	[PD_FRAME_MEMCACHE] = "memcache",
	[PD_FRAME_HTTP] = "http",
};
const struct pd_names pd_framings = NAMES(framing, "framing", 0, PD_FRAME_MAX);

/* a bit mask: both is the two bits */
static const char *const direction[PD_DIR_BOTH + 1] = {
	[PD_DIR_TO] = "to",
	[PD_DIR_FROM] = "from",
	[PD_DIR_BOTH] = "both",
};
const struct pd_names pd_directions = NAMES(direction, "direction", PD_DIR_TO, PD_DIR_BOTH + 1);

static const char *const mode[PD_MODE_MAX] = {
	[PD_MODE_ENFORCE] = "enforce",
	[PD_MODE_MONITOR] = "monitor",
};
const struct pd_names pd_modes = NAMES(mode, "mode", 0, PD_MODE_MAX);

static const char *const reload[PD_RELOAD_MAX] = {
	[PD_RELOAD_NONE] = "none",
	[PD_RELOAD_OK] = "ok",
	[PD_RELOAD_REFUSED] = "refused",
};
const struct pd_names pd_reloads = NAMES(reload, "last reload", 0, PD_RELOAD_MAX);

static const char *const verdict[PD_V_MAX] = {
	[PD_V_PASS] = "pass",
	[PD_V_AUDIT] = "audit",
	[PD_V_REDIRECT] = "redirect",
	[PD_V_DENY] = "deny",
	[PD_V_REFUSE] = "refuse",
	[PD_V_UNJUDGED] = "unjudged",
};
const struct pd_names pd_verdicts = NAMES(verdict, "verdict", 0, PD_V_MAX);

/* what monitor mode did instead: nothing */
static const char *const would[PD_V_MAX] = {
	[PD_V_REDIRECT] = "would-redirect",
	[PD_V_DENY] = "would-deny",
};

static const char *const trouble[PD_TR_MAX] = {
	[PD_TR_SOCKHASH_BUSY] = "sockhash_busy",
	[PD_TR_SOCKHASH_FULL] = "sockhash_refused",
	[PD_TR_NO_STATE] = "no_state",
	[PD_TR_TABLES] = "tables",
	[PD_TR_RINGBUF] = "events_lost",
	[PD_TR_HELD] = "held",
	[PD_TR_CONCURRENT] = "concurrent",
	[PD_TR_CUT] = "cut_short",
	[PD_TR_UNJUDGED] = "unjudged",
	[PD_TR_UNMAPPED] = "unmapped",
	[PD_TR_OOB] = "oob",
	[PD_TR_MPTCP] = "mptcp",
	[PD_TR_FASTOPEN] = "fastopen",
	[PD_TR_KTLS] = "ktls",
	[PD_TR_RESYNC] = "resync",
	[PD_TR_HOLD_FULL] = "hold_full",
	[PD_TR_HOLD_TIMEOUT] = "hold_timeout",
	[PD_TR_ABORTS] = "aborts",
	[PD_TR_ABORT_FULL] = "abort_full",
	[PD_TR_MALFORMED] = "malformed",
	[PD_TR_CLOSED_HELD] = "closed_held",
};
const struct pd_names pd_troubles = NAMES(trouble, "trouble", 0, PD_TR_MAX);

static const char *const match_key[PD_KEY_MAX] = {
	[PD_KEY_CONTAINS] = "contains",
	[PD_KEY_PREFIX] = "prefix",
	[PD_KEY_HEX_CONTAINS] = "hex_contains",
	[PD_KEY_HEX_PREFIX] = "hex_prefix",
	[PD_KEY_LONGER_THAN] = "longer_than",
	[PD_KEY_COMMAND] = "command",
	[PD_KEY_METHOD] = "method",
	[PD_KEY_PATH_PREFIX] = "path_prefix",
	[PD_KEY_PATH_CONTAINS] = "path_contains",
	[PD_KEY_HEADER] = "header",
	[PD_KEY_QUERY_CONTAINS] = "query_contains",
	[PD_KEY_HEADER_CONTAINS] = "header_contains",
};
const struct pd_names pd_match_keys = NAMES(match_key, "match", 0, PD_KEY_MAX);

static const char *const on_exit[PD_ON_EXIT_MAX] = {
	[PD_ON_EXIT_DETACH] = "detach",
	[PD_ON_EXIT_KEEP] = "keep",
};
const struct pd_names pd_on_exits = NAMES(on_exit, "on_exit", 0, PD_ON_EXIT_MAX);

static const char *const fail_mode[PD_FAIL_MAX] = {
	[PD_FAIL_CLOSED] = "closed",
	[PD_FAIL_OPEN] = "open",
};
const struct pd_names pd_fail_modes = NAMES(fail_mode, "fail_mode", 0, PD_FAIL_MAX);

const struct pd_names *const pd_all_names[] = {
	&pd_actions, &pd_rule_actions, &pd_defaults, &pd_framings, &pd_directions, &pd_modes,
	&pd_reloads, &pd_verdicts, &pd_troubles, &pd_match_keys, &pd_on_exits, &pd_fail_modes,
	NULL,
};

const char *pd_name(const struct pd_names *t, unsigned v)
{
	return v >= t->lo && v < t->n && t->name[v] ? t->name[v] : "?";
}

int pd_value(const struct pd_names *t, const char *name)
{
	for (unsigned v = t->lo; name && v < t->n; v++)
		if (t->name[v] && !strcmp(t->name[v], name))
			return (int)v;
	return -ENOENT;
}

void pd_names_list(const struct pd_names *t, char q, char *out, size_t cap)
{
	size_t o = 0;

	if (!cap)
		return;
	out[0] = '\0';
	for (unsigned v = t->lo; v < t->n && o < cap; v++) {
		bool last = v + 1 == t->n;

		o += (size_t)snprintf(out + o, cap - o, "%s%c%s%c",
				      v == t->lo ? "" : last ? " or " : ", ", q, t->name[v], q);
	}
}

const char *pd_names_closest(const struct pd_names *t, const char *word)
{
	const char *list[64];
	size_t k = 0;

	for (unsigned v = t->lo; v < t->n && k + 1 < sizeof(list) / sizeof(list[0]); v++)
		list[k++] = t->name[v];
	list[k] = NULL;
	return pd_closest(word, list);
}

const char *pd_action_name(unsigned a)
{
	return pd_name(&pd_actions, a);
}

const char *pd_default_name(unsigned d)
{
	return pd_name(&pd_defaults, d);
}

const char *pd_framing_name(unsigned f)
{
	return pd_name(&pd_framings, f);
}

const char *pd_direction_name(unsigned d)
{
	return pd_name(&pd_directions, d);
}

const char *pd_trouble_name(unsigned t)
{
	return pd_name(&pd_troubles, t);
}

const char *pd_verdict_word(unsigned v, bool monitor)
{
	if (monitor && v < PD_V_MAX && would[v])
		return would[v];
	return pd_name(&pd_verdicts, v);
}

const char *pd_on_exit_name(bool keep)
{
	return pd_name(&pd_on_exits, keep ? PD_ON_EXIT_KEEP : PD_ON_EXIT_DETACH);
}

const char *pd_fail_mode_name(bool open)
{
	return pd_name(&pd_fail_modes, open ? PD_FAIL_OPEN : PD_FAIL_CLOSED);
}

const char *pd_mode_name(bool monitor)
{
	return pd_name(&pd_modes, monitor ? PD_MODE_MONITOR : PD_MODE_ENFORCE);
}
