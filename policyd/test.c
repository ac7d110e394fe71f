// SPDX-License-Identifier: GPL-2.0-only
/*
 * policyd test: the verdicts a policy gives sample traffic, before it is
 * deployed. Each input is the byte stream one connection sends (cut into
 * sends at --split marks); it runs through the compiled image with the
 * kernel's own walk and pd_msg's framing (judge.c), so that what it says
 * is what the kernel does. No root, no kernel.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "cli.h"
#include "daemon.h"
#include "judge.h"

/* What one input's lines need. */
struct test_out {
	const struct pd_opts *o;
	const struct pd_policy *p;
	const struct pd_image *img;
	uint32_t service;
	const char *input;      /* its name, NULL when it is the only one */
	int n;                  /* lines so far (JSON: commas) */
	uint64_t end;           /* where the last message reported ends */
};

/* The policy's rule of image index i. */
static const struct pd_rule_src *rule_src(const struct pd_policy *p, uint32_t i)
{
	for (size_t s = 0; s < p->nservices; s++)
		for (size_t r = 0; r < p->services[s].nrules; r++)
			if (p->services[s].rules[r].index == i)
				return &p->services[s].rules[r];
	return NULL;
}

/* The word a log line starts with, or what the message is at the end of
 * the input. */
static const char *verdict_word(const struct pd_judged *j)
{
	if (j->kind == PD_J_HELD)
		return "held";
	if (j->kind == PD_J_UNFINISHED)
		return "unfinished";
	/* a message passed with an audit rule matched is logged as audited */
	return pd_verdict_word(j->verdict == PD_V_PASS && j->audit ? PD_V_AUDIT : j->verdict,
			       j->monitor);
}

/* What every line starts with: the input's name when there are several
 * (JSON: a new object, after a comma). */
static void begin_line(struct test_out *t)
{
	if (t->o->json) {
		printf("%s\n    {", t->n++ ? "," : "");
		if (t->input) {
			printf("\"input\": ");
			pd_json_str(t->input);
			printf(", ");
		}
	} else if (t->input) {
		printf("%s: ", t->input);
	}
}

static void print_judged(const struct pd_judged *j, const uint8_t *stream, void *arg)
{
	struct test_out *t = arg;
	const struct pd_service_src *svc = &t->p->services[t->service];
	/* an audited pass is logged with its audit rule, as the daemon logs it */
	uint32_t idx = j->kind == PD_J_DECIDED && j->verdict == PD_V_PASS && j->audit ? j->audit :
		       j->rule;
	const struct pd_rule_src *r = idx && idx != PD_HELD_LINE ? rule_src(t->p, idx) : NULL;
	char ex[PD_EXCERPT_MAX * 4 + 1], id[16] = "default", at[4200];
	int line = r ? r->line : svc->line;

	if (r)
		snprintf(id, sizeof(id), "%u", r->id);
	else if (j->malformed)
		snprintf(id, sizeof(id), "malformed");  /* as the daemon logs it */
	else if (idx == PD_HELD_LINE || j->kind == PD_J_UNFINISHED)
		snprintf(id, sizeof(id), "-");
	snprintf(at, sizeof(at), "%s:%d", t->p->file, line);
	t->end = j->offset + j->len;
	pd_escape(ex, sizeof(ex), stream + j->ex_off, j->ex_len);
	begin_line(t);
	if (t->o->json) {
		printf("\"verdict\": \"%s\", \"rule\": ", verdict_word(j));
		if (r)
			printf("%u", r->id);
		else if (j->malformed)
			printf("\"malformed\"");
		else
			printf("null");
		printf(", \"at\": ");
		pd_json_str(at);
		printf(", \"offset\": %llu, \"len\": %u, \"logged\": %s, ",
		       (unsigned long long)j->offset, j->len, j->logged ? "true" : "false");
		if (j->kind == PD_J_EVENT)
			printf("\"part\": \"first\", ");
		if (r && r->sink) {
			printf("\"sink\": ");
			pd_json_str(r->sink);
			printf(", ");
		}
		printf("\"excerpt\": ");
		pd_json_str(ex);
		printf("}");
		return;
	}
	printf("%s rule=%s at=%s offset=%llu len=%u%s", verdict_word(j), id, at,
	       (unsigned long long)j->offset, j->len, j->kind == PD_J_EVENT ? " part=first" : "");
	if (r && r->sink && j->verdict == PD_V_REDIRECT)
		printf(" sink=%s", r->sink);
	printf(" excerpt=\"%s\"\n", ex);
}

/* After a deny the connection is dead: what the send that carried it
 * had from the denied message on is dropped (the send fails with EACCES,
 * or returns short), and every later send fails, unlogged. */
static void print_refused(struct test_out *t, size_t offset, size_t len)
{
	begin_line(t);
	if (t->o->json) {
		printf("\"verdict\": \"refused\", \"offset\": %zu, \"len\": %zu, "
		       "\"logged\": false}", offset, len);
		return;
	}
	printf("refused offset=%zu len=%zu (dropped with the deny; later sends fail)\n",
	       offset, len);
}

/* Read all of path ("-": standard input). */
static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	size_t cap = 65536, n = 0, k;
	uint8_t *b = NULL, *nb;

	if (!f)
		return NULL;
	for (;;) {
		nb = realloc(b, cap);
		if (!nb) {
			errno = ENOMEM;
			break;
		}
		b = nb;
		k = fread(b + n, 1, cap - n, f);
		n += k;
		if (k == 0) {
			if (ferror(f))
				break;
			if (f != stdin)
				fclose(f);
			*len = n;
			return b;
		}
		if (n == cap)
			cap *= 2;
	}
	free(b);
	if (f != stdin)
		fclose(f);
	return NULL;
}

/* --split MARK with \n, \r, \t, \\ and \xHH: its bytes in out. Returns
 * the length, or -1 when MARK is empty or an escape is bad. */
static int unescape(const char *s, uint8_t *out, size_t cap)
{
	static const char hexd[] = "0123456789abcdef";
	size_t n = 0;

	for (; *s && n < cap; s++) {
		const char *h, *l;

		if (*s != '\\') {
			out[n++] = (uint8_t)*s;
			continue;
		}
		switch (*++s) {
		case 'n': out[n++] = '\n'; break;
		case 'r': out[n++] = '\r'; break;
		case 't': out[n++] = '\t'; break;
		case '\\': out[n++] = '\\'; break;
		case 'x':
			if (!s[1] || !s[2] || !(h = strchr(hexd, s[1] | 0x20)) ||
			    !(l = strchr(hexd, s[2] | 0x20)))
				return -1;
			out[n++] = (uint8_t)((h - hexd) << 4 | (l - hexd));
			s += 2;
			break;
		default:
			return -1;
		}
	}
	return *s || !n ? -1 : (int)n;
}

/* One input through a new connection of the service. */
static int test_input(struct test_out *t, struct pd_image *img, const char *path,
		      const uint8_t *mark, int marklen)
{
	struct pd_judge *j;
	uint8_t *b;
	size_t len = 0, from = 0;
	int r = 0;

	b = slurp(path, &len);
	if (!b) {
		fprintf(stderr, "policyd: cannot read %s: %m\n", path);
		return PD_EXIT_USAGE;
	}
	j = pd_judge_new(img, t->service, t->o->monitor || t->p->daemon.monitor, 0, 0);
	if (!j) {
		free(b);
		fprintf(stderr, "policyd: out of memory\n");
		return PD_EXIT_RUNTIME;
	}
	while (from < len && r == 0) {
		uint8_t *m = marklen ? memmem(b + from, len - from, mark, (size_t)marklen) : NULL;
		size_t to = m ? (size_t)(m - b) : len;

		/* a send is at most 4 GiB; the kernel never sees an empty one */
		while (from < to && r == 0) {
			uint32_t n = to - from > 0xffff0000u ? 0xffff0000u : (uint32_t)(to - from);

			r = pd_judge_send(j, b + from, n, NULL, 0, print_judged, t);
			from += n;
		}
		from = m ? to + (size_t)marklen : to;
	}
	if (r == 0)
		pd_judge_end(j, print_judged, t);
	if (r == 1) {
		/* the stream's length: the input without its marks */
		for (uint8_t *m = b; marklen && (m = memmem(m, len - (size_t)(m - b), mark,
							    (size_t)marklen)); m += marklen)
			len -= (size_t)marklen;
		if (t->end < len)
			print_refused(t, t->end, len - t->end);
	}
	pd_judge_free(j);
	free(b);
	if (r < 0) {
		fprintf(stderr, "policyd: %s: the tables are out of step (a bug: please report "
			"it)\n", path);
		return PD_EXIT_RUNTIME;
	}
	return PD_EXIT_OK;
}

/* The service named by --service or --port, or the only one. */
static int pick_service(const struct pd_opts *o, const struct pd_policy *p,
			const struct pd_image *img, uint32_t *svc)
{
	const char *names[PD_MAX_SERVICES + 1];
	size_t i;

	for (i = 0; i < p->nservices && i < PD_MAX_SERVICES; i++)
		names[i] = p->services[i].name;
	names[i] = NULL;
	if (o->service) {
		for (i = 0; i < p->nservices; i++)
			if (!strcmp(p->services[i].name, o->service)) {
				*svc = (uint32_t)i;
				return 0;
			}
		fprintf(stderr, "policyd: %s has no service '%s'", p->file, o->service);
		if (pd_closest(o->service, names))
			fprintf(stderr, " (did you mean '%s'?)", pd_closest(o->service, names));
		fprintf(stderr, "; its services:");
		for (i = 0; i < p->nservices; i++)
			fprintf(stderr, " %s", p->services[i].name);
		fprintf(stderr, "\n");
		return PD_EXIT_USAGE;
	}
	if (o->port) {
		/* as the data plane looks it up: the remote port, then the local one */
		for (int dir = PD_DIR_TO; dir <= PD_DIR_FROM; dir++)
			for (i = 0; i < img->nports; i++)
				if (img->port_keys[i].port == o->port && img->port_keys[i].dir == dir) {
					*svc = img->port_services[i];
					return 0;
				}
		fprintf(stderr, "policyd: no service of %s polices port %d\n", p->file, o->port);
		return PD_EXIT_USAGE;
	}
	if (p->nservices == 1) {
		*svc = 0;
		return 0;
	}
	fprintf(stderr, "policyd: %s has %zu services: say which with --service NAME or "
		"--port N\n", p->file, p->nservices);
	return PD_EXIT_USAGE;
}

int pd_cmd_test(const struct pd_opts *o)
{
	static const char *const stdin_only[] = { "-" };
	const char *const *inputs = o->ninputs ? (const char *const *)o->inputs : stdin_only;
	int ninputs = o->ninputs ? o->ninputs : 1, marklen = 0, ret;
	struct test_out t = { .o = o };
	uint8_t mark[256];
	struct pd_policy p;
	struct pd_image img;

	if (o->split && (marklen = unescape(o->split, mark, sizeof(mark))) < 0) {
		fprintf(stderr, "policyd: --split takes bytes, with \\n, \\r, \\t, \\\\ and \\xHH "
			"escapes, at most %zu: not '%s'\nTry 'policyd --help'.\n", sizeof(mark),
			o->split);
		return PD_EXIT_USAGE;
	}
	for (int i = 0; i < ninputs; i++)
		for (int k = 0; k < i; k++)
			if (!strcmp(inputs[i], "-") && !strcmp(inputs[k], "-")) {
				fprintf(stderr, "policyd: standard input (-) can be read once\n");
				return PD_EXIT_USAGE;
			}
	ret = pd_load_and_compile(o->config, &p, &img, NULL);
	if (ret)
		return ret;
	t.p = &p;
	t.img = &img;
	ret = pick_service(o, &p, &img, &t.service);
	if (o->json && !ret) {
		printf("{\"policy\": ");
		pd_json_str(p.file);
		printf(", \"service\": ");
		pd_json_str(p.services[t.service].name);
		printf(", \"messages\": [");
	}
	for (int i = 0; i < ninputs && !ret; i++) {
		t.input = ninputs > 1 ? inputs[i] : NULL;
		t.end = 0;
		ret = test_input(&t, &img, inputs[i], mark, marklen);
	}
	if (o->json && !ret)
		printf("%s]}\n", t.n ? "\n  " : "");
	pd_image_free(&img);
	pd_policy_free(&p);
	return ret;
}
