// SPDX-License-Identifier: GPL-2.0-only
/*
 * framing = "http": the parser the BPF program runs (bpf/http.h through
 * bpf/proto.h). The forms of the protocol issue and the edges of the
 * grammar, then random request targets against a reference normaliser
 * written here (decode %XX once, split at '/', drop empty and "."
 * segments, refuse ".."), and random heads and bodies (Content-Length,
 * chunked) in random pieces against where the request must end. Then
 * verdicts of a compiled policy with method, path_prefix and
 * path_contains rules against a naive matcher on the reference's path;
 * and of header and body (contains) rules against a naive matcher on the
 * header lines and the body's bytes a generator made, in any case, with
 * spaces and tabs around and inside values, bodies by Content-Length or
 * in chunks, the same bytes in the path, other headers and the body.
 * The query against a reference decoder (an escape decoded once, one that
 * is not handed over as sent), and query_contains and header_contains
 * rules against a naive matcher on the decoded query and the normalised
 * header lines, and a nocase path_contains, with the same bytes in the
 * path and the other section.
 *
 * PD_HTTP_SEED=N picks another seed; PD_HTTP_ROUNDS=N runs longer.
 */
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "tap.h"

#define PD_TEST_SEED 0x853c49e6748fea9bull
#include "image_walk.h"
#include "proto.h"
#include "proto_check.h"

#define MAXTOK 512

struct got {
	int done;               /* 1 ended, -1 refused, 0 more needed */
	size_t end;
	int ntok;
	char tok[2][MAXTOK];    /* the method and the path */
	bool hasq;              /* a query section began */
	size_t qlen;
	char query[MAXTOK];     /* its symbols */
};

/* The parser from 0, counted bytes passed over in random pieces. */
static void our_parse(const uint8_t *b, size_t len, struct got *g)
{
	struct pd_parse ps = { 0 };
	struct pd_syms o;
	size_t pos = 0, tl = 0;
	bool inq = false;
	int r;

	memset(g, 0, sizeof(*g));
	while (pos < len) {
		__u32 k = pd_proto_counted(&ps, PD_FRAME_HTTP);

		if (k && rnd(2)) {
			k = 1 + rnd(k);
			if (k > len - pos)
				k = (__u32)(len - pos);
			pd_proto_pass(&ps, PD_FRAME_HTTP, k);
			pos += k;
			continue;
		}
		r = pd_proto_byte(&ps, PD_FRAME_HTTP, b[pos++], &o);
		for (__u32 i = 0; i < o.n; i++) {
			if (o.s[i] == PD_SYM_QUERY || o.s[i] == PD_SYM_HEADERS || o.s[i] == PD_SYM_BODY) {
				inq = o.s[i] == PD_SYM_QUERY;
				g->hasq |= inq;
				continue;
			}
			if (inq) {
				if (o.s[i] < 256 && g->qlen < MAXTOK - 1)
					g->query[g->qlen++] = (char)o.s[i];
				continue;
			}
			if (o.s[i] == PD_SYM_END) {
				g->ntok++;
				tl = 0;
				continue;
			}
			if (g->ntok < 2 && tl < MAXTOK - 1)
				g->tok[g->ntok][tl++] = (char)o.s[i];
		}
		if (r == PD_P_BAD || r == PD_P_DONE) {
			g->done = r == PD_P_DONE ? 1 : -1;
			g->end = pos;
			return;
		}
	}
}

/* ---- the reference normaliser: the path a server serves, or NULL ---- */

static int hexv(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ?
	       (c | 0x20) - 'a' + 10 : -1;
}

static bool ref_path(const char *raw, char *out)
{
	char dec[MAXTOK], seg[MAXTOK];
	size_t n = 0, o = 0, sl = 0;
	bool any = false, trail = false;

	for (size_t i = 0; raw[i] && raw[i] != '?' && raw[i] != '#'; i++) {
		if (raw[i] == '%') {
			int h = raw[i + 1] ? hexv(raw[i + 1]) : -1, l = h >= 0 && raw[i + 2] ?
									hexv(raw[i + 2]) : -1;

			if (h < 0 || l < 0 || !(h || l))
				return false;
			dec[n++] = (char)(h << 4 | l);
			i += 2;
		} else {
			dec[n++] = raw[i];
		}
	}
	out[o++] = '/';
	for (size_t i = 0; i <= n; i++) {
		if (i < n && dec[i] != '/') {
			seg[sl++] = dec[i];
			continue;
		}
		trail = !sl || (sl == 1 && seg[0] == '.');
		if (sl == 2 && seg[0] == '.' && seg[1] == '.')
			return false;
		if (sl && !(sl == 1 && seg[0] == '.')) {
			if (any)
				out[o++] = '/';
			memcpy(out + o, seg, sl);
			o += sl;
			any = true;
		}
		sl = 0;
	}
	if (any && trail)
		out[o++] = '/';
	out[o] = 0;
	return true;
}

/* The query a server's application reads: the bytes after the first '?'
 * or '#', an escape of two hex digits decoded, anything else as sent.
 * Its length, or -1 when the target has none. */
static long ref_query(const char *raw, char *out)
{
	const char *q = raw + strcspn(raw, "?#");
	long n = 0;

	if (!*q)
		return -1;
	for (q++; *q; q++) {
		int h = *q == '%' && q[1] ? hexv(q[1]) : -1, l = h >= 0 && q[2] ? hexv(q[2]) : -1;

		if (h >= 0 && l >= 0) {
			out[n++] = (char)(h << 4 | l);
			q += 2;
		} else {
			out[n++] = *q;
		}
	}
	return n;
}

/* ---- the issue's forms and the grammar's edges ---- */

static void fixed(void)
{
	static const struct {
		const char *in;
		int done;
		const char *method, *path;
	} t[] = {
		{ "GET /%2eenv HTTP/1.1\r\nHost: a\r\n\r\n", 1, "GET", "/.env" },
		{ "GET /.%65nv HTTP/1.1\r\nHost: a\r\n\r\n", 1, "GET", "/.env" },
		{ "GET /%2Egit/config HTTP/1.1\r\n\r\n", 1, "GET", "/.git/config" },
		{ "GET /.git%2fconfig HTTP/1.1\r\n\r\n", 1, "GET", "/.git/config" },
		{ "GET /.git%2Fconfig HTTP/1.0\r\n\r\n", 1, "GET", "/.git/config" },
		{ "GET http://host:80/%2eenv HTTP/1.1\r\n\r\n", 1, "GET", "/.env" },
		{ "GET HTTPS://h/a//b/./c/ HTTP/1.1\r\n\r\n", 1, "GET", "/a/b/c/" },
		{ "GET http://h HTTP/1.1\r\n\r\n", 1, "GET", "/" },
		{ "GET http://h?x HTTP/1.1\r\n\r\n", 1, "GET", "/" },
		{ "GET /static../secret.txt HTTP/1.1\r\n\r\n", 1, "GET", "/static../secret.txt" },
		{ "GET /a/%2e%2e/b HTTP/1.1\r\n\r\n", -1, NULL, NULL },
		{ "GET /a/.. HTTP/1.1\r\n\r\n", -1, NULL, NULL },
		{ "GET /a/... HTTP/1.1\r\n\r\n", 1, "GET", "/a/..." },
		{ "GET /%252e HTTP/1.1\r\n\r\n", 1, "GET", "/%2e" },
		{ "GET /%00 HTTP/1.1\r\n\r\n", -1, NULL, NULL },
		{ "GET /%zz HTTP/1.1\r\n\r\n", -1, NULL, NULL },
		{ "GET /a%2 HTTP/1.1\r\n\r\n", -1, NULL, NULL },
		{ "GET /x?a=/../ HTTP/1.1\r\n\r\n", 1, "GET", "/x" },
		{ "TRACE\t/ HTTP/1.1\r\n\r\n", -1, NULL, NULL },
		{ " TRACE / HTTP/1.1\r\n\r\n", -1, NULL, NULL },
		{ "TRACE  / HTTP/1.1\r\n\r\n", -1, NULL, NULL },
		{ "trace / HTTP/1.1\r\n\r\n", -1, NULL, NULL },
		{ "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", -1, NULL, NULL },
		{ "OPTIONS * HTTP/1.1\r\n\r\n", 1, "OPTIONS", "*" },
		{ "GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", -1, NULL, NULL },
		{ "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 1, "GET", "/" },
		{ "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", -1, NULL, NULL },
		{ "GET / HTTP/1.1\r\nNo colon\r\n\r\n", -1, NULL, NULL },
		{ "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", -1, NULL, NULL },
		{ "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nTRACE", 1, "POST", "/" },
		{ "POST / HTTP/1.1\r\ncontent-length:  3 \r\n\r\nabc", 1, "POST", "/" },
		{ "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", -1, NULL, NULL },
		{ "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", -1, NULL, NULL },
		{ "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", -1, NULL, NULL },
		{ "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", -1, NULL, NULL },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", -1, NULL, NULL },
		{ "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -1, NULL, NULL },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n", 1, "POST", "/" },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", -1, NULL, NULL },
		{ "GET / HTTP/1.1\n\n", 1, "GET", "/" },
		{ "GET / HTTP/1.1\r\nContent-Lengthx: 3\r\n\r\n", 1, "GET", "/" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct got g;
		size_t len = strlen(t[i].in);

		our_parse((const uint8_t *)t[i].in, len, &g);
		if (t[i].done < 0) {
			if (!ok(g.done == -1, "case %zu: refused", i)) {
				printf("# done %d at %zu\n", g.done, g.end);
				show("request", (const uint8_t *)t[i].in, len);
			}
			continue;
		}
		if (!ok(g.done == 1 && g.end == len && g.ntok == 2 && !strcmp(g.tok[0], t[i].method) &&
			!strcmp(g.tok[1], t[i].path), "case %zu: passes as %s %s", i, t[i].method,
			t[i].path)) {
			printf("# done %d end %zu of %zu, tokens %d '%s' '%s'\n", g.done, g.end, len,
			       g.ntok, g.tok[0], g.tok[1]);
			show("request", (const uint8_t *)t[i].in, len);
		}
	}
}

static void fixed_queries(void)
{
	static const struct {
		const char *in, *path, *query;   /* query NULL: refused */
	} t[] = {
		{ "GET /x?a=/../ HTTP/1.1\r\n\r\n", "/x", "a=/../" },
		{ "GET /?q=%24%7Bjndi:ldap://h/a%7d HTTP/1.1\r\n\r\n", "/", "q=${jndi:ldap://h/a}" },
		{ "GET /x?d=50%&e=%zz&f=%4 HTTP/1.1\r\n\r\n", "/x", "d=50%&e=%zz&f=%4" },
		{ "GET /x?a=%A%41&b=%%24 HTTP/1.1\r\n\r\n", "/x", "a=%AA&b=%$" },
		{ "GET /x?a=%f HTTP/1.0\r\n\r\n", "/x", "a=%f" },
		{ "GET /x?a=%2 HTTP/1.1\r\n\r\n", "/x", "a=%2" },
		{ "GET /x?%252e+x=%e9 HTTP/1.1\r\n\r\n", "/x", "%2e+x=\xe9" },
		{ "GET http://h?x=1 HTTP/1.1\r\n\r\n", "/", "x=1" },
		{ "GET HTTP://h/a/?x=/etc/passwd HTTP/1.1\r\n\r\n", "/a/", "x=/etc/passwd" },
		{ "GET /p#frag?x HTTP/1.1\r\n\r\n", "/p", "frag?x" },
		{ "GET /p? HTTP/1.1\r\nHost: a\r\n\r\n", "/p", "" },
		{ "GET /%2e%2fx?%2e%2e/ HTTP/1.1\r\n\r\n", "/x", "../" },
		{ "GET /x?a\tb HTTP/1.1\r\n\r\n", "/x", NULL },
		{ "GET /x?a\x7f HTTP/1.1\r\n\r\n", "/x", NULL },
		{ "GET /x?a=%zz HTTP/1.1\r\n\r\n", "/x", "a=%zz" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct got g;
		size_t len = strlen(t[i].in);

		our_parse((const uint8_t *)t[i].in, len, &g);
		if (!t[i].query) {
			ok(g.done == -1, "query %zu: refused", i);
			continue;
		}
		g.query[g.qlen] = 0;
		if (!ok(g.done == 1 && g.end == len && !strcmp(g.tok[1], t[i].path) && g.hasq &&
			!strcmp(g.query, t[i].query), "query %zu: path %s and its query", i,
			t[i].path)) {
			printf("# done %d, path '%s', query (%d) '%s'\n", g.done, g.tok[1], g.hasq,
			       g.query);
			show("request", (const uint8_t *)t[i].in, len);
		}
	}
	{
		struct got g;
		const char *in = "GET /a HTTP/1.1\r\nX: ?q=1\r\n\r\n";

		our_parse((const uint8_t *)in, strlen(in), &g);
		ok(g.done == 1 && !g.hasq, "a target without '?' or '#' has no query section");
	}
}

/* ---- random targets, heads and bodies ---- */

static size_t put(uint8_t *b, size_t n, const char *s)
{
	size_t k = strlen(s);

	memcpy(b + n, s, k);
	return n + k;
}

static void gen_target(char *t)
{
	static const char *const parts[] = { "/", "/", "a", "b", ".", "..", "%2e", "%2E", "%2f",
					     "%2F", "%25", "%41", "env", "%", "%0", "%00", "?q=/..",
					     "#f", "~", "%c3%a9" };
	size_t n = 0;

	if (!rnd(6))
		n = (size_t)sprintf(t, rnd(2) ? "http://h%u" : "HTTPS://x:8%u", rnd(10));
	t[n++] = '/';
	for (uint32_t k = rnd(10); k--;) {
		const char *p = parts[rnd(rnd(3) ? 13 : 20)];

		strcpy(t + n, p);
		n += strlen(p);
	}
	if (!rnd(3)) {
		static const char *const q[] = { "?", "a", "=", "&", "%", "%2", "%41", "%4g", "%zz",
						 "%%", "%24%7B", "+", "/../", "#", "%00", "%e9", "%2F" };

		t[n++] = rnd(4) ? '?' : '#';
		for (uint32_t k = rnd(12); k--;) {
			const char *p = q[rnd(17)];

			strcpy(t + n, p);
			n += strlen(p);
		}
	}
	t[n] = 0;
}

/* Header lines of every kind the parser tells apart, byte by byte and
 * taken one symbol each (pd_proto_quick): the names it looks for, in any
 * case and almost, values with spaces and tabs inside and around, with
 * bytes above 0x7e and refused ones, and bodies and chunks after. */
static void quick_headers(long rounds)
{
	static const char *const names[] = { "Host", "Content-Lengthx", "Content-Lengt",
					     "Transfer-Encodings", "Upgrade-Insecure-Requests", "Up",
					     "X-A", "User-Agent", "Cookie", "c", "Content-Length",
					     "content-length", "Transfer-Encoding",
					     "TRANSFER-ENCODING", "Upgrade", "upgrade", "Bad Name",
					     "X\x01" };
	static const char *const values[] = { "h", "12", " 12 ", "1 2", "12x", "chunked",
					      "CHUNKED", "gzip, chunked", "chunk", "h2c", "H2C",
					      "h2", "h2c2", "websocket", "Mozilla/5.0 (X11; Linux "
					      "x86_64) Gecko/20100101 Firefox/128.0",
					      "a=1; b=2;\tc=3", "caf\xc3\xa9", "x\x7fy", "x\x01y",
					      "${jndi:ldap://x/a}", "", " ", "\t\t" };
	static uint8_t buf[16384];
	long bytes = 0, taken = 0, bad = 0;

	for (long i = 0; i < rounds && bad < 3; i++) {
		size_t n = put(buf, 0, rnd(2) ? "GET /a?b=c HTTP/1.1\r\n" : "POST / HTTP/1.0\n");

		for (uint32_t k = 4 + rnd(8); k--;) {
			n = put(buf, n, names[rnd(rnd(4) ? 10 : rnd(8) ? 16 : 18)]);
			n = put(buf, n, rnd(8) ? ":" : " :");
			n = put(buf, n, rnd(2) ? " " : rnd(2) ? "" : " \t ");
			n = put(buf, n, values[rnd(rnd(6) ? 17 : 23)]);
			n = put(buf, n, rnd(3) ? "" : rnd(2) ? " " : "\t");
			n = put(buf, n, rnd(8) ? "\r\n" : rnd(4) ? "\n" : "\r");
		}
		n = put(buf, n, rnd(4) ? "\r\n" : "\n");
		n = put(buf, n, rnd(2) ? "hello world\r\n0\r\n\r\n" : "12345678901");
		n = put(buf, n, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
		bytes += (long)n;
		bad += !quick_walk(buf, n, PD_FRAME_HTTP, &taken);
	}
	ok(!bad, "header lines of every kind: bytes taken one symbol each leave the parser as "
	   "byte by byte (%ld of %ld)", taken, bytes);
	ok(taken > bytes / 5, "... and many of them are");
}

static void differential(long rounds)
{
	static uint8_t buf[65536];
	long passed = 0, refused = 0, bad = 0, bytes = 0, taken = 0;

	for (long i = 0; i < rounds && bad < 3; i++) {
		char target[MAXTOK], want[MAXTOK], wantq[MAXTOK], *path;
		long qlen;
		bool valid;
		size_t n = 0, end;
		uint32_t body = rnd(3), blen = rnd(4) ? rnd(40) : rnd(3000);
		struct got g;

		gen_target(target);
		path = strstr(target, "://") ? strchr(strstr(target, "://") + 3, '/') : target;
		valid = ref_path(path, want);
		qlen = ref_query(path, wantq);
		n = put(buf, n, rnd(2) ? "GET " : "POST ");
		n = put(buf, n, target);
		n = put(buf, n, rnd(4) ? " HTTP/1.1\r\n" : " HTTP/1.1\n");
		n = put(buf, n, "Host: h\r\nX-A:b\r\n");
		if (body == 1) {
			char h[64];

			sprintf(h, "Content-Length: %u\r\n\r\n", blen);
			n = put(buf, n, h);
			for (uint32_t k = 0; k < blen; k++)
				buf[n++] = "GET / HTTP/1.1\r\n"[rnd(16)];
		} else if (body == 2) {
			n = put(buf, n, "Transfer-Encoding: chunked\r\n\r\n");
			for (uint32_t c = rnd(4); c--;) {
				uint32_t cl = 1 + rnd(blen + 1);
				char h[32];

				sprintf(h, rnd(2) ? "%x\r\n" : "%X;e=1\r\n", cl);
				n = put(buf, n, h);
				for (uint32_t k = 0; k < cl; k++)
					buf[n++] = "0\r\nGET /"[rnd(8)];
				n = put(buf, n, "\r\n");
			}
			n = put(buf, n, rnd(2) ? "0\r\n\r\n" : "0\r\nT: v\r\n\r\n");
		} else {
			n = put(buf, n, "\r\n");
		}
		end = n;
		n = put(buf, n, "GET /next HTTP/1.1\r\n\r\n");     /* the next request */
		bytes += (long)n;
		if (!quick_walk(buf, n, PD_FRAME_HTTP, &taken)) {
			bad++;
			continue;
		}
		our_parse(buf, n, &g);
		if (!valid) {
			if (g.done != -1) {
				printf("# the target %s must be refused; got done %d path '%s'\n", target,
				       g.done, g.tok[1]);
				show("request", buf, end);
				bad++;
			}
			refused++;
			continue;
		}
		if (g.done != 1 || g.end != end || strcmp(g.tok[1], want) || g.hasq != (qlen >= 0) ||
		    (qlen >= 0 && ((long)g.qlen != qlen || memcmp(g.query, wantq, g.qlen)))) {
			printf("# done %d end %zu, want %zu; path '%s', want '%s'; query %d (%zu bytes), "
			       "want %ld bytes\n", g.done, g.end, end, g.tok[1], want, g.hasq, g.qlen,
			       qlen);
			show("request", buf, end);
			bad++;
			continue;
		}
		passed++;
	}
	ok(!bad, "paths and queries against the reference, requests end where their body does: "
	   "%ld rounds, %ld passed, %ld refused; bytes taken one symbol each leave the "
	   "parser as byte by byte (%ld of %ld)", rounds, passed, refused, taken, bytes);
	ok(passed > rounds / 4 && refused > rounds / 20, "... both outcomes seen");
	ok(taken > bytes / 50, "... many bytes taken one symbol each");
	quick_headers(rounds);
}

/* ---- verdicts through a compiled policy ---- */

static void verdicts(long rounds)
{
	static const char text[] =
		"version = 1;\n"
		"services = ( { name = \"h\"; ports = [ 1 ]; framing = \"http\"; rules = (\n"
		"  { id = 1; action = \"deny\"; method = \"TRACE\"; },\n"
		"  { id = 2; action = \"deny\"; path_prefix = \"/.git\"; },\n"
		"  { id = 3; action = \"deny\"; path_contains = \"/.env\"; },\n"
		"  { id = 4; action = \"audit\"; path_prefix = \"/a/\"; },\n"
		"  { id = 5; action = \"allow\"; method = \"GET\"; }\n"
		"); } );\n";
	static const char *const segs[] = { "/", "a", ".git", ".env", "%2egit", "%2Eenv", "b",
					     "/.", "%2f", "x.env", ".gitx" };
	struct pd_policy p;
	struct pd_image img;
	long checked = 0, bad = 0;

	if (!compile_text(text, "http.conf", &p, &img))
		return;
	for (long i = 0; i < rounds && bad < 3; i++) {
		static const char *const methods[] = { "GET", "TRACE", "POST", "TRACES" };
		const char *method = methods[rnd(4)];
		char target[MAXTOK] = "/", want[MAXTOK], req[1024];
		struct pd_match m;
		uint16_t deny = 0;
		size_t n;
		int done;

		for (uint32_t k = rnd(6); k--;)
			strcat(target, segs[rnd(11)]);
		if (!ref_path(target, want))
			continue;
		n = (size_t)snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\n\r\n", method, target);
		done = walk_pieces((const uint8_t *)req, n, 12, &m);
		if (strstr(want, "/.env"))
			deny = 3;
		if (!strncmp(want, "/.git", 5))
			deny = 2;
		if (!strcmp(method, "TRACE"))
			deny = 1;
		if (!verdict_is(&m, done, deny, 4, !strncmp(want, "/a/", 3), 5, !strcmp(method, "GET"),
				(const uint8_t *)req, n)) {
			bad++;
			continue;
		}
		checked++;
	}
	ok(!bad, "verdicts of method and path rules against a naive matcher: %ld requests",
	   checked);
	pd_image_free(&img);
	pd_policy_free(&p);
}

/* The request at buf (end bytes) walked in pieces against what a naive
 * matcher wants of rules 1 to 4 (deny, 0 none) and audit rule 5: counted
 * as bad, or as checked and denied by its rule. */
static void tally(const uint8_t *buf, size_t end, uint16_t deny, bool audit, long *bad,
		  long *checked, long *denied)
{
	struct pd_match m;
	int done = walk_pieces(buf, end, 12, &m);

	if (!verdict_is(&m, done, deny, 5, audit, 6, false, buf, end)) {
		(*bad)++;
		return;
	}
	denied[deny]++;
	(*checked)++;
}

/* The verdicts of rules 1 to 4 against a naive matcher: none differed,
 * and every rule denied some requests while some passed. */
static void denied_by(const char *rules, long bad, long checked, const long denied[5])
{
	ok(!bad, "verdicts of %s against a naive matcher: %ld requests (denied by rule 1: %ld, "
	   "2: %ld, 3: %ld, 4: %ld; passed %ld)", rules, checked, denied[1], denied[2], denied[3],
	   denied[4], denied[0]);
	ok(denied[1] && denied[2] && denied[3] && denied[4] && denied[0] > checked / 10,
	   "... every rule denied some, and some passed");
}

/* ---- header and body rules: sections of their own ---- */

/* A header value as the rules compare it: lower case, no spaces or tabs
 * around it, a run of them inside it one space. */
static void norm_value(const char *v, char *out)
{
	size_t n = 0;
	bool blank = false;

	for (; *v; v++) {
		if (*v == ' ' || *v == '\t') {
			blank = n > 0;
			continue;
		}
		if (blank)
			out[n++] = ' ';
		blank = false;
		out[n++] = (char)tolower((unsigned char)*v);
	}
	out[n] = 0;
}

static void sections(long rounds)
{
	static const char text[] =
		"version = 1;\n"
		"services = ( { name = \"h\"; ports = [ 1 ]; framing = \"http\"; rules = (\n"
		"  { id = 1; action = \"deny\"; header = \"X-Debug\"; },\n"
		"  { id = 2; action = \"deny\"; header = \"X-Mode: fast \\t lane\"; },\n"
		"  { id = 3; action = \"deny\"; contains = \"EVIL\"; },\n"
		"  { id = 4; action = \"deny\"; path_contains = \"/EVIL\"; },\n"
		"  { id = 5; action = \"audit\"; header = \"Accept\"; }\n"
		"); } );\n";
	static const char *const names[] = { "Host", "X-Debug", "x-DEBUG", "X-Debugger", "X-Debu",
					     "My-X-Debug", "X-Mode", "x-mode", "X-Modes", "Accept",
					     "ACCEPT", "Accept-Language" };
	static const char *const values[] = { "1", "fast lane", "FAST\tLANE", "fast  \t lane",
					      "fast lanes", "fast", "fastlane", "x-debug",
					      "X-Debug: 1", "EVIL", "/EVIL", "x-mode: fast lane",
					      "" };
	static const char *const targets[] = { "/", "/a/x-debug", "/EVIL", "/a%2fEVIL", "/EVI",
					       "/x?EVIL" };
	static const char *const ows[] = { "", " ", "\t", "  \t " };
	static uint8_t buf[16384];
	struct pd_policy p;
	struct pd_image img;
	long checked = 0, bad = 0, denied[6] = { 0 };

	if (!compile_text(text, "http-sections.conf", &p, &img))
		return;
	for (long i = 0; i < rounds && bad < 3; i++) {
		const char *target = targets[rnd(6)];
		char body[2048], v[64];
		uint32_t blen = rnd(3) ? rnd(60) : rnd(1500), hl = 0;
		uint16_t deny = 0, hdeny = 0;
		bool audit = false, chunked = rnd(2);
		size_t n = 0, end;

		n = put(buf, n, rnd(2) ? "GET " : "POST ");
		n = put(buf, n, target);
		n = put(buf, n, " HTTP/1.1\r\n");
		for (uint32_t k = rnd(6); k--;) {
			const char *name = names[rnd(12)], *value = values[rnd(13)];

			n = put(buf, n, name);
			n = put(buf, n, ":");
			n = put(buf, n, ows[rnd(4)]);
			n = put(buf, n, value);
			n = put(buf, n, ows[rnd(4)]);
			n = put(buf, n, rnd(4) ? "\r\n" : "\n");
			norm_value(value, v);
			if (!hdeny && !strcasecmp(name, "x-debug"))
				hdeny = 1;
			if (!hdeny && !strcasecmp(name, "x-mode") && !strcmp(v, "fast lane"))
				hdeny = 2;
			audit |= !strcasecmp(name, "accept");
			hl++;
		}
		for (uint32_t k = 0; k < blen;) {
			static const char *const bits[] = { "E", "V", "I", "L", "evil", " ", "/",
							    "\r\n", "0", "X-Debug: 1", "EVIL" };
			const char *w = bits[rnd(40) ? rnd(9) : 9 + rnd(2)];

			for (; *w && k < blen; w++)
				body[k++] = *w;
		}
		if (chunked) {
			n = put(buf, n, "Transfer-Encoding: chunked\r\n\r\n");
			for (uint32_t at = 0; at < blen;) {
				uint32_t cl = 1 + rnd(blen - at < 7 ? blen - at : 7);
				char h[32];

				sprintf(h, rnd(3) ? "%x\r\n" : "%X;e=EVIL\r\n", cl);
				n = put(buf, n, h);
				memcpy(buf + n, body + at, cl);
				n += cl;
				n = put(buf, n, "\r\n");
				at += cl;
			}
			n = put(buf, n, rnd(2) ? "0\r\n\r\n" : "0\r\nX-Debug: EVIL\r\n\r\n");
		} else {
			char h[64];

			sprintf(h, "Content-Length: %u\r\n\r\n", blen);
			n = put(buf, n, h);
			memcpy(buf + n, body, blen);
			n += blen;
		}
		end = n;
		if (strstr(target, "/EVIL") || !strcmp(target, "/a%2fEVIL"))
			deny = 4;
		else if (hdeny)
			deny = hdeny;
		else if (has((const uint8_t *)body, blen, "EVIL"))
			deny = 3;
		tally(buf, end, deny, audit, &bad, &checked, denied);
	}
	denied_by("header and body rules", bad, checked, denied);
	pd_image_free(&img);
	pd_policy_free(&p);
}

/* ---- query_contains and header_contains ---- */

/* Where w (n bytes) first ends in a (k bytes), in any case with nocase:
 * the offset after it, or 0. */
static size_t ends_at(const char *a, size_t k, const char *w, bool nocase)
{
	size_t n = strlen(w);

	for (size_t i = 0; i + n <= k; i++)
		if (nocase ? !strncasecmp(a + i, w, n) : !memcmp(a + i, w, n))
			return i + n;
	return 0;
}

static void query_headers(long rounds)
{
	static const char text[] =
		"version = 1;\n"
		"services = ( { name = \"h\"; ports = [ 1 ]; framing = \"http\"; rules = (\n"
		"  { id = 1; action = \"deny\"; query_contains = \"${jndi:\"; nocase = true; },\n"
		"  { id = 2; action = \"deny\"; query_contains = \"/etc/passwd\"; },\n"
		"  { id = 3; action = \"deny\"; header_contains = \"${JNDI:\"; },\n"
		"  { id = 4; action = \"deny\"; path_contains = \"/admin\"; nocase = true; },\n"
		"  { id = 5; action = \"audit\"; header_contains = \"User-Agent:  Mozilla \\t X\"; }\n"
		"); } );\n";
	static const char *const segs[] = { "/", "admin", "a", "%24%7bjndi:", "etc", "passwd",
					    "%2f", "AdMin" };
	static const char *const qs[] = { "a", "=", "&", "${jndi:", "${JnDi:", "%24%7Bjndi:",
					  "%24%7bJNDI%3a", "$%7bjndi:", "/etc/passwd", "%2fetc%2fpasswd",
					  "/ETC/passwd", "/etc/pass", "%", "%zz", "$", "{jndi:", "/admin" };
	static const char *const names[] = { "Host", "User-Agent", "X-A", "X-Jndi" };
	static const char *const values[] = { "1", "${jndi:ldap://h/a}", "${JNDI:x}",
					      "$ {jndi:x}", "%24%7bjndi:x", "Mozilla \t X/5.0",
					      "mozilla x", "MOZILLA  x", "Mozilla Y", "/etc/passwd",
					      "/admin", "" };
	static uint8_t buf[4096];
	struct pd_policy p;
	struct pd_image img;
	long checked = 0, bad = 0, denied[5] = { 0 };

	if (!compile_text(text, "http-query.conf", &p, &img))
		return;
	for (long i = 0; i < rounds && bad < 3; i++) {
		char target[MAXTOK] = "/", path[MAXTOK], query[MAXTOK], lines[2048], v[128];
		size_t n = 0, ln = 0, end, at1, at2;
		uint16_t deny = 0;
		bool audit = false;
		long qlen;

		for (uint32_t k = rnd(4); k--;)
			strcat(target, segs[rnd(8)]);
		if (rnd(4)) {
			strcat(target, rnd(5) ? "?" : "#");
			for (uint32_t k = rnd(6); k--;)
				strcat(target, qs[rnd(17)]);
		}
		if (!ref_path(target, path))
			continue;
		qlen = ref_query(target, query);
		n = put(buf, n, "GET ");
		n = put(buf, n, target);
		n = put(buf, n, " HTTP/1.1\r\n");
		for (uint32_t k = rnd(4); k--;) {
			const char *name = names[rnd(4)], *value = values[rnd(12)];

			n = put(buf, n, name);
			n = put(buf, n, rnd(2) ? ": " : ":\t");
			n = put(buf, n, value);
			n = put(buf, n, "\r\n");
			norm_value(value, v);
			ln += (size_t)sprintf(lines + ln, "\n%s: %s", name, v);
		}
		n = put(buf, n, "\r\n");
		end = n;
		for (size_t k = 0; k < ln; k++)
			lines[k] = (char)tolower((unsigned char)lines[k]);
		/* the first deny in the order the request is walked */
		at1 = qlen > 0 ? ends_at(query, (size_t)qlen, "${jndi:", true) : 0;
		at2 = qlen > 0 ? ends_at(query, (size_t)qlen, "/etc/passwd", false) : 0;
		if (strcasestr(path, "/admin"))
			deny = 4;
		else if (at1 && (!at2 || at1 < at2))
			deny = 1;
		else if (at2)
			deny = 2;
		else if (ends_at(lines, ln, "${jndi:", false))
			deny = 3;
		audit = ends_at(lines, ln, "user-agent: mozilla x", false);
		tally(buf, end, deny, audit, &bad, &checked, denied);
	}
	denied_by("query_contains and header_contains", bad, checked, denied);
	pd_image_free(&img);
	pd_policy_free(&p);
}

/* path_prefix with nocase: the path's start in any case, and still only
 * its start. */
static void nocase_prefix(void)
{
	static const char text[] =
		"version = 1;\n"
		"services = ( { name = \"h\"; ports = [ 1 ]; framing = \"http\"; rules = (\n"
		"  { id = 1; action = \"deny\"; path_prefix = \"/Admin\"; nocase = true; }\n"
		"); } );\n";
	static const struct {
		const char *req;
		uint16_t deny;
	} t[] = {
		{ "GET /admin/x HTTP/1.1\r\n\r\n", 1 }, { "GET /ADMIN HTTP/1.1\r\n\r\n", 1 },
		{ "GET /%41dmin HTTP/1.1\r\n\r\n", 1 }, { "GET /x/admin HTTP/1.1\r\n\r\n", 0 },
		{ "GET /x?/admin HTTP/1.1\r\n\r\n", 0 },
	};
	struct pd_policy p;
	struct pd_image img;

	if (!compile_text(text, "http-nocase.conf", &p, &img))
		return;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct pd_match m;
		int done = walk_pieces((const uint8_t *)t[i].req, strlen(t[i].req), 12, &m);

		ok(verdict_is(&m, done, t[i].deny, 2, false, 3, false, (const uint8_t *)t[i].req,
			      strlen(t[i].req)), "path_prefix with nocase: case %zu %s", i,
		   t[i].deny ? "denied" : "passes");
	}
	pd_image_free(&img);
	pd_policy_free(&p);
}

static void all_fixed(void)
{
	fixed();
	fixed_queries();
	nocase_prefix();
}

static void all_verdicts(long rounds)
{
	verdicts(rounds);
	sections(rounds);
	query_headers(rounds);
}

int main(void)
{
	return run_parser_tests("PD_HTTP", all_fixed, differential, all_verdicts);
}
