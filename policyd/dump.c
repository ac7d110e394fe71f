// SPDX-License-Identifier: GPL-2.0-only
/*
 * `policyd dump`: the compiled policy, in a stable text form that diffs
 * well and re-reads as the same policy, or as JSON.
 */
#include <ctype.h>
#include <string.h>

#include "policy.h"

/* Bytes as a libconfig string body: printable ASCII as is, the rest \xNN. */
static void put_escaped(FILE *f, const uint8_t *p, size_t n, bool json)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			fputc(c, f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (json)
			fprintf(f, "\\u%04x", c);
		else
			fprintf(f, "\\x%02x", c);
	}
}

static void put_hex(FILE *f, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
}

/* The setting rule r was given as. */
static const char *match_key(const struct pd_rule_src *r)
{
	enum pd_match_key k = PD_KEY_MAX;

	switch (r->kind) {
	case PD_M_CONTAINS:
		if (r->http == PD_HTTP_HEADER)
			k = PD_KEY_HEADER;
		else if (r->http == PD_HTTP_QUERY)
			k = PD_KEY_QUERY_CONTAINS;
		else if (r->http == PD_HTTP_HEADER_CONTAINS)
			k = PD_KEY_HEADER_CONTAINS;
		else if (r->http && r->http != PD_HTTP_BODY)
			k = r->http == PD_HTTP_PATH_PREFIX ? PD_KEY_PATH_PREFIX : PD_KEY_PATH_CONTAINS;
		else
			k = r->hex ? PD_KEY_HEX_CONTAINS : PD_KEY_CONTAINS;
		break;
	case PD_M_PREFIX: k = r->hex ? PD_KEY_HEX_PREFIX : PD_KEY_PREFIX; break;
	case PD_M_LONGER_THAN: k = PD_KEY_LONGER_THAN; break;
	case PD_M_COMMAND: k = r->http ? PD_KEY_METHOD : PD_KEY_COMMAND; break;
	}
	return pd_name(&pd_match_keys, k);
}

static void put_ports(FILE *f, const struct pd_service_src *s)
{
	for (size_t k = 0; k < s->nports; k++) {
		const struct pd_port_range *r = &s->ports[k];

		fputs(k ? ", " : "", f);
		if (r->lo == r->hi)
			fprintf(f, "%u", r->lo);
		else
			fprintf(f, "\"%u-%u\"", r->lo, r->hi);
	}
}

static void automaton_counts(const struct pd_image_service *is, const struct pd_image *img,
			     uint32_t *accepting)
{
	*accepting = 0;
	for (uint32_t i = 0; i < is->nstates; i++) {
		const struct pd_state_out *o = &img->outs[is->first_state + i];

		*accepting += o->deny || o->redirect || o->allow || o->audit;
	}
}

#define PD_STR_(x) #x
#define PD_STR(x) PD_STR_(x)

/* How the data plane scans a service's messages where no pattern has
 * begun: the bytes its 8-byte steps stop at, as a quoted string. */
static void put_skip(FILE *f, const struct pd_service *svc, bool json)
{
	uint8_t b[PD_SKIP_MAX];

	if (PD_FRAME_IS_PROTO(svc->framing)) {
		fputs(json ? "null" : svc->pflags & PD_PF_CONTENT ?
		      "parsed; every token walked (a contains rule)" :
		      "parsed; the command's tokens walked, contents passed over by length", f);
		return;
	}
	if (svc->noscan) {
		fputs(json ? "null" : "none (no byte patterns: only the length of a message counts)",
		      f);
		return;
	}
	if (svc->gstride) {
		if (json)
			fputs("null", f);
		else
			fprintf(f, "%u bytes at a time by the patterns' 3-byte sequences (more than "
				PD_STR(PD_SKIP_MAX) " bytes begin a pattern)", svc->gstride);
		return;
	}
	if (!svc->nskip) {
		fputs(json ? "null" : "byte by byte (more than " PD_STR(PD_SKIP_MAX)
		      " bytes begin a pattern)", f);
		return;
	}
	if (!json)
		fputs("8 bytes at a time, up to any of ", f);
	for (uint32_t k = 0; k < svc->nskip && k < PD_SKIP_MAX; k++)
		b[k] = (uint8_t)svc->skip[k];
	fputc('"', f);
	put_escaped(f, b, svc->nskip, json);
	fputc('"', f);
}

/* When the service holds a message back: "never", or its reasons. */
static const char *hold_name(unsigned h)
{
	static const char *const n[8] = {
		"never", "prefix", "allowlist", "prefix,allowlist", "line", "prefix,line",
		"allowlist,line", "prefix,allowlist,line",
	};

	return n[h & 7];
}

/* The text form is itself a valid policy: comments carry what the
 * compiler derived, settings carry every value including defaults. */
void pd_dump_text(FILE *f, const struct pd_policy *p, const struct pd_image *img)
{
	const struct pd_daemon_src *dm = &p->daemon;

	fprintf(f, "# policyd dump of %s\n", p->file);
	fprintf(f, "# %u services, %zu rules, %u automaton states, row width %u, %llu image bytes\n",
		img->nservices, p->nrules, img->nstates, img->row_width,
		(unsigned long long)img->bytes);
	fprintf(f, "version = %d;\n\ndaemon = {\n", p->version);
	if (dm->cgroup)
		fprintf(f, "  cgroup = \"%s\";\n", dm->cgroup);
	else
		fprintf(f, "  # cgroup: the cgroup2 mount\n");
	if (dm->name)
		fprintf(f, "  name = \"%s\";\n", dm->name);
	fprintf(f, "  user = \"%s\";\n  pin_dir = \"%s\";\n  on_exit = \"%s\";\n"
		"  mode = \"%s\";\n  log_rate = %u;\n  excerpt = %u;\n  fail_mode = \"%s\";\n"
		"  max_connections = %u;\n};\n\n", dm->user, dm->pin_dir,
		pd_on_exit_name(dm->keep), pd_mode_name(dm->monitor), dm->log_rate,
		dm->excerpt, pd_fail_mode_name(dm->fail_open), dm->max_connections);
	fprintf(f, "sinks = (");
	for (size_t i = 0; i < p->nsinks; i++)
		fprintf(f, "%s\n  { name = \"%s\"; file = \"%s\"; }", i ? "," : "",
			p->sinks[i].name, p->sinks[i].file);
	fprintf(f, "%s);\n\nservices = (", p->nsinks ? "\n" : "");
	for (size_t i = 0; i < p->nservices; i++) {
		const struct pd_service_src *s = &p->services[i];
		const struct pd_image_service *is = &img->services[i];
		uint32_t acc;

		automaton_counts(is, img, &acc);
		fprintf(f, "%s\n  {\n    # automaton: %u states (%u reporting), %u byte classes, "
			"hold: %s, carry: %u\n    # scan: ", i ? "," : "",
			is->nstates, acc, is->svc.nclasses, hold_name(is->svc.hold), is->svc.carry);
		put_skip(f, &is->svc, false);
		fputc('\n', f);
		fprintf(f, "    name = \"%s\";\n    ports = [ ", s->name);
		put_ports(f, s);
		fprintf(f, " ];\n    direction = \"%s\";\n    framing = \"%s\";\n"
			"    inspect = %u;\n    default = \"%s\";\n    hold_timeout = %u;\n",
			pd_direction_name(s->dir), pd_framing_name(s->framing), s->inspect,
			pd_default_name(s->def), s->hold_timeout);
		if (s->excerpt >= 0)
			fprintf(f, "    excerpt = %d;\n", s->excerpt);
		if (s->no_inline)
			fputs("    inline = false;\n", f);
		fputs("    rules = (", f);
		for (size_t k = 0; k < s->nrules; k++) {
			const struct pd_rule_src *r = &s->rules[k];

			fprintf(f, "%s\n      { id = %u; action = \"%s\"; %s = ", k ? "," : "",
				r->id, pd_action_name(r->action), match_key(r));
			if (r->kind == PD_M_LONGER_THAN) {
				fprintf(f, "%u;", r->longer_than);
			} else {
				fputc('"', f);
				if (r->hex)
					put_hex(f, r->pat, r->patlen);
				else
					put_escaped(f, r->pat, r->patlen, false);
				fputs("\";", f);
				if (r->nocase)
					fputs(" nocase = true;", f);
			}
			if (r->sink)
				fprintf(f, " sink = \"%s\";", r->sink);
			if (r->excerpt >= 0)
				fprintf(f, " excerpt = %d;", r->excerpt);
			fputs(" }", f);
		}
		fprintf(f, "%s);\n  }", s->nrules ? "\n    " : "");
	}
	fprintf(f, "\n);\n");
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	put_escaped(f, (const uint8_t *)s, strlen(s), true);
	fputc('"', f);
}

void pd_dump_json(FILE *f, const struct pd_policy *p, const struct pd_image *img)
{
	const struct pd_daemon_src *dm = &p->daemon;

	fprintf(f, "{\n  \"file\": ");
	json_str(f, p->file);
	fprintf(f, ",\n  \"version\": %d,\n  \"daemon\": {\"cgroup\": ", p->version);
	if (dm->cgroup)
		json_str(f, dm->cgroup);
	else
		fputs("null", f);
	fprintf(f, ", \"user\": ");
	json_str(f, dm->user);
	fprintf(f, ", \"pin_dir\": ");
	json_str(f, dm->pin_dir);
	fprintf(f, ", \"on_exit\": \"%s\", \"mode\": \"%s\", \"log_rate\": %u, \"excerpt\": %u, "
		"\"fail_mode\": \"%s\", \"max_connections\": %u},\n",
		pd_on_exit_name(dm->keep), pd_mode_name(dm->monitor), dm->log_rate,
		dm->excerpt, pd_fail_mode_name(dm->fail_open), dm->max_connections);
	fprintf(f, "  \"image\": {\"services\": %u, \"rules\": %zu, \"states\": %u, "
		"\"row_width\": %u, \"bytes\": %llu},\n  \"sinks\": [", img->nservices, p->nrules,
		img->nstates, img->row_width, (unsigned long long)img->bytes);
	for (size_t i = 0; i < p->nsinks; i++) {
		fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
		json_str(f, p->sinks[i].name);
		fprintf(f, ", \"file\": ");
		json_str(f, p->sinks[i].file);
		fputc('}', f);
	}
	fprintf(f, "%s],\n  \"services\": [", p->nsinks ? "\n  " : "");
	for (size_t i = 0; i < p->nservices; i++) {
		const struct pd_service_src *s = &p->services[i];
		const struct pd_image_service *is = &img->services[i];
		uint32_t acc;

		automaton_counts(is, img, &acc);
		fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
		json_str(f, s->name);
		fprintf(f, ", \"ports\": [");
		for (size_t k = 0; k < s->nports; k++)
			fprintf(f, "%s[%u, %u]", k ? ", " : "", s->ports[k].lo, s->ports[k].hi);
		fprintf(f, "], \"direction\": \"%s\", \"framing\": \"%s\", \"inspect\": %u, "
			"\"default\": \"%s\", \"hold_timeout\": %u,\n     \"automaton\": {\"states\": %u, "
			"\"reporting\": %u, \"classes\": %u, \"hold\": \"%s\", \"carry\": %u, "
			"\"scan\": \"%s\", \"skip_to\": ",
			pd_direction_name(s->dir), pd_framing_name(s->framing), s->inspect,
			pd_default_name(s->def), s->hold_timeout, is->nstates, acc, is->svc.nclasses,
			hold_name(is->svc.hold), is->svc.carry,
			PD_FRAME_IS_PROTO(is->svc.framing) ? "parse" :
			is->svc.noscan ? "none" : is->svc.gstride ? "grams" :
			is->svc.nskip ? "words" : "bytes");
		put_skip(f, &is->svc, true);
		if (is->svc.gstride)
			fprintf(f, ", \"gram_stride\": %u", is->svc.gstride);
		fputc('}', f);
		if (s->excerpt >= 0)
			fprintf(f, ", \"excerpt\": %d", s->excerpt);
		if (s->no_inline)
			fputs(", \"inline\": false", f);
		fprintf(f, ",\n     \"rules\": [");
		for (size_t k = 0; k < s->nrules; k++) {
			const struct pd_rule_src *r = &s->rules[k];

			fprintf(f, "%s\n       {\"id\": %u, \"line\": %d, \"action\": \"%s\", \"match\": "
				"\"%s\", ", k ? "," : "", r->id, r->line, pd_action_name(r->action),
				match_key(r));
			if (r->kind == PD_M_LONGER_THAN) {
				fprintf(f, "\"bytes\": %u", r->longer_than);
			} else {
				fputs("\"hex\": \"", f);
				put_hex(f, r->pat, r->patlen);
				fprintf(f, "\", \"nocase\": %s", r->nocase ? "true" : "false");
			}
			if (r->sink) {
				fputs(", \"sink\": ", f);
				json_str(f, r->sink);
			}
			if (r->excerpt >= 0)
				fprintf(f, ", \"excerpt\": %d", r->excerpt);
			fputc('}', f);
		}
		fprintf(f, "%s]}", s->nrules ? "\n     " : "");
	}
	fprintf(f, "%s]\n}\n", p->nservices ? "\n  " : "");
}
