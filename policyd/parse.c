// SPDX-License-Identifier: GPL-2.0-only
/*
 * Policy parser: libconfig text -> validated policy model. Every setting
 * keeps its line; every problem becomes one "FILE:LINE: message" and the
 * parser goes on to report the rest.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <libconfig.h>

#include "policy.h"

struct parse {
	struct pd_diag *d;
	struct pd_policy *p;
};

/* ---- diagnostics ---- */

void pd_diag_add(struct pd_diag *d, int line, const char *fmt, ...)
{
	char msg[512], *out;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* line 0: about the file as a whole (cannot open it, ...) */
	if ((line > 0 ? asprintf(&out, "%s:%d: %s", d->file ? d->file : "-", line, msg)
		      : asprintf(&out, "%s: %s", d->file ? d->file : "-", msg)) < 0)
		return;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		char **nl = realloc(d->lines, cap * sizeof(*nl));

		if (!nl) {
			free(out);
			return;
		}
		d->lines = nl;
		d->cap = cap;
	}
	d->lines[d->n++] = out;
}

void pd_diag_print(const struct pd_diag *d, FILE *f)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(f, "%s\n", d->lines[i]);
}

void pd_diag_free(struct pd_diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->lines[i]);
	free(d->lines);
	d->lines = NULL;
	d->n = d->cap = 0;
}

/* ---- setting helpers ---- */

static int line_of(const config_setting_t *s)
{
	int l = (int)config_setting_source_line(s);

	return l > 0 ? l : 1;
}

static const char *type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64: return "an integer";
	case CONFIG_TYPE_FLOAT: return "a number with a fraction";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL: return "true or false";
	case CONFIG_TYPE_ARRAY: return "an array";
	case CONFIG_TYPE_LIST: return "a list";
	case CONFIG_TYPE_GROUP: return "a group";
	}
	return "a setting";
}

static const char *sname(const config_setting_t *s)
{
	const char *n = config_setting_name(s);

	return n ? n : "(element)";
}

/* Report keys of group g that are not in the NULL-terminated list. */
static void check_keys(struct parse *c, const config_setting_t *g, const char *where,
		       const char *const *known)
{
	int n = config_setting_length(g);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		bool ok = false;

		for (const char *const *k = known; *k && name; k++)
			if (!strcmp(*k, name))
				ok = true;
		if (!ok)
			pd_diag_add(c->d, line_of(s), "unknown setting '%s' in %s%s%s%s",
				    name ? name : "?", where, pd_closest(name, known) ?
				    "; did you mean '" : "", pd_closest(name, known) ?: "",
				    pd_closest(name, known) ? "'?" : "");
	}
}

static bool is_int(const config_setting_t *s)
{
	int t = config_setting_type(s);

	return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
}

/* An integer setting in [lo, hi]; false (reported) otherwise. */
static bool get_uint(struct parse *c, const config_setting_t *s, int64_t lo, int64_t hi,
		     int64_t *out)
{
	int64_t v;

	if (!is_int(s)) {
		pd_diag_add(c->d, line_of(s), "'%s' must be an integer, not %s", sname(s),
			    type_name(config_setting_type(s)));
		return false;
	}
	v = config_setting_get_int64(s);
	if (v < lo || v > hi) {
		pd_diag_add(c->d, line_of(s), "'%s' must be from %" PRId64 " to %" PRId64
			    ", not %" PRId64, sname(s), lo, hi, v);
		return false;
	}
	*out = v;
	return true;
}

static const char *get_str(struct parse *c, const config_setting_t *s)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		pd_diag_add(c->d, line_of(s), "'%s' must be a string, not %s", sname(s),
			    type_name(config_setting_type(s)));
		return NULL;
	}
	return config_setting_get_string(s);
}

/* One of the words of t; returns its value or -1 (reported). */
static int get_word(struct parse *c, const config_setting_t *s, const struct pd_names *t)
{
	const char *v = get_str(c, s), *near;
	char list[160];
	int w;

	if (!v)
		return -1;
	if ((w = pd_value(t, v)) >= 0)
		return w;
	pd_names_list(t, '"', list, sizeof(list));
	near = pd_names_closest(t, v);
	pd_diag_add(c->d, line_of(s), "'%s' must be %s, not \"%s\"%s%s%s", sname(s), list, v,
		    near ? "; did you mean \"" : "", near ?: "", near ? "\"?" : "");
	return -1;
}

static bool get_path(struct parse *c, const config_setting_t *s, char **out)
{
	const char *v = get_str(c, s);

	if (!v)
		return false;
	if (v[0] != '/') {
		pd_diag_add(c->d, line_of(s), "'%s' must be an absolute path, not \"%s\"",
			    sname(s), v);
		return false;
	}
	if (strlen(v) >= 4096) {
		pd_diag_add(c->d, line_of(s), "'%s' is longer than 4095 bytes", sname(s));
		return false;
	}
	free(*out);
	*out = strdup(v);
	return *out != NULL;
}

/* Service and sink names go into logs as key=value: keep them plain. */
static bool get_name(struct parse *c, const config_setting_t *s, char **out)
{
	const char *v = get_str(c, s);

	if (!v)
		return false;
	if (!*v || strlen(v) >= PD_NAME_MAX) {
		pd_diag_add(c->d, line_of(s), "'%s' must be 1 to %d characters long",
			    sname(s), PD_NAME_MAX - 1);
		return false;
	}
	for (const char *q = v; *q; q++)
		if (!isalnum((unsigned char)*q) && *q != '-' && *q != '_' && *q != '.') {
			pd_diag_add(c->d, line_of(s), "'%s' may hold only letters, digits, "
				    "'-', '_' and '.', not \"%s\"", sname(s), v);
			return false;
		}
	*out = strdup(v);
	return *out != NULL;
}

static bool want_group(struct parse *c, const config_setting_t *s)
{
	if (config_setting_type(s) == CONFIG_TYPE_GROUP)
		return true;
	pd_diag_add(c->d, line_of(s), "'%s' must be a group { ... }, not %s", sname(s),
		    type_name(config_setting_type(s)));
	return false;
}

static bool want_list(struct parse *c, const config_setting_t *s)
{
	int t = config_setting_type(s);

	if (t == CONFIG_TYPE_LIST || t == CONFIG_TYPE_ARRAY)
		return true;
	pd_diag_add(c->d, line_of(s), "'%s' must be a list ( ... ), not %s", sname(s),
		    type_name(t));
	return false;
}

/* ---- daemon ---- */

static void parse_daemon(struct parse *c, const config_setting_t *g)
{
	static const char *const keys[] = { "cgroup", "user", "pin_dir", "on_exit",
					    "log_rate", "excerpt", "fail_mode",
					    "max_connections", "name", "mode", NULL };
	struct pd_daemon_src *dm = &c->p->daemon;
	const config_setting_t *s;
	int64_t v;

	if (!want_group(c, g))
		return;
	check_keys(c, g, "daemon", keys);
	if ((s = config_setting_get_member(g, "cgroup")))
		get_path(c, s, &dm->cgroup);
	if ((s = config_setting_get_member(g, "name")))
		get_name(c, s, &dm->name);
	if ((s = config_setting_get_member(g, "pin_dir")))
		get_path(c, s, &dm->pin_dir);
	if ((s = config_setting_get_member(g, "user"))) {
		const char *u = get_str(c, s);

		dm->user_line = line_of(s);
		if (u && (!*u || strlen(u) > 64 || strpbrk(u, " \t\n:/")))
			pd_diag_add(c->d, line_of(s), "'user' must name an account, not \"%s\"", u);
		else if (u) {
			free(dm->user);
			dm->user = strdup(u);
		}
	}
	if ((s = config_setting_get_member(g, "on_exit"))) {
		int w = get_word(c, s, &pd_on_exits);

		if (w >= 0)
			dm->keep = w == PD_ON_EXIT_KEEP;
	}
	if ((s = config_setting_get_member(g, "mode"))) {
		int w = get_word(c, s, &pd_modes);

		if (w >= 0)
			dm->monitor = w == PD_MODE_MONITOR;
	}
	if ((s = config_setting_get_member(g, "log_rate")) && get_uint(c, s, 0, 1000000, &v))
		dm->log_rate = (uint32_t)v;
	if ((s = config_setting_get_member(g, "excerpt")) &&
	    get_uint(c, s, 0, PD_EXCERPT_MAX, &v))
		dm->excerpt = (uint32_t)v;
	if ((s = config_setting_get_member(g, "fail_mode"))) {
		int w = get_word(c, s, &pd_fail_modes);

		if (w >= 0)
			dm->fail_open = w == PD_FAIL_OPEN;
	}
	if ((s = config_setting_get_member(g, "max_connections")) &&
	    get_uint(c, s, 1, PD_MAX_CONNECTIONS, &v))
		dm->max_connections = (uint32_t)v;
}

/* ---- sinks ---- */

static void parse_sinks(struct parse *c, const config_setting_t *l)
{
	static const char *const keys[] = { "name", "file", NULL };
	struct pd_policy *p = c->p;
	int n;

	if (!want_list(c, l))
		return;
	n = config_setting_length(l);
	if (n > PD_MAX_SINKS) {
		pd_diag_add(c->d, line_of(l), "%d sinks; at most %d are supported", n, PD_MAX_SINKS);
		return;
	}
	p->sinks = calloc(n ? n : 1, sizeof(*p->sinks));
	if (!p->sinks)
		return;
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(l, i), *s;
		struct pd_sink_src *k = &p->sinks[p->nsinks];

		if (!want_group(c, g))
			continue;
		p->nsinks++;
		k->line = line_of(g);
		check_keys(c, g, "a sink", keys);
		if ((s = config_setting_get_member(g, "name")))
			get_name(c, s, &k->name);
		else
			pd_diag_add(c->d, k->line, "sink has no 'name'");
		if ((s = config_setting_get_member(g, "file")))
			get_path(c, s, &k->file);
		else
			pd_diag_add(c->d, k->line, "sink has no 'file'");
		for (size_t j = 0; k->name && j + 1 < p->nsinks; j++)
			if (p->sinks[j].name && !strcmp(p->sinks[j].name, k->name))
				pd_diag_add(c->d, k->line, "sink \"%s\" is already defined at line %d",
					    k->name, p->sinks[j].line);
	}
}

/* ---- rules ---- */

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

static bool get_pattern(struct parse *c, const config_setting_t *s, bool hex,
			struct pd_rule_src *r)
{
	const char *v = get_str(c, s);
	char digits[2 * PD_MAX_PATTERN + 2];
	size_t n;

	if (!v)
		return false;
	n = strlen(v);
	if (hex) {      /* blanks may separate bytes: "de ad be ef" */
		size_t k = 0;

		for (size_t i = 0; v[i] && k < sizeof(digits) - 1; i++) {
			if (v[i] != ' ' && v[i] != '\t')
				digits[k++] = v[i];
			else if (k % 2) {
				pd_diag_add(c->d, line_of(s), "'%s': the blank at position %zu splits "
					    "a byte; write two hex digits per byte", sname(s), i + 1);
				return false;
			}
		}
		digits[k] = '\0';
		v = digits;
		n = k;
	}
	if (!n) {
		pd_diag_add(c->d, line_of(s), "'%s' must not be empty", sname(s));
		return false;
	}
	if (hex) {
		for (size_t i = 0; i < n; i++)
			if (hexval((unsigned char)v[i]) < 0) {
				pd_diag_add(c->d, line_of(s), "'%s' may hold only hex digits and "
					    "blanks between bytes, not '%c'", sname(s),
					    isprint((unsigned char)v[i]) ? v[i] : '?');
				return false;
			}
		if (n % 2) {
			pd_diag_add(c->d, line_of(s), "'%s' needs an even number of hex digits, "
				    "not %zu", sname(s), n);
			return false;
		}
		n /= 2;
	}
	if (n > PD_MAX_PATTERN) {
		pd_diag_add(c->d, line_of(s), "'%s' is %zu bytes long; at most %d are supported",
			    sname(s), n, PD_MAX_PATTERN);
		return false;
	}
	r->pat = malloc(n);
	if (!r->pat)
		return false;
	for (size_t i = 0; i < n; i++)
		r->pat[i] = hex ? (uint8_t)(hexval((unsigned char)v[2 * i]) << 4 |
					    hexval((unsigned char)v[2 * i + 1]))
				: (uint8_t)v[i];
	r->patlen = n;
	r->hex = hex;
	return true;
}

/* `command`: a command name, or a name and its first argument after one
 * space (a subcommand: "CONFIG SET", "stats cachedump"). */
static bool get_command(struct parse *c, const config_setting_t *s, struct pd_rule_src *r)
{
	const char *v = get_str(c, s), *sp;
	size_t n;

	if (!v)
		return false;
	n = strlen(v);
	sp = strchr(v, ' ');
	if (!n || v[0] == ' ' || v[n - 1] == ' ' || (sp && (sp[1] == ' ' || strchr(sp + 1, ' ')))) {
		pd_diag_add(c->d, line_of(s), "'command' is a command name, or a name and its "
			    "first argument after one space, not \"%s\"", v);
		return false;
	}
	for (size_t i = 0; i < n; i++)
		if (v[i] <= ' ' && v[i] != ' ') {
			pd_diag_add(c->d, line_of(s), "'command' may not hold control characters");
			return false;
		}
	if (n > PD_MAX_PATTERN) {
		pd_diag_add(c->d, line_of(s), "'command' is %zu bytes long; at most %d are supported",
			    n, PD_MAX_PATTERN);
		return false;
	}
	r->pat = (uint8_t *)strdup(v);
	if (!r->pat)
		return false;
	r->patlen = n;
	return true;
}

/* The HTTP keys: method = "NAME" (upper-case letters, '-', '_', as
 * servers take them), path_prefix = "/..." and path_contains = "..."
 * over the normalised path. A path_contains of bytes that a method may
 * hold could match within the method token: refused. */
/* Whether r's pattern holds only bytes a method may (upper-case letters,
 * '-' and '_'; letters of either case with nocase). */
static bool only_method_bytes(const struct pd_rule_src *r, bool nocase)
{
	for (size_t i = 0; i < r->patlen; i++) {
		uint8_t b = nocase && r->pat[i] >= 'a' && r->pat[i] <= 'z' ? r->pat[i] & ~0x20 :
			    r->pat[i];

		if (!((b >= 'A' && b <= 'Z') || b == '-' || b == '_'))
			return false;
	}
	return true;
}

static bool get_http(struct parse *c, const config_setting_t *s, enum pd_match_key k,
		     struct pd_rule_src *r)
{
	bool method_bytes;

	if (!get_pattern(c, s, false, r))
		return false;
	method_bytes = only_method_bytes(r, false);
	if (k == PD_KEY_METHOD) {
		r->kind = PD_M_COMMAND;
		r->http = PD_HTTP_METHOD;
		if (!method_bytes) {
			pd_diag_add(c->d, line_of(s), "'method' is upper-case letters, '-' and '_' "
				    "(servers refuse any other method), not \"%.*s\"", (int)r->patlen,
				    (const char *)r->pat);
			return false;
		}
		return true;
	}
	r->kind = PD_M_CONTAINS;
	r->http = k == PD_KEY_PATH_PREFIX ? PD_HTTP_PATH_PREFIX : PD_HTTP_PATH_CONTAINS;
	if (k == PD_KEY_PATH_PREFIX && r->pat[0] != '/') {
		pd_diag_add(c->d, line_of(s), "'path_prefix' begins with '/' (a path as the server "
			    "sees it), not \"%.*s\"", (int)r->patlen, (const char *)r->pat);
		return false;
	}
	if (k == PD_KEY_PATH_CONTAINS && method_bytes) {
		pd_diag_add(c->d, line_of(s), "'path_contains' of only upper-case letters, '-' and '_' "
			    "would also match within a method: add a byte that no method holds "
			    "(a '/' or a lower-case letter)");
		return false;
	}
	return true;
}

/* `header = "Name"` (a header of that name is sent) or "Name: value" (with
 * that value): kept as the parser hands a header over (bpf/http.h), the
 * name and value in lower case, the value without the spaces and tabs
 * around it and a run of them inside it as one space, "name: value". */
static bool get_header(struct parse *c, const config_setting_t *s, struct pd_rule_src *r)
{
	const char *v = get_str(c, s), *colon;
	size_t name, n = 0, i;
	char *out;

	if (!v)
		return false;
	colon = strchr(v, ':');
	name = colon ? (size_t)(colon - v) : strlen(v);
	/* RFC 9110 tchar (isalnum is ASCII's in the C locale) */
	for (i = 0; i < name; i++)
		if (!isalnum((unsigned char)v[i]) && !strchr("!#$%&'*+-.^_`|~", v[i]))
			break;
	if (!name || i < name) {
		pd_diag_add(c->d, line_of(s), "'header' is a header name (letters, digits and "
			    "!#$%%&'*+-.^_`|~), or a name, ':' and a value, not \"%s\"", v);
		return false;
	}
	out = malloc(strlen(v) + 2);
	if (!out)
		return false;
	for (i = 0; i < name; i++)
		out[n++] = (char)tolower((unsigned char)v[i]);
	if (colon) {
		bool blank = false;

		out[n++] = ':';
		out[n++] = ' ';
		for (const char *q = colon + 1; *q; q++) {
			uint8_t b = (uint8_t)*q;

			if ((b < ' ' && b != '\t') || b == 0x7f) {
				pd_diag_add(c->d, line_of(s), "a 'header' value holds no control "
					    "characters but tab (servers refuse them)");
				free(out);
				return false;
			}
			if (b == ' ' || b == '\t') {
				blank = out[n - 1] != ' ';
				continue;
			}
			if (blank)
				out[n++] = ' ';
			blank = false;
			out[n++] = (char)(b >= 'A' && b <= 'Z' ? b | 0x20 : b);
		}
	}
	if (n > PD_MAX_PATTERN) {
		pd_diag_add(c->d, line_of(s), "'header' is %zu bytes long; at most %d are supported",
			    n, PD_MAX_PATTERN);
		free(out);
		return false;
	}
	r->pat = (uint8_t *)out;
	r->patlen = n;
	r->kind = PD_M_CONTAINS;
	r->http = PD_HTTP_HEADER;
	return true;
}

/* `query_contains = "x"`: bytes within the target's query as the parser
 * hands it over (decoded); `header_contains = "x"`: bytes within a header
 * line as the parser hands it over, so kept in lower case with a run of
 * blanks as one space. */
static bool get_http_contains(struct parse *c, const config_setting_t *s, enum pd_match_key k,
			      struct pd_rule_src *r)
{
	size_t n = 0;

	if (!get_pattern(c, s, false, r))
		return false;
	r->kind = PD_M_CONTAINS;
	if (k == PD_KEY_QUERY_CONTAINS) {
		r->http = PD_HTTP_QUERY;
		return true;
	}
	r->http = PD_HTTP_HEADER_CONTAINS;
	for (size_t i = 0; i < r->patlen; i++) {
		uint8_t b = r->pat[i];

		if ((b < ' ' && b != '\t') || b == 0x7f) {
			pd_diag_add(c->d, line_of(s), "'header_contains' holds no control characters "
				    "but tab (a header line holds none)");
			return false;
		}
		if (b == '\t')
			b = ' ';
		if (b == ' ' && n && r->pat[n - 1] == ' ')
			continue;
		r->pat[n++] = b >= 'A' && b <= 'Z' ? b | 0x20 : b;
	}
	r->patlen = n;
	return true;
}

/* Whether match key k fits the service's framing:
 * commands only under the protocols that have them; prefixes only where
 * a message is bytes, not tokens. */
static void proto_fit(struct parse *c, const struct pd_service_src *svc,
		      const config_setting_t *s, enum pd_match_key k)
{
	bool proto = PD_FRAME_IS_PROTO(svc->framing);

	if (k == PD_KEY_COMMAND && svc->framing != PD_FRAME_RESP && svc->framing != PD_FRAME_MEMCACHE)
		pd_diag_add(c->d, line_of(s), "'command' needs framing \"resp\" or \"memcache\"; "
			    "this service's framing is \"%s\"", pd_framing_name(svc->framing));
	if ((k == PD_KEY_PREFIX || k == PD_KEY_HEX_PREFIX) && proto)
		pd_diag_add(c->d, line_of(s), "'%s' has no meaning under framing \"%s\", where a "
			    "message is parsed into tokens: match %s", sname(s),
			    pd_framing_name(svc->framing), svc->framing == PD_FRAME_HTTP ?
			    "with 'method', 'path_prefix', 'path_contains', 'query_contains', "
			    "'header', 'header_contains', or 'contains' within the body" :
			    "a command with 'command', bytes within a token with 'contains'");
	if ((k == PD_KEY_METHOD || k == PD_KEY_PATH_PREFIX || k == PD_KEY_PATH_CONTAINS ||
	     k == PD_KEY_HEADER || k == PD_KEY_QUERY_CONTAINS || k == PD_KEY_HEADER_CONTAINS) &&
	    svc->framing != PD_FRAME_HTTP)
		pd_diag_add(c->d, line_of(s), "'%s' needs framing \"http\"; this service's framing "
			    "is \"%s\"", sname(s), pd_framing_name(svc->framing));
}

static void parse_rule(struct parse *c, struct pd_service_src *svc, const config_setting_t *g,
		       struct pd_rule_src *r)
{
	static const char *const keys[] = { "id", "action", "contains", "prefix", "hex_contains",
					    "hex_prefix", "longer_than", "command", "method", "path_prefix",
					    "path_contains", "header", "query_contains", "header_contains",
					    "nocase", "sink", "excerpt", NULL };
	const config_setting_t *s, *match = NULL;
	char list[256];
	int64_t v;
	int nmatch = 0;

	r->line = line_of(g);
	r->excerpt = -1;
	check_keys(c, g, "a rule", keys);
	if ((s = config_setting_get_member(g, "excerpt")) && get_uint(c, s, 0, PD_EXCERPT_MAX, &v))
		r->excerpt = (int)v;
	if ((s = config_setting_get_member(g, "id"))) {
		if (get_uint(c, s, 1, PD_MAX_RULES, &v))
			r->id = (unsigned)v;
	} else {
		pd_diag_add(c->d, r->line, "rule has no 'id'");
	}
	if ((s = config_setting_get_member(g, "action"))) {
		int w = get_word(c, s, &pd_rule_actions);

		if (w >= 0)
			r->action = (enum pd_action)w;
	} else {
		pd_diag_add(c->d, r->line, "rule has no 'action'");
	}
	for (enum pd_match_key k = 0; k < PD_KEY_MAX; k++) {
		if (!(s = config_setting_get_member(g, pd_name(&pd_match_keys, k))))
			continue;
		if (nmatch++) {
			pd_diag_add(c->d, line_of(s), "rule has both '%s' and '%s'; give exactly one match",
				    sname(match), sname(s));
			continue;
		}
		match = s;
		switch (k) {
		case PD_KEY_CONTAINS:
		case PD_KEY_HEX_CONTAINS:
			r->kind = PD_M_CONTAINS;
			get_pattern(c, s, k == PD_KEY_HEX_CONTAINS, r);
			break;
		case PD_KEY_PREFIX:
		case PD_KEY_HEX_PREFIX:
			r->kind = PD_M_PREFIX;
			get_pattern(c, s, k == PD_KEY_HEX_PREFIX, r);
			break;
		case PD_KEY_LONGER_THAN:
			r->kind = PD_M_LONGER_THAN;
			if (get_uint(c, s, 0, UINT32_MAX - 1, &v))
				r->longer_than = (uint32_t)v;
			break;
		case PD_KEY_COMMAND:
			r->kind = PD_M_COMMAND;
			get_command(c, s, r);
			break;
		case PD_KEY_METHOD:
		case PD_KEY_PATH_PREFIX:
		case PD_KEY_PATH_CONTAINS:
			get_http(c, s, k, r);
			break;
		case PD_KEY_HEADER:
			get_header(c, s, r);
			break;
		case PD_KEY_QUERY_CONTAINS:
		case PD_KEY_HEADER_CONTAINS:
			get_http_contains(c, s, k, r);
			break;
		case PD_KEY_MAX:
			break;
		}
		proto_fit(c, svc, s, k);
		/* under framing http a contains rule matches within the body */
		if ((k == PD_KEY_CONTAINS || k == PD_KEY_HEX_CONTAINS) && svc->framing == PD_FRAME_HTTP)
			r->http = PD_HTTP_BODY;
	}
	if (!nmatch) {
		pd_names_list(&pd_match_keys, '\'', list, sizeof(list));
		pd_diag_add(c->d, r->line, "rule has no match: give one of %s", list);
	}
	if ((s = config_setting_get_member(g, "nocase"))) {
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			pd_diag_add(c->d, line_of(s), "'nocase' must be true or false, not %s",
				    type_name(config_setting_type(s)));
		else if (nmatch && r->kind == PD_M_LONGER_THAN)
			pd_diag_add(c->d, line_of(s), "'nocase' has no meaning with 'longer_than'");
		else if (nmatch && (r->http == PD_HTTP_HEADER || r->http == PD_HTTP_HEADER_CONTAINS))
			pd_diag_add(c->d, line_of(s), "'nocase' has no meaning with '%s': header "
				    "names and values match in any case", sname(match));
		else if (nmatch && r->http == PD_HTTP_METHOD)
			pd_diag_add(c->d, line_of(s), "'nocase' has no meaning with 'method': methods "
				    "match exactly, as servers compare them");
		else if (nmatch && r->http == PD_HTTP_PATH_CONTAINS && config_setting_get_bool(s) &&
			 only_method_bytes(r, true))
			pd_diag_add(c->d, line_of(s), "'path_contains' of only letters, '-' and '_' in "
				    "any case would also match within a method: add a byte that no "
				    "method holds (a '/' or a digit)");
		else if (nmatch && r->kind == PD_M_COMMAND)
			pd_diag_add(c->d, line_of(s), "'nocase' has no meaning with 'command': %s",
				    svc->framing == PD_FRAME_RESP ? "Redis command names match in "
				    "any case" : "memcached command names match exactly");
		else
			r->nocase = config_setting_get_bool(s);
	}
	s = config_setting_get_member(g, "sink");
	if (r->action == PD_ACT_REDIRECT && !s)
		pd_diag_add(c->d, r->line, "a redirect rule needs a 'sink'");
	if (s && r->action && r->action != PD_ACT_REDIRECT)
		pd_diag_add(c->d, line_of(s), "'sink' is only for redirect rules");
	if (s && r->action == PD_ACT_REDIRECT) {
		const char *name = get_str(c, s);

		r->sink_index = -1;
		for (size_t i = 0; name && i < c->p->nsinks; i++)
			if (c->p->sinks[i].name && !strcmp(c->p->sinks[i].name, name))
				r->sink_index = (int)i;
		if (name && r->sink_index < 0)
			pd_diag_add(c->d, line_of(s), "no sink is named \"%s\"", name);
		if (name)
			r->sink = strdup(name);
	}
	if (r->patlen && svc->inspect && r->patlen > svc->inspect)
		pd_diag_add(c->d, r->line, "the pattern is %zu bytes but the service inspects only "
			    "%u bytes of a message: it can never match", r->patlen, svc->inspect);
}

/* ---- services ---- */

static void parse_ports(struct parse *c, struct pd_service_src *svc, const config_setting_t *l)
{
	int n;

	if (!want_list(c, l))
		return;
	n = config_setting_length(l);
	if (!n) {
		pd_diag_add(c->d, line_of(l), "'ports' is empty");
		return;
	}
	svc->ports = calloc(n, sizeof(*svc->ports));
	if (!svc->ports)
		return;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(l, i);
		struct pd_port_range *r = &svc->ports[svc->nports];
		long lo, hi;
		char *end;

		r->line = line_of(e);
		if (is_int(e)) {
			lo = hi = (long)config_setting_get_int64(e);
		} else if (config_setting_type(e) == CONFIG_TYPE_STRING) {
			const char *v = config_setting_get_string(e);

			errno = 0;
			lo = strtol(v, &end, 10);
			if (end == v || *end != '-' || !isdigit((unsigned char)end[1]) ||
			    !isdigit((unsigned char)*v))
				goto bad;
			v = end + 1;
			hi = strtol(v, &end, 10);
			if (*end || errno)
				goto bad;
			if (lo > hi) {
				pd_diag_add(c->d, r->line, "port range \"%s\" runs backwards",
					    config_setting_get_string(e));
				continue;
			}
		} else {
			pd_diag_add(c->d, r->line, "a port must be an integer or a range \"A-B\", "
				    "not %s", type_name(config_setting_type(e)));
			continue;
		}
		if (lo < 1 || hi > 65535) {
			pd_diag_add(c->d, r->line, "ports are from 1 to 65535");
			continue;
		}
		r->lo = (uint16_t)lo;
		r->hi = (uint16_t)hi;
		svc->nports++;
		continue;
bad:
		pd_diag_add(c->d, r->line, "a port range is written \"A-B\", not \"%s\"",
			    config_setting_get_string(e));
	}
}

static void parse_service(struct parse *c, const config_setting_t *g, struct pd_service_src *svc)
{
	static const char *const keys[] = { "name", "ports", "direction", "framing", "inspect",
					    "default", "hold_timeout", "rules", "excerpt", "inline",
					    NULL };
	const config_setting_t *s;
	int64_t v;
	int w;

	svc->line = line_of(g);
	svc->dir = PD_DIR_TO;
	svc->framing = PD_FRAME_NONE;
	svc->def = PD_DEF_ALLOW;
	svc->inspect = PD_DEFAULT_INSPECT;
	svc->hold_timeout = PD_DEFAULT_HOLD_TIMEOUT;
	svc->excerpt = -1;
	check_keys(c, g, "a service", keys);
	if ((s = config_setting_get_member(g, "excerpt")) && get_uint(c, s, 0, PD_EXCERPT_MAX, &v))
		svc->excerpt = (int)v;
	if ((s = config_setting_get_member(g, "name")))
		get_name(c, s, &svc->name);
	else
		pd_diag_add(c->d, svc->line, "service has no 'name'");
	if ((s = config_setting_get_member(g, "ports")) && is_int(s))
		pd_diag_add(c->d, line_of(s), "'ports' is a list, also of one port: write "
			    "ports = [ %lld ];", (long long)config_setting_get_int64(s));
	else if (s && config_setting_type(s) == CONFIG_TYPE_STRING)
		pd_diag_add(c->d, line_of(s), "'ports' is a list, also of one range: write "
			    "ports = [ \"%s\" ];", config_setting_get_string(s));
	else if (s)
		parse_ports(c, svc, s);
	else
		pd_diag_add(c->d, svc->line, "service has no 'ports'");
	if ((s = config_setting_get_member(g, "direction")) && (w = get_word(c, s, &pd_directions)) >= 0)
		svc->dir = (uint8_t)w;
	if ((s = config_setting_get_member(g, "framing")) && (w = get_word(c, s, &pd_framings)) >= 0)
		svc->framing = (uint8_t)w;
	if ((s = config_setting_get_member(g, "default")) && (w = get_word(c, s, &pd_defaults)) >= 0)
		svc->def = (uint8_t)w;
	if ((s = config_setting_get_member(g, "inspect")) && get_uint(c, s, 0, PD_MAX_INSPECT, &v)) {
		svc->inspect = (uint32_t)v;
		if (v && PD_FRAME_IS_PROTO(svc->framing))
			pd_diag_add(c->d, line_of(s), "'inspect' has no meaning under framing \"%s\": "
				    "every message is parsed whole (counted contents are passed over "
				    "unread where no rule needs them)", pd_framing_name(svc->framing));
	}
	if ((s = config_setting_get_member(g, "hold_timeout")) &&
	    get_uint(c, s, 0, PD_MAX_HOLD_TIMEOUT, &v))
		svc->hold_timeout = (uint32_t)v;
	if ((s = config_setting_get_member(g, "inline"))) {
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			pd_diag_add(c->d, line_of(s), "'inline' is true or false");
		else if (svc->framing != PD_FRAME_RESP)
			pd_diag_add(c->d, line_of(s), "'inline' applies to framing \"resp\" only "
				    "(Redis's inline commands), not to framing \"%s\"",
				    pd_framing_name(svc->framing));
		else
			svc->no_inline = !config_setting_get_bool(s);
	}
	if (!(s = config_setting_get_member(g, "rules")) || !want_list(c, s))
		return;
	svc->rules = calloc(config_setting_length(s) + 1, sizeof(*svc->rules));
	if (!svc->rules)
		return;
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *rg = config_setting_get_elem(s, i);

		if (!want_group(c, rg))
			continue;
		parse_rule(c, svc, rg, &svc->rules[svc->nrules++]);
	}
}

/* The first port range before range k of service i (in file order) that
 * overlaps it in a shared direction, with its service in *owner; or NULL. */
static const struct pd_port_range *earlier_claim(const struct pd_policy *p, size_t i, size_t k,
						 const struct pd_service_src **owner)
{
	const struct pd_service_src *a = &p->services[i];

	for (size_t j = 0; j <= i; j++) {
		const struct pd_service_src *b = &p->services[j];

		if (!(a->dir & b->dir))
			continue;
		for (size_t q = 0; q < (j == i ? k : b->nports); q++)
			if (a->ports[k].lo <= b->ports[q].hi && b->ports[q].lo <= a->ports[k].hi) {
				*owner = b;
				return &b->ports[q];
			}
	}
	return NULL;
}

/* Checks that need the whole policy: unique names and ids, port claims. */
static void cross_check(struct parse *c)
{
	struct pd_policy *p = c->p;
	/* first rule line per id, 0 when unused */
	int *id_line = calloc(PD_MAX_RULES + 1, sizeof(int));

	for (size_t i = 0; i < p->nservices; i++) {
		struct pd_service_src *a = &p->services[i];
		size_t nlen = 0;

		for (size_t j = 0; j < i; j++)
			if (a->name && p->services[j].name && !strcmp(a->name, p->services[j].name))
				pd_diag_add(c->d, a->line, "service \"%s\" is already defined at line %d",
					    a->name, p->services[j].line);
		for (size_t k = 0; k < a->nports; k++) {
			const struct pd_service_src *b;
			const struct pd_port_range *r = earlier_claim(p, i, k, &b);

			if (r)
				pd_diag_add(c->d, a->ports[k].line, "port %u (direction \"%s\") is already "
					    "claimed by service \"%s\" at line %d",
					    a->ports[k].lo > r->lo ? a->ports[k].lo : r->lo,
					    pd_direction_name(a->dir & b->dir), b->name ? b->name : "?",
					    r->line);
		}
		for (size_t k = 0; k < a->nrules; k++) {
			struct pd_rule_src *r = &a->rules[k];

			if (r->kind == PD_M_LONGER_THAN && ++nlen == PD_MAX_LEN_RULES + 1)
				pd_diag_add(c->d, r->line, "service \"%s\" has more than %d longer_than "
					    "rules", a->name ? a->name : "?", PD_MAX_LEN_RULES);
			if (!r->id || !id_line)
				continue;
			if (id_line[r->id])
				pd_diag_add(c->d, r->line, "rule id %u is already used at line %d",
					    r->id, id_line[r->id]);
			else
				id_line[r->id] = r->line;
		}
	}
	free(id_line);
}

static void parse_root(struct parse *c, const config_setting_t *root)
{
	static const char *const keys[] = { "version", "daemon", "sinks", "services", NULL };
	const config_setting_t *s;
	int64_t v;
	int n;

	check_keys(c, root, "the policy", keys);
	if (!(s = config_setting_get_member(root, "version")))
		pd_diag_add(c->d, 1, "the policy has no 'version'; this is version 1: add "
			    "'version = 1;'");
	else if (!is_int(s) || (v = config_setting_get_int64(s)) != 1)
		pd_diag_add(c->d, line_of(s), "unsupported policy version%s: this policyd reads "
			    "version 1", is_int(s) ? "" : " (not an integer)");
	else
		c->p->version = 1;
	if ((s = config_setting_get_member(root, "daemon")))
		parse_daemon(c, s);
	if ((s = config_setting_get_member(root, "sinks")))
		parse_sinks(c, s);
	if (!(s = config_setting_get_member(root, "services"))) {
		pd_diag_add(c->d, 1, "the policy has no 'services': nothing would be policed");
		return;
	}
	if (!want_list(c, s))
		return;
	n = config_setting_length(s);
	if (!n)
		pd_diag_add(c->d, line_of(s), "'services' is empty: nothing would be policed");
	if (n > PD_MAX_SERVICES) {
		pd_diag_add(c->d, line_of(s), "%d services; at most %d are supported", n,
			    PD_MAX_SERVICES);
		return;
	}
	c->p->services = calloc(n ? n : 1, sizeof(*c->p->services));
	if (!c->p->services)
		return;
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(s, i);

		if (!want_group(c, g))
			continue;
		parse_service(c, g, &c->p->services[c->p->nservices++]);
	}
	for (size_t i = 0; i < c->p->nservices; i++)
		c->p->nrules += c->p->services[i].nrules;
	if (c->p->nrules > PD_MAX_RULES)
		pd_diag_add(c->d, line_of(s), "%zu rules; at most %d are supported", c->p->nrules,
			    PD_MAX_RULES);
	cross_check(c);
}

static void number_rules(struct pd_policy *p)
{
	uint32_t idx = 0;

	for (size_t i = 0; i < p->nservices; i++)
		for (size_t k = 0; k < p->services[i].nrules; k++)
			p->services[i].rules[k].index = ++idx;
}

/*
 * What libconfig would accept but silently get wrong for us: @include (a
 * policy is one file, so that `check` sees all of it) and "\x00" in a
 * string (libconfig drops the byte, changing the pattern).
 */
static bool prescan(const char *text, struct pd_diag *d)
{
	bool bad = false;
	int line = 1;

	for (const char *q = text; *q; line++) {
		const char *eol = q + strcspn(q, "\n");

		while (*q == ' ' || *q == '\t')
			q++;
		if (!strncmp(q, "@include", 8)) {
			pd_diag_add(d, line, "@include is not supported: a policy is one file");
			bad = true;
		}
		for (; q < eol; q++)
			if (q[0] == '\\' && (q[1] == 'x' || q[1] == 'X') && q[2] == '0' && q[3] == '0') {
				pd_diag_add(d, line, "a string cannot hold a NUL byte (\\x00); "
					    "write the pattern with hex_contains or hex_prefix");
				bad = true;
				break;
			}
		if (!*eol)
			break;
		q = eol + 1;
	}
	return bad;
}

/* Skip a string or comment starting at q; returns the first byte after it,
 * or q when none starts there. */
static const char *skip_lexeme(const char *q)
{
	if (*q == '"') {
		for (q++; *q && *q != '"'; q++)
			if (*q == '\\' && q[1])
				q++;
		return *q ? q + 1 : q;
	}
	if (*q == '#' || (q[0] == '/' && q[1] == '/'))
		return q + strcspn(q, "\n");
	if (q[0] == '/' && q[1] == '*') {
		const char *e = strstr(q + 2, "*/");

		return e ? e + 2 : q + strlen(q);
	}
	return q;
}

/*
 * libconfig arrays [ ] hold one scalar type, but the policy language lets
 * `ports` mix numbers and "A-B" strings in brackets. Rewrite the brackets
 * of every `ports` array to list parentheses, in place: same length, so
 * every line number stays true.
 */
static void ports_brackets_to_list(char *t)
{
	for (char *q = t; *q;) {
		const char *after = skip_lexeme(q);
		char *v;
		int depth = 0;

		if (after != q) {
			q = (char *)after;
			continue;
		}
		if (strncmp(q, "ports", 5) || (q > t && (isalnum((unsigned char)q[-1]) || q[-1] == '_')) ||
		    isalnum((unsigned char)q[5]) || q[5] == '_') {
			q++;
			continue;
		}
		v = q + 5;
		v += strspn(v, " \t\r\n");
		if (*v != '=' && *v != ':') {
			q = v;
			continue;
		}
		v++;
		v += strspn(v, " \t\r\n");
		if (*v != '[') {
			q = v;
			continue;
		}
		for (q = v; *q;) {
			after = skip_lexeme(q);
			if (after != q) {
				q = (char *)after;
				continue;
			}
			if (*q == '[')
				depth++;
			if (*q == ']' && !--depth) {
				*v = '(';
				*q = ')';
				break;
			}
			q++;
		}
	}
}

int pd_policy_load_string(const char *text, const char *file, struct pd_policy *p,
			  struct pd_diag *d)
{
	struct parse c = { .d = d, .p = p };
	char *copy;
	config_t cfg;
	size_t before = d->n;

	memset(p, 0, sizeof(*p));
	d->file = file;
	p->file = strdup(file);
	p->daemon.user = strdup(PD_DEFAULT_USER);
	p->daemon.pin_dir = strdup(PD_DEFAULT_PIN_DIR);
	p->daemon.log_rate = PD_DEFAULT_LOG_RATE;
	p->daemon.excerpt = PD_DEFAULT_EXCERPT;
	p->daemon.max_connections = PD_DEFAULT_MAX_CONNECTIONS;
	config_init(&cfg);
	copy = strdup(text);
	if (!copy) {
		pd_diag_add(d, 1, "out of memory");
	} else if (prescan(text, d)) {
		/* reported */
	} else if (ports_brackets_to_list(copy), config_read_string(&cfg, copy) != CONFIG_TRUE) {
		const char *why = config_error_text(&cfg) ? config_error_text(&cfg) : "unreadable";
		char msg[160];
		int line = config_error_line(&cfg);

		if (!strncmp(why, "syntax error", 12))
			line = pd_syntax_hint(text, copy, line, msg, sizeof(msg));
		else
			snprintf(msg, sizeof(msg), "syntax error: %s", why);
		pd_diag_add(d, line, "%s", msg);
	} else {
		parse_root(&c, config_root_setting(&cfg));
	}
	config_destroy(&cfg);
	free(copy);
	if (d->n != before) {
		pd_policy_free(p);
		return -1;
	}
	number_rules(p);
	return 0;
}

int pd_policy_load(const char *file, struct pd_policy *p, struct pd_diag *d)
{
	bool in = !strcmp(file, "-");   /* standard input, a pipe as well */
	/* not blocking: opening a FIFO would wait for a writer */
	int fd = in ? fcntl(0, F_DUPFD_CLOEXEC, 0) :
		      open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	char *text = NULL;
	size_t len = 0, cap = 0, nread;
	struct stat st;
	FILE *f;
	int ret;

	if (in)
		file = "<stdin>";
	d->file = file;
	memset(p, 0, sizeof(*p));
	if (fd < 0 || fstat(fd, &st)) {
		pd_diag_add(d, 0, "cannot open: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!in && !S_ISREG(st.st_mode)) {
		pd_diag_add(d, 0, "not a regular file (%s): a policy is read from a file",
			    S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISDIR(st.st_mode) ? "a directory" :
			    S_ISCHR(st.st_mode) ? "a character device" : S_ISSOCK(st.st_mode) ?
			    "a socket" : "a device");
		close(fd);
		return -1;
	}
	if ((!in && fcntl(fd, F_SETFL, O_RDONLY)) || !(f = fdopen(fd, "rb"))) {
		pd_diag_add(d, 0, "cannot open: %s", strerror(errno));
		close(fd);
		return -1;
	}
	for (;;) {
		if (len + 4096 + 1 > cap) {
			char *nt;

			cap = cap ? cap * 2 : 65536;
			if (cap > (64u << 20) || !(nt = realloc(text, cap))) {
				pd_diag_add(d, 0, "file too large (more than 64 MiB) or out of memory");
				free(text);
				fclose(f);
				return -1;
			}
			text = nt;
		}
		nread = fread(text + len, 1, cap - len - 1, f);
		len += nread;
		if (!nread)
			break;
	}
	if (ferror(f)) {
		pd_diag_add(d, 0, "cannot read: %s", strerror(errno));
		free(text);
		fclose(f);
		return -1;
	}
	fclose(f);
	text[len] = 0;
	if (memchr(text, 0, len)) {
		int line = 1;

		for (const char *q = text; *q; q++)
			line += *q == '\n';
		pd_diag_add(d, line, "NUL byte in the policy file; write such bytes with hex_contains");
		free(text);
		return -1;
	}
	ret = pd_policy_load_string(text, file, p, d);
	free(text);
	return ret;
}

static void free_service(struct pd_service_src *s)
{
	for (size_t k = 0; k < s->nrules; k++) {
		free(s->rules[k].pat);
		free(s->rules[k].sink);
	}
	free(s->rules);
	free(s->ports);
	free(s->name);
}

void pd_policy_free(struct pd_policy *p)
{
	for (size_t i = 0; i < p->nservices; i++)
		free_service(&p->services[i]);
	free(p->services);
	for (size_t i = 0; i < p->nsinks; i++) {
		free(p->sinks[i].name);
		free(p->sinks[i].file);
	}
	free(p->sinks);
	free(p->daemon.cgroup);
	free(p->daemon.user);
	free(p->daemon.pin_dir);
	free(p->daemon.name);
	free(p->file);
	memset(p, 0, sizeof(*p));
}
