// SPDX-License-Identifier: GPL-2.0-only
/*
 * Advice on policies: warnings about a valid policy that probably does not
 * do what its author meant, "did you mean" for misspelt keys and words,
 * and a precise message for a syntax error (the token libconfig stopped
 * at, or the string left open where it began).
 */
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libconfig.h>

#include "policy.h"

/* Edit distance with transpositions (optimal string alignment). */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), d[32][32];

	if (la > 30 || lb > 30)
		return 99;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = tolower((unsigned char)a[i - 1]) !=
				      tolower((unsigned char)b[j - 1]), v = d[i - 1][j - 1] + cost;

			if (d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[la][lb];
}

const char *pd_closest(const char *word, const char *const *list)
{
	const char *best = NULL;
	size_t bd = 3;

	if (!word)
		return NULL;
	for (; *list; list++) {
		size_t dd = distance(word, *list);

		if (dd < bd && dd < strlen(word)) {
			bd = dd;
			best = *list;
		}
	}
	return best;
}

/* ---- syntax errors ---- */

/* The end of the string or comment at q, or q when none starts there;
 * *open set when a string reaches the end of its line unclosed. */
static const char *skip_lexeme(const char *q, bool *open)
{
	if (*q == '"') {
		for (q++; *q && *q != '"' && *q != '\n'; q++)
			if (*q == '\\' && q[1] && q[1] != '\n')
				q++;
		if (*q != '"') {
			*open = true;
			return q;
		}
		return q + 1;
	}
	if (*q == '#' || (q[0] == '/' && q[1] == '/'))
		return q + strcspn(q, "\n");
	if (q[0] == '/' && q[1] == '*') {
		const char *e = strstr(q + 2, "*/");

		return e ? e + 2 : q + strlen(q);
	}
	return q;
}

/* Whether libconfig reads text[0, n) plus many empty lines with its
 * error still at line: then the token that ends at n is the culprit (an
 * error at the end of the input would be lines later). */
static bool fails_at(const char *parsed, size_t n, int line)
{
	char *t = malloc(n + 202);
	config_t cfg;
	bool at;

	if (!t)
		return false;
	memcpy(t, parsed, n);
	memset(t + n, '\n', 200);
	t[n + 200] = '\0';
	config_init(&cfg);
	at = config_read_string(&cfg, t) != CONFIG_TRUE && config_error_line(&cfg) == line;
	config_destroy(&cfg);
	free(t);
	return at;
}

int pd_syntax_hint(const char *orig, const char *parsed, int line, char *msg, size_t cap)
{
	const char *q = orig;
	int l = 1, tries = 0;

	snprintf(msg, cap, "syntax error");
	while (*q) {
		bool open = false;
		const char *start = q, *after = skip_lexeme(q, &open);

		if (open && l <= line) {
			snprintf(msg, cap, "syntax error: the string that begins here (%.*s) is "
				 "not closed on this line", (int)(after - start > 24 ? 24 :
								 after - start), start);
			return l;
		}
		if (after != q) {
			q = after;
			continue;
		}
		if (*q == '\n')
			l++;
		if (l > line)
			break;
		/* each try parses the text up to here again: a few dozen tokens */
		if (l == line && !isspace((unsigned char)*q) && tries++ < 64) {
			/* one token: a name or number, or one character */
			size_t n = strspn(q, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					  "0123456789_.+-*");

			if (!n)
				n = 1;
			if (fails_at(parsed, (size_t)(q - orig) + n, line)) {
				snprintf(msg, cap, "syntax error at '%.*s'%s", (int)(n > 40 ? 40 : n),
					 q, *q == '{' || *q == '(' ?
					 " (a missing ',' between the elements before it?)" :
					 isalpha((unsigned char)*q) ?
					 " (a missing ';' after the setting before it?)" : "");
				return l;
			}
			q += n;
			continue;
		}
		q++;
	}
	return line;
}

/* ---- warnings ---- */

/* Whether deny rule d matches every message allow rule a matches. */
static bool covers(const struct pd_rule_src *d, const struct pd_rule_src *a)
{
	if (!d->patlen || d->patlen != a->patlen || (a->nocase && !d->nocase))
		return false;
	if (d->kind != a->kind && !(d->kind == PD_M_CONTAINS && a->kind == PD_M_PREFIX))
		return false;
	if (d->http == PD_HTTP_PATH_PREFIX && a->http != PD_HTTP_PATH_PREFIX)
		return false;
	/* framing http: the request line's, the query's, the head's and the
	 * body's patterns match in different sections; a header rule's
	 * pattern is a whole line's */
	if (pd_http_section_of(d) != pd_http_section_of(a) ||
	    (d->http == PD_HTTP_HEADER) != (a->http == PD_HTTP_HEADER))
		return false;
	return d->nocase ? !strncasecmp((const char *)d->pat, (const char *)a->pat, d->patlen) &&
			   memchr(d->pat, 0, d->patlen) == NULL
			 : !memcmp(d->pat, a->pat, d->patlen);
}

static void lint_rules(const struct pd_policy *p, struct pd_diag *w)
{
	for (size_t i = 0; i < p->nservices; i++) {
		const struct pd_service_src *s = &p->services[i];

		for (size_t k = 0; k < s->nrules; k++) {
			const struct pd_rule_src *a = &s->rules[k];

			if (a->action != PD_ACT_ALLOW || !a->patlen)
				continue;
			for (size_t j = 0; j < s->nrules; j++) {
				const struct pd_rule_src *d = &s->rules[j];

				if (d->action == PD_ACT_DENY && covers(d, a)) {
					pd_diag_add(w, a->line, "warning: rule %u allows what rule %u "
						    "(line %d) denies: deny wins, this allow never "
						    "takes effect", a->id, d->id, d->line);
					break;
				}
			}
		}
	}
}

static void lint_sinks(const struct pd_policy *p, struct pd_diag *w)
{
	for (size_t i = 0; i < p->nsinks; i++) {
		const struct pd_sink_src *k = &p->sinks[i];
		bool used = false;
		struct stat st;
		char *dir;

		for (size_t j = 0; j < i; j++)
			if (!strcmp(p->sinks[j].file, k->file)) {
				pd_diag_add(w, k->line, "warning: sink \"%s\" writes to the same file "
					    "as sink \"%s\" (line %d): their records mix", k->name,
					    p->sinks[j].name, p->sinks[j].line);
				break;
			}
		for (size_t s = 0; s < p->nservices && !used; s++)
			for (size_t r = 0; r < p->services[s].nrules && !used; r++)
				used = p->services[s].rules[r].sink_index == (int)i &&
				       p->services[s].rules[r].action == PD_ACT_REDIRECT;
		if (!used)
			pd_diag_add(w, k->line, "warning: no rule redirects to sink \"%s\"",
				    k->name);
		dir = strdup(k->file);
		if (dir && (stat(dirname(dir), &st) || !S_ISDIR(st.st_mode)))
			pd_diag_add(w, k->line, "warning: the directory of sink \"%s\" (%s) does "
				    "not exist: run would fail to open %s", k->name, dir, k->file);
		free(dir);
	}
}

void pd_policy_lint(const struct pd_policy *p, struct pd_diag *w)
{
	const char *user = p->daemon.user ? p->daemon.user : PD_DEFAULT_USER;
	struct passwd *pw;

	w->file = p->file;
	lint_rules(p, w);
	lint_sinks(p, w);
	errno = 0;
	pw = getpwnam(user);
	if (!pw)
		pd_diag_add(w, p->daemon.user_line, "warning: user \"%s\" does not exist on this "
			    "host: run would fail to drop to it", user);
	else if (!pw->pw_uid || !pw->pw_gid)
		pd_diag_add(w, p->daemon.user_line, "warning: user \"%s\" is uid or gid 0: run "
			    "refuses to keep root's ids; name an unprivileged account", user);
}
