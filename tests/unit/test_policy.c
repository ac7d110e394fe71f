// SPDX-License-Identifier: GPL-2.0-only
/*
 * Validation: every class of error gives the exact "FILE:LINE: message",
 * all errors are reported (not only the first), and good policies load
 * with the values and defaults the manual promises.
 */
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "tap.h"

#define HEAD "version = 1;\n"
/* a service whose rules are given on line 3 onwards */
#define SVC(rules) HEAD "services = ({ name = \"s\"; ports = [ 1 ];\n  rules = (\n" rules "\n); });\n"

struct bad {
	const char *name;
	const char *text;
	const char *want[3];    /* every expected line, in order */
};

static const struct bad bad[] = {
	{ "syntax error", HEAD "services = (\n  { name = \"s\" \n", { "t.conf:4: syntax error" } },
	{ "no version", "services = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:1: the policy has no 'version'; this is version 1: add 'version = 1;'" } },
	{ "wrong version", "\nversion = 2;\nservices = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:2: unsupported policy version: this policyd reads version 1" } },
	{ "version type", "version = \"1\";\nservices = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:1: unsupported policy version (not an integer): this policyd reads version 1" } },
	{ "unknown top-level key", HEAD "servics = ();\nservices = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:2: unknown setting 'servics' in the policy; did you mean 'services'?" } },
	{ "no services", HEAD, { "t.conf:1: the policy has no 'services': nothing would be policed" } },
	{ "empty services", HEAD "services = ();\n",
	  { "t.conf:2: 'services' is empty: nothing would be policed" } },
	{ "services not a list", HEAD "services = 5;\n",
	  { "t.conf:2: 'services' must be a list ( ... ), not an integer" } },
	{ "daemon unknown key", HEAD "daemon = {\n  usr = \"x\";\n};\nservices = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:3: unknown setting 'usr' in daemon; did you mean 'user'?" } },
	{ "daemon relative path", HEAD "daemon = { pin_dir = \"bpf\"; };\nservices = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:2: 'pin_dir' must be an absolute path, not \"bpf\"" } },
	{ "daemon on_exit", HEAD "daemon = { on_exit = \"stay\"; };\nservices = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:2: 'on_exit' must be \"detach\" or \"keep\", not \"stay\"" } },
	{ "daemon excerpt range", HEAD "daemon = {\n excerpt = 300; };\nservices = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:3: 'excerpt' must be from 0 to 256, not 300" } },
	{ "daemon log_rate type", HEAD "daemon = { log_rate = 1.5; };\nservices = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:2: 'log_rate' must be an integer, not a number with a fraction" } },
	{ "daemon user", HEAD "daemon = { user = \"a b\"; };\nservices = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:2: 'user' must name an account, not \"a b\"" } },
	{ "sink without file", HEAD "sinks = (\n { name = \"q\"; }\n);\nservices = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:3: sink has no 'file'" } },
	{ "duplicate sink", HEAD "sinks = ({ name = \"q\"; file = \"/a\"; },\n { name = \"q\"; file = \"/b\"; });\n"
	  "services = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:3: sink \"q\" is already defined at line 2" } },
	{ "service without name and ports", HEAD "services = (\n { direction = \"to\"; });\n",
	  { "t.conf:3: service has no 'name'", "t.conf:3: service has no 'ports'" } },
	{ "bad service name", HEAD "services = ({ name = \"a b\"; ports = [1]; });\n",
	  { "t.conf:2: 'name' may hold only letters, digits, '-', '_' and '.', not \"a b\"" } },
	{ "duplicate service", HEAD "services = ({ name = \"s\"; ports = [1]; },\n{ name = \"s\"; ports = [2]; });\n",
	  { "t.conf:3: service \"s\" is already defined at line 2" } },
	{ "port zero", HEAD "services = ({ name = \"s\";\n ports = [ 0 ]; });\n", { "t.conf:3: ports are from 1 to 65535" } },
	{ "port too big", HEAD "services = ({ name = \"s\"; ports = [ \"1-70000\" ]; });\n",
	  { "t.conf:2: ports are from 1 to 65535" } },
	{ "port range backwards", HEAD "services = ({ name = \"s\"; ports = [ \"9-3\" ]; });\n",
	  { "t.conf:2: port range \"9-3\" runs backwards" } },
	{ "port range syntax", HEAD "services = ({ name = \"s\"; ports = [ \"80:90\" ]; });\n",
	  { "t.conf:2: a port range is written \"A-B\", not \"80:90\"" } },
	{ "port type", HEAD "services = ({ name = \"s\"; ports = ( true ); });\n",
	  { "t.conf:2: a port must be an integer or a range \"A-B\", not true or false" } },
	{ "empty ports", HEAD "services = ({ name = \"s\"; ports = [ ]; });\n", { "t.conf:2: 'ports' is empty" } },
	{ "port claimed twice", HEAD "services = ({ name = \"a\"; ports = [ \"10-20\" ]; },\n"
	  "{ name = \"b\"; direction = \"both\"; ports = [ 15 ]; });\n",
	  { "t.conf:3: port 15 (direction \"to\") is already claimed by service \"a\" at line 2" } },
	{ "bad direction", HEAD "services = ({ name = \"s\"; ports = [1]; direction = \"in\"; });\n",
	  { "t.conf:2: 'direction' must be \"to\", \"from\" or \"both\", not \"in\"" } },
	{ "bad framing", HEAD "services = ({ name = \"s\"; ports = [1]; framing = \"zmodem\"; });\n",
	  { "t.conf:2: 'framing' must be \"none\", \"line\", \"resp\", \"memcache\" or \"http\", not \"zmodem\"" } },
	{ "bad default", HEAD "services = ({ name = \"s\"; ports = [1]; default = \"drop\"; });\n",
	  { "t.conf:2: 'default' must be \"allow\", \"deny\" or \"audit\", not \"drop\"" } },
	{ "negative inspect", HEAD "services = ({ name = \"s\"; ports = [1]; inspect = -1; });\n",
	  { "t.conf:2: 'inspect' must be from 0 to 1073741824, not -1" } },
	{ "unknown service key", HEAD "services = ({ name = \"s\"; ports = [1]; frameing = \"line\"; });\n",
	  { "t.conf:2: unknown setting 'frameing' in a service; did you mean 'framing'?" } },
	{ "rule without id and action", SVC("  { contains = \"x\"; }"),
	  { "t.conf:4: rule has no 'id'", "t.conf:4: rule has no 'action'" } },
	{ "rule id range", SVC("  { id = 70000; action = \"deny\"; contains = \"x\"; }"),
	  { "t.conf:4: 'id' must be from 1 to 65535, not 70000" } },
	{ "duplicate rule id", SVC("  { id = 7; action = \"deny\"; contains = \"x\"; },\n  { id = 7; action = \"deny\"; contains = \"y\"; }"),
	  { "t.conf:5: rule id 7 is already used at line 4" } },
	{ "bad action", SVC("  { id = 1; action = \"drop\"; contains = \"x\"; }"),
	  { "t.conf:4: 'action' must be \"audit\", \"allow\", \"redirect\" or \"deny\", not \"drop\"" } },
	{ "no match", SVC("  { id = 1; action = \"deny\"; }"),
	  { "t.conf:4: rule has no match: give one of 'contains', 'prefix', 'hex_contains', 'hex_prefix', 'longer_than', 'command', 'method', 'path_prefix', 'path_contains', 'header', 'query_contains' or 'header_contains'" } },
	{ "two matches", SVC("  { id = 1; action = \"deny\";\n    contains = \"x\";\n    prefix = \"y\"; }"),
	  { "t.conf:6: rule has both 'contains' and 'prefix'; give exactly one match" } },
	{ "empty pattern", SVC("  { id = 1; action = \"deny\"; contains = \"\"; }"),
	  { "t.conf:4: 'contains' must not be empty" } },
	{ "pattern type", SVC("  { id = 1; action = \"deny\"; prefix = 5; }"),
	  { "t.conf:4: 'prefix' must be a string, not an integer" } },
	{ "odd hex", SVC("  { id = 1; action = \"deny\"; hex_contains = \"abc\"; }"),
	  { "t.conf:4: 'hex_contains' needs an even number of hex digits, not 3" } },
	{ "bad hex digit", SVC("  { id = 1; action = \"deny\"; hex_prefix = \"0g\"; }"),
	  { "t.conf:4: 'hex_prefix' may hold only hex digits and blanks between bytes, not 'g'" } },
	{ "nocase type", SVC("  { id = 1; action = \"deny\"; contains = \"x\"; nocase = 1; }"),
	  { "t.conf:4: 'nocase' must be true or false, not an integer" } },
	{ "nocase with longer_than", SVC("  { id = 1; action = \"deny\"; longer_than = 9; nocase = true; }"),
	  { "t.conf:4: 'nocase' has no meaning with 'longer_than'" } },
	{ "negative longer_than", SVC("  { id = 1; action = \"deny\"; longer_than = -4; }"),
	  { "t.conf:4: 'longer_than' must be from 0 to 4294967294, not -4" } },
	{ "redirect without sink", SVC("  { id = 1; action = \"redirect\"; contains = \"x\"; }"),
	  { "t.conf:4: a redirect rule needs a 'sink'" } },
	{ "redirect to unknown sink", SVC("  { id = 1; action = \"redirect\"; contains = \"x\"; sink = \"nope\"; }"),
	  { "t.conf:4: no sink is named \"nope\"" } },
	{ "sink on a deny rule", SVC("  { id = 1; action = \"deny\"; contains = \"x\";\n    sink = \"q\"; }"),
	  { "t.conf:5: 'sink' is only for redirect rules" } },
	{ "unknown rule key", SVC("  { id = 1; action = \"deny\"; contains = \"x\"; ncase = true; }"),
	  { "t.conf:4: unknown setting 'ncase' in a rule; did you mean 'nocase'?" } },
	{ "pattern longer than inspect", HEAD "services = ({ name = \"s\"; ports = [1]; inspect = 3; rules = (\n"
	  "  { id = 1; action = \"deny\"; contains = \"abcd\"; }); });\n",
	  { "t.conf:3: the pattern is 4 bytes but the service inspects only 3 bytes of a message: it can never match" } },
	{ "rule not a group", SVC("  5"), { "t.conf:4: '(element)' must be a group { ... }, not an integer" } },
	{ "include", HEAD "  @include \"other.conf\"\nservices = ({ name = \"s\"; ports = [1]; });\n",
	  { "t.conf:2: @include is not supported: a policy is one file" } },
	{ "NUL in a string", SVC("  { id = 1; action = \"deny\"; contains = \"a\\x00b\"; }"),
	  { "t.conf:4: a string cannot hold a NUL byte (\\x00); write the pattern with hex_contains or hex_prefix" } },
	{ "too many longer_than", SVC(
	  "{id=1;action=\"deny\";longer_than=1;},{id=2;action=\"deny\";longer_than=1;},{id=3;action=\"deny\";longer_than=1;},\n"
	  "{id=4;action=\"deny\";longer_than=1;},{id=5;action=\"deny\";longer_than=1;},{id=6;action=\"deny\";longer_than=1;},\n"
	  "{id=7;action=\"deny\";longer_than=1;},{id=8;action=\"deny\";longer_than=1;},\n{id=9;action=\"deny\";longer_than=1;}"),
	  { "t.conf:7: service \"s\" has more than 8 longer_than rules" } },
	{ "many errors at once", HEAD "services = ({ name = \"s\"; ports = [1]; direction = \"up\";\n"
	  "  rules = ({ id = 0; action = \"deny\"; contains = \"x\"; },\n  { id = 2; action = \"nope\"; prefix = \"y\"; }); });\n",
	  { "t.conf:2: 'direction' must be \"to\", \"from\" or \"both\", not \"up\"",
	    "t.conf:3: 'id' must be from 1 to 65535, not 0",
	    "t.conf:4: 'action' must be \"audit\", \"allow\", \"redirect\" or \"deny\", not \"nope\"" } },
};

static void test_bad(const struct bad *b)
{
	struct pd_policy p;
	struct pd_diag d = { 0 };
	int ret = pd_policy_load_string(b->text, "t.conf", &p, &d);
	size_t nwant = 0;
	bool same;

	while (nwant < 3 && b->want[nwant])
		nwant++;
	same = ret == -1 && d.n == nwant;
	for (size_t i = 0; same && i < nwant; i++)
		same = !strcmp(d.lines[i], b->want[i]);
	ok(same, "refused with exact FILE:LINE: %s", b->name);
	if (!same) {
		printf("#   returned %d; got %zu lines:\n", ret, d.n);
		for (size_t i = 0; i < d.n; i++)
			printf("#     %s\n", d.lines[i]);
		for (size_t i = 0; i < nwant; i++)
			printf("#   want %s\n", b->want[i]);
	}
	pd_diag_free(&d);
}

/* The rule index a state reports as holding the line back, after
 * walking text from service k's start state. */
static unsigned hold_rule_at(const struct pd_image *img, uint32_t k, const char *text)
{
	const struct pd_image_service *is = &img->services[k];
	uint32_t st = is->svc.start;

	for (const char *c = text; *c; c++)
		st = (img->trans[(size_t)st * img->row_width +
				 is->classes.cls[(uint8_t)*c]] & PD_T_STATE) / (img->row_width * 4);
	return (img->outs[st].flags & PD_SF_ANCHORED) ? PD_SF_HOLD_RULE(img->outs[st].flags) : 0;
}

static void test_hold(void)
{
	static const char text[] =
		"version = 1;\n"
		"services = ({ name = \"a\"; ports = [ 1 ]; framing = \"line\"; hold_timeout = 0;\n"
		"  rules = ({ id = 1; action = \"deny\"; prefix = \"KILL\"; }); },\n"
		"{ name = \"b\"; ports = [ 2 ]; framing = \"line\";\n"
		"  rules = ({ id = 2; action = \"allow\"; prefix = \"GET\"; },\n"
		"           { id = 3; action = \"audit\"; prefix = \"PUT\"; }); });\n";
	struct pd_policy p;
	struct pd_image img;
	struct pd_diag d = { 0 };

	if (!ok(!pd_policy_load_string(text, "hold.conf", &p, &d) && !pd_compile(&p, &img, &d),
		"hold_timeout policy compiles")) {
		pd_diag_print(&d, stdout);
		pd_diag_free(&d);
		return;
	}
	ok(img.services[0].svc.hold == 0 && img.services[0].svc.hold_ms == 0,
	   "hold_timeout = 0: the service never holds");
	ok(img.services[1].svc.hold == 0,
	   "allow and audit prefixes in a default-allow service hold nothing");
	pd_image_free(&img);
	pd_policy_free(&p);
	pd_diag_free(&d);
}

static void test_good(void)
{
	static const char text[] =
		"version = 1;\n"
		"daemon = { cgroup = \"/sys/fs/cgroup/x\"; user = \"daemon\"; on_exit = \"keep\"; excerpt = 16; };\n"
		"sinks = ({ name = \"quarantine\"; file = \"/var/lib/policyd/q.log\"; });\n"
		"services = ({ name = \"redis\"; ports = [ 6379, \"7000-7005\" ]; framing = \"line\";\n"
		"  inspect = 4096; default = \"allow\"; rules = (\n"
		"  { id = 100; action = \"deny\"; contains = \"FLUSHALL\"; nocase = true; },\n"
		"  { id = 103; action = \"redirect\"; prefix = \"DEBUG\"; sink = \"quarantine\"; },\n"
		"  { id = 104; action = \"deny\"; longer_than = 1048576; },\n"
		"  { id = 106; action = \"deny\"; hex_contains = \"00ff00FF\"; }\n"
		"); },\n"
		"{ name = \"web\"; ports = [ 80 ]; direction = \"from\"; });\n";
	struct pd_policy p;
	struct pd_image img;
	struct pd_diag d = { 0 };
	const struct pd_service_src *s;

	if (!ok(!pd_policy_load_string(text, "good.conf", &p, &d), "a good policy loads")) {
		pd_diag_print(&d, stdout);
		pd_diag_free(&d);
		return;
	}
	s = &p.services[0];
	ok(p.nservices == 2 && p.nrules == 4, "two services, four rules");
	ok(s->nports == 2 && s->ports[1].lo == 7000 && s->ports[1].hi == 7005, "port range parsed");
	ok(s->framing == PD_FRAME_LINE && s->inspect == 4096 && s->dir == PD_DIR_TO, "service settings");
	ok(s->rules[0].nocase && s->rules[0].patlen == 8 && s->rules[0].line == 6, "rule keeps its line");
	ok(s->rules[3].patlen == 4 && !memcmp(s->rules[3].pat, "\x00\xff\x00\xff", 4), "hex decoded");
	ok(s->rules[1].sink_index == 0 && s->rules[2].longer_than == 1048576, "sink and longer_than");
	ok(p.daemon.keep && p.daemon.excerpt == 16 && !strcmp(p.daemon.user, "daemon") &&
	   p.daemon.log_rate == PD_DEFAULT_LOG_RATE, "daemon settings and defaults");
	ok(p.services[1].dir == PD_DIR_FROM && p.services[1].def == PD_DEF_ALLOW &&
	   p.services[1].framing == PD_FRAME_NONE && p.services[1].inspect == 0, "service defaults");
	if (ok(!pd_compile(&p, &img, &d), "it compiles")) {
		ok(img.nports == 8, "eight port entries (6379, 7000-7005, 80)");
		ok(img.rules[1].id == 100 && img.rules[2].action == PD_ACT_REDIRECT &&
		   img.rules[4].service == 0, "rule table in file order");
		ok(img.services[0].svc.hold == (PD_HOLD_ANCHORED | PD_HOLD_LINE) &&
		   img.services[0].svc.hold_ms == PD_DEFAULT_HOLD_TIMEOUT,
		   "line framing with a redirect prefix and deny rules holds, for 3000 ms");
		ok(hold_rule_at(&img, 0, "DEB") == 2, "a state inside \"DEBUG\" names the "
		   "redirect rule (index 2) as what holds the line");
		ok(img.services[0].svc.nlen == 1 && img.services[0].svc.len_rules[0].len == 1048576,
		   "longer_than in the service entry");
		pd_image_free(&img);
	}
	pd_policy_free(&p);
	pd_diag_free(&d);
}

/* A policy of 10,000 nocase contains patterns of 8-16 bytes compiles
 * within the documented memory bound. (Time is reported by `check` and
 * the benchmarks, not asserted here.) */
static void test_large(void)
{
	size_t cap = 10000 * 96 + 256, len = 0;
	char *t = malloc(cap);
	uint64_t r = 12345;
	struct pd_policy p;
	struct pd_image img;
	struct pd_diag d = { 0 };

	len += snprintf(t, cap, "version = 1;\nservices = ({ name = \"big\"; ports = [ 1 ]; rules = (\n");
	for (int i = 0; i < 10000; i++) {
		char pat[17];
		int n = 8 + (int)(r % 9);

		for (int k = 0; k < n; k++) {
			r = r * 6364136223846793005ull + 1442695040888963407ull;
			pat[k] = "abcdefghijklmnopqrstuvwxyz0123456789_-/."[(r >> 33) % 40];
		}
		pat[n] = 0;
		len += snprintf(t + len, cap - len, "%s{ id = %d; action = \"deny\"; contains = \"%s\"; nocase = true; }",
				i ? ",\n" : "", i + 1, pat);
	}
	snprintf(t + len, cap - len, "); });\n");
	if (ok(!pd_policy_load_string(t, "big.conf", &p, &d) && !pd_compile(&p, &img, &d),
	       "10,000 patterns compile")) {
		ok(img.bytes < (64ull << 20), "image of 10,000 patterns is under 64 MiB (%.1f MiB, %u states)",
		   img.bytes / 1048576.0, img.nstates);
		pd_image_free(&img);
		pd_policy_free(&p);
	}
	pd_diag_free(&d);
	free(t);
}

/* The gram filter (compile.c's gram_set) on the profile it is for: each
 * entry set is one that a 3-byte sequence of no pattern may hash to and
 * stop the filter for nothing, which costs a walk. secrets-egress sets
 * 50 (its nocase patterns in every case); a table of 2^12 entries made
 * 1.2 % of the tests on ordinary text such stops. */
static void test_grams(void)
{
	struct pd_policy p;
	struct pd_image img;
	struct pd_diag d = { 0 };
	uint32_t set = 0;

	if (!ok(!pd_policy_load("policy-examples/secrets-egress.conf", &p, &d) &&
		!pd_compile(&p, &img, &d), "secrets-egress.conf compiles")) {
		pd_diag_print(&d, stdout);
		pd_diag_free(&d);
		return;
	}
	for (uint32_t h = 0; h < PD_GRAM_BYTES; h++)
		set += img.services[0].classes.grams[h] != 0;
	ok(img.services[0].svc.gstride == 3, "secrets-egress: the gram filter, stride 3 (its "
	   "shortest patterns have 5 bytes; %u)", img.services[0].svc.gstride);
	ok(set && set * 256 <= PD_GRAM_BYTES, "... %u of its %u entries set: a sequence of no "
	   "pattern finds one set at most once in 256 tests", set, PD_GRAM_BYTES);
	pd_image_free(&img);
	pd_policy_free(&p);
	pd_diag_free(&d);
}

int main(void)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		test_bad(&bad[i]);
	test_good();
	test_hold();
	test_large();
	test_grams();
	return done_testing();
}
