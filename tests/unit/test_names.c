// SPDX-License-Identifier: GPL-2.0-only
/*
 * The tables of names (names.c): every value of every enum has a word,
 * word and value map to each other both ways, an unknown word or value
 * is refused, and the parser reads each word a policy may give.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "tap.h"

/* Every value of t has a word, one of t's only, and it leads back. */
static void round_trip(const struct pd_names *t)
{
	unsigned bad = 0;

	for (unsigned v = t->lo; v < t->n; v++) {
		const char *w = pd_name(t, v);

		if (!t->name[v] || !strcmp(w, "?") || pd_value(t, w) != (int)v) {
			printf("#   %s %u: '%s' -> %d\n", t->what, v, t->name[v] ? w : "(no name)",
			       t->name[v] ? pd_value(t, w) : 0);
			bad++;
		}
	}
	ok(!bad && t->n > t->lo, "%s: each of the values %u to %u has a word that leads back",
	   t->what, t->lo, t->n - 1);
	is_str(pd_name(t, t->n), "?", "one past the last value has no word");
	is_str(pd_name(t, ~0u), "?", "nor has a value far out of range");
	if (t->lo)
		is_str(pd_name(t, t->lo - 1), "?", "nor the value below the first");
	ok(pd_value(t, "no-such-word") == -ENOENT && pd_value(t, "") == -ENOENT &&
	   pd_value(t, NULL) == -ENOENT, "%s: an unknown word is -ENOENT", t->what);
}

/* Each table has a slot for every value of its enum (the _MAX count):
 * an enum value added without a word leaves a hole round_trip finds. */
static void counts(void)
{
	static const struct { const struct pd_names *t; unsigned max; } c[] = {
		{ &pd_actions, PD_ACT_MAX }, { &pd_rule_actions, PD_ACT_MAX },
		{ &pd_defaults, PD_DEF_MAX }, { &pd_framings, PD_FRAME_MAX },
		{ &pd_directions, PD_DIR_BOTH + 1 }, { &pd_modes, PD_MODE_MAX },
		{ &pd_reloads, PD_RELOAD_MAX }, { &pd_verdicts, PD_V_MAX },
		{ &pd_troubles, PD_TR_MAX }, { &pd_match_keys, PD_KEY_MAX },
		{ &pd_on_exits, PD_ON_EXIT_MAX }, { &pd_fail_modes, PD_FAIL_MAX },
	};
	size_t n = 0;

	while (pd_all_names[n])
		n++;
	ok(n == sizeof(c) / sizeof(c[0]), "every table is in pd_all_names (%zu)", n);
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		ok(c[i].t->n == c[i].max, "%s: the table ends at its enum's end (%u)", c[i].t->what,
		   c[i].max);
}

static int load(const char *text, struct pd_policy *p, struct pd_diag *d)
{
	memset(p, 0, sizeof(*p));
	memset(d, 0, sizeof(*d));
	d->file = "t.conf";
	return pd_policy_load_string(text, "t.conf", p, d);
}

/* A service with one setting given as word w, and a rule (of key and
 * action given); returns the loaded policy's service in *p (0) or -1. */
static int service_with(const char *setting, const char *w, const char *rule,
			struct pd_policy *p)
{
	char text[1024];
	struct pd_diag d;
	int r;

	snprintf(text, sizeof(text), "version = 1;\nsinks = ({ name = \"q\"; file = \"/tmp/q\"; });\n"
		 "services = ({ name = \"s\"; ports = [ 1 ]; %s = \"%s\";\n  rules = ( %s ); });\n",
		 setting, w, rule);
	r = load(text, p, &d);
	for (size_t i = 0; r && i < d.n; i++)
		printf("#   %s\n", d.lines[i]);
	pd_diag_free(&d);
	return r;
}

/* The parser reads each word of t, given as the service's setting, to
 * its value (in the service's field at offset field). */
static void service_words(const struct pd_names *t, const char *setting, size_t field)
{
	struct pd_policy p;
	char rule[256];
	unsigned bad = 0;

	for (unsigned v = t->lo; v < t->n; v++) {
		/* a rule every framing takes */
		snprintf(rule, sizeof(rule), "{ id = 1; action = \"deny\"; %s = \"/x\"; }",
			 t == &pd_framings && v == PD_FRAME_HTTP ? "path_contains" : "contains");
		if (service_with(setting, pd_name(t, v), rule, &p)) {
			bad++;
			continue;
		}
		bad += *((const uint8_t *)&p.services[0] + field) != v;
		pd_policy_free(&p);
	}
	ok(!bad, "every %s word reads as its value", setting);
}

static void policy_words(void)
{
	struct pd_policy p;
	char rule[256];
	unsigned bad = 0;

	service_words(&pd_framings, "framing", offsetof(struct pd_service_src, framing));
	service_words(&pd_directions, "direction", offsetof(struct pd_service_src, dir));
	service_words(&pd_defaults, "default", offsetof(struct pd_service_src, def));
	for (unsigned v = pd_rule_actions.lo; v < pd_rule_actions.n; v++) {
		snprintf(rule, sizeof(rule), "{ id = 1; action = \"%s\"; contains = \"x\";%s }",
			 pd_name(&pd_rule_actions, v), v == PD_ACT_REDIRECT ? " sink = \"q\";" : "");
		if (service_with("framing", "none", rule, &p)) {
			bad++;
			continue;
		}
		bad += p.services[0].rules[0].action != v;
		pd_policy_free(&p);
	}
	ok(!bad, "every rule action word reads as its value");
}

/* A word that is not one: the message lists the table's words. */
static void refused_words(void)
{
	struct pd_policy p;
	struct pd_diag d;

	ok(load("version = 1;\nservices = ({ name = \"s\"; ports = [ 1 ]; framing = \"lines\"; });\n",
		&p, &d) && d.n == 1, "an unknown framing is refused");
	if (d.n)
		is_str(d.lines[0], "t.conf:2: 'framing' must be \"none\", \"line\", \"resp\", "
		       "\"memcache\" or \"http\", not \"lines\"; did you mean \"line\"?",
		       "... naming every framing and the closest");
	pd_diag_free(&d);
	ok(load("version = 1;\nservices = ({ name = \"s\"; ports = [ 1 ];\n rules = ({ id = 1; "
		"action = \"none\"; contains = \"x\"; }); });\n", &p, &d) && d.n == 1,
	   "action \"none\" is not one a rule may give");
	if (d.n)
		is_str(d.lines[0], "t.conf:3: 'action' must be \"audit\", \"allow\", \"redirect\" or "
		       "\"deny\", not \"none\"", "... and the message lists the four");
	pd_diag_free(&d);
	ok(load("version = 1;\nservices = ({ name = \"s\"; ports = [ 1 ];\n rules = ({ id = 1; "
		"action = \"deny\"; }); });\n", &p, &d) && d.n == 1, "a rule without a match");
	if (d.n)
		is_str(d.lines[0], "t.conf:3: rule has no match: give one of 'contains', 'prefix', "
		       "'hex_contains', 'hex_prefix', 'longer_than', 'command', 'method', "
		       "'path_prefix', 'path_contains', 'header', 'query_contains' or 'header_contains'", "... lists every match key");
	pd_diag_free(&d);
}

static void verdict_words(void)
{
	is_str(pd_verdict_word(PD_V_DENY, false), "deny", "a deny is \"deny\"");
	is_str(pd_verdict_word(PD_V_DENY, true), "would-deny", "... in monitor mode \"would-deny\"");
	is_str(pd_verdict_word(PD_V_REDIRECT, true), "would-redirect",
	       "a redirect in monitor mode is \"would-redirect\"");
	is_str(pd_verdict_word(PD_V_AUDIT, true), "audit", "an audit is one in monitor mode too");
	is_str(pd_verdict_word(PD_V_REFUSE, true), "refuse", "so is a refusal");
	is_str(pd_verdict_word(PD_V_MAX, true), "?", "a verdict out of range has no word");
	is_str(pd_on_exit_name(true), "keep", "on_exit keep");
	is_str(pd_fail_mode_name(true), "open", "fail_mode open");
	is_str(pd_mode_name(false), "enforce", "mode enforce");
}

int main(void)
{
	counts();
	for (size_t i = 0; pd_all_names[i]; i++)
		round_trip(pd_all_names[i]);
	policy_words();
	refused_words();
	verdict_words();
	return done_testing();
}
