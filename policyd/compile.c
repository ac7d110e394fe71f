// SPDX-License-Identifier: GPL-2.0-only
/*
 * Policy compiler: validated policy -> image (every map's contents).
 *
 * Per service, all contains/prefix patterns become one DFA over byte
 * classes. The patterns are first put into a trie with two roots: U for
 * contains patterns (matched anywhere) and A for prefix patterns (matched
 * at a message start). A trie edge is labelled with an exact byte or, for
 * a nocase letter, with both cases of it. The DFA is the subset
 * construction over that trie: a DFA state is the set of trie nodes that
 * are live after the input so far; U's root is in every set (a contains
 * pattern may begin at any byte), A's root only in the start set. When all
 * patterns agree on case, this is exactly Aho-Corasick; mixed case and
 * anchoring are handled without special cases. The per-byte cost in the
 * kernel is one table lookup whatever the number of rules.
 *
 * Framing http walks a request in sections (policyd.h, PD_SYM_HEADERS):
 * the request line from U, the header lines from a root H, the body from
 * a root B, the target's query from a root Q. A state's nodes are all of
 * one section, and its section's root takes U's place in it, so that no
 * pattern of one section begins in another.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define LABEL_FOLD 256          /* labels 256..281: a nocase letter a..z */
#define LABEL_END 282           /* protocol framings: the end of a token (PD_SYM_END) */
/* Node entries of the state sets while building (4 bytes each): with the
 * trie, the rows and the image, what bounds the compiler's memory. */
#define PD_MAX_SET_NODES (1u << 25)
#define NLABELS (256 + 26 + 1)

/* A trie node, with the edge that leads to it: its children are a list
 * (child, then sibling), so that the nodes of long patterns, which have
 * one child each, need no allocation of their own. */
struct node {
	uint32_t child;         /* first child (0: none; the roots are no child) */
	uint32_t sibling;       /* next child of the same parent */
	uint16_t label;         /* of the edge from the parent */
	uint32_t out;           /* head of this node's output list (0: none) */
	uint32_t depth;         /* bytes from its root */
	bool anchored;          /* belongs to the prefix trie */
	uint8_t section;        /* framing http: 0 the request line, 1 the header
	                         * lines, 2 the body, 3 the query (the root it grows
	                         * from: pd_http_section_of) */
	uint16_t later;         /* anchored: the lowest rule index a longer prefix
	                         * through this node reports (0: none) */
};

struct outlink {
	uint32_t rule;          /* rule index */
	uint8_t action;
	uint32_t next;
};

struct vec32 {
	uint32_t *v;
	uint32_t n, cap;
};

struct builder {
	struct pd_diag *d;
	int line;               /* the service's line, for errors */
	uint32_t state_budget;  /* states this service may still create (PD_MAX_STATES) */
	uint32_t byte_states;   /* ... before the image passes PD_MAX_IMAGE_BYTES */
	uint32_t width;         /* the image's row width with this service in it */
	uint32_t prev_states;   /* states of the services before it */
	uint32_t ntrie[2];      /* nodes of the contains and the prefix trie */
	struct node *nodes;
	uint32_t nnodes, capnodes;
	struct outlink *outs;
	uint32_t nouts, capouts;
	/* byte classes */
	uint16_t cls[256];
	uint32_t ncls;
	uint16_t label_cls[NLABELS][2];
	uint8_t label_ncls[NLABELS];
	/* DFA: state i is the sorted node set sets.v[set_off[i] .. + set_len[i]] */
	struct vec32 sets, set_off, set_len;
	uint32_t *hash;         /* open addressing: state id + 1, 0 empty */
	uint32_t hcap;
	uint32_t *rows;         /* nstates * ncls transitions (local ids) */
	size_t caprows;
	struct pd_state_out *souts;
	uint32_t capsouts;
	/* scratch for one state's successors */
	struct vec32 *bucket;   /* per class */
	struct vec32 touched;
	struct vec32 tmp;
	bool oom;
	bool full;              /* past a limit (said) */
	bool fold_commands;     /* framing resp: command names in any case */
	uint32_t end_class;     /* protocol framings: the class of LABEL_END */
	uint32_t root[4];       /* each section's root node (U, H, B, Q) */
	uint32_t sstart[4];     /* each section's start state (local): {its root} */
};

static __attribute__((noinline)) bool vec_grow(struct vec32 *v)
{
	uint32_t cap = v->cap ? v->cap * 2 : 16;
	uint32_t *nv = realloc(v->v, (size_t)cap * sizeof(*nv));

	if (!nv)
		return false;
	v->v = nv;
	v->cap = cap;
	return true;
}

/* Inline: the subset construction pushes a few hundred million times for
 * a large policy. */
static inline bool vec_push(struct vec32 *v, uint32_t x)
{
	if (__builtin_expect(v->n == v->cap, 0) && !vec_grow(v))
		return false;
	v->v[v->n++] = x;
	return true;
}

static void *grow(void *p, uint32_t *cap, uint32_t need, size_t size)
{
	uint32_t c = *cap ? *cap : 64;
	void *np;

	if (need <= *cap)
		return p;
	while (c < need)
		c *= 2;
	np = realloc(p, (size_t)c * size);
	if (np)
		*cap = c;
	return np;
}

static uint32_t new_node(struct builder *b, bool anchored)
{
	struct node *n = grow(b->nodes, &b->capnodes, b->nnodes + 1, sizeof(*n));

	if (!n) {
		b->oom = true;
		return 0;
	}
	b->nodes = n;
	memset(&n[b->nnodes], 0, sizeof(*n));
	n[b->nnodes].anchored = anchored;
	return b->nnodes++;
}

/* Whether a nocase pattern's byte matches both of its cases: an ASCII
 * letter. */
static bool folds(uint8_t byte, bool nocase)
{
	return nocase && isalpha(byte) && byte < 128;
}

static uint16_t label_of(uint8_t byte, bool nocase)
{
	if (folds(byte, nocase))
		return (uint16_t)(LABEL_FOLD + tolower(byte) - 'a');
	return byte;
}

/* The labels of a header rule's pattern ("name" or "name: value", in
 * lower case) as the parser hands a header line over (bpf/http.h):
 * '\n', the name, ':', and the space, the value and the line's '\n' when
 * one is given. How many, at most r->patlen + 2. */
static size_t header_labels(const struct pd_rule_src *r, uint16_t *l)
{
	const uint8_t *colon = memchr(r->pat, ':', r->patlen);
	size_t n = 0, name = colon ? (size_t)(colon - r->pat) : r->patlen;

	l[n++] = '\n';
	for (size_t i = 0; i < name; i++)
		l[n++] = r->pat[i];
	l[n++] = ':';
	if (!colon)
		return n;
	for (size_t i = name + 1; i < r->patlen; i++)   /* ": " and the value */
		l[n++] = r->pat[i];
	l[n++] = '\n';
	return n;
}

static void add_pattern(struct builder *b, uint32_t root, const struct pd_rule_src *r)
{
	uint32_t cur = root;
	struct outlink *o;

	/* a command: its words, each followed by the end of a token; Redis
	 * reads names in any case, memcached exactly */
	bool cmd = r->kind == PD_M_COMMAND;
	/* a path prefix: the end of the method's token, then the path */
	size_t pre = r->http == PD_HTTP_PATH_PREFIX;
	size_t nsym = pre + r->patlen + cmd;
	uint16_t hdr[PD_MAX_PATTERN + 2];

	if (r->http == PD_HTTP_HEADER)
		nsym = header_labels(r, hdr);
	for (size_t j = 0; j < nsym && !b->oom && !b->full; j++) {
		size_t i = j - pre;
		uint16_t l = r->http == PD_HTTP_HEADER ? hdr[j] :
			     j < pre || i == r->patlen || (cmd && r->pat[i] == ' ') ? LABEL_END :
			     label_of(r->pat[i], r->nocase || (cmd && b->fold_commands));
		struct node *n = &b->nodes[cur];
		uint32_t next = 0, last = 0;

		for (uint32_t c = n->child; c && !next; c = b->nodes[c].sibling) {
			if (b->nodes[c].label == l)
				next = c;
			last = c;
		}
		if (!next) {
			/* each node of a trie is (in) a state of its own */
			if (++b->ntrie[b->nodes[root].anchored] > b->state_budget) {
				pd_diag_add(b->d, r->line, "the patterns of the service up to this "
					    "rule make more than %u automaton states (the limit, with "
					    "the services before it): use fewer or shorter patterns",
					    b->state_budget);
				b->full = true;
				return;
			}
			next = new_node(b, b->nodes[root].anchored);
			if (b->oom)
				return;
			b->nodes[next].section = b->nodes[root].section;
			b->nodes[next].depth = b->nodes[cur].depth + 1;
			b->nodes[next].label = l;
			/* children in the order the patterns name them */
			if (last)
				b->nodes[last].sibling = next;
			else
				b->nodes[cur].child = next;
		}
		cur = next;
	}
	o = grow(b->outs, &b->capouts, b->nouts + 1, sizeof(*o));
	if (!o) {
		b->oom = true;
		return;
	}
	b->outs = o;
	if (!b->nouts)
		b->nouts = 1;       /* link 0 means "none" */
	o[b->nouts] = (struct outlink){ r->index, (uint8_t)r->action, b->nodes[cur].out };
	b->nodes[cur].out = b->nouts++;
}

/* Split the 256 bytes into classes that no label tells apart; under a
 * protocol framing (proto) one more class for the end of a token. */
static void make_classes(struct builder *b, bool line, bool proto)
{
	bool used[NLABELS] = { false };
	int remap[512];

	/* under line framing '\n' ends a message: a class of its own lets
	 * the data plane's table flag exactly those transitions */
	used['\n'] = line;
	for (uint32_t i = 0; i < b->nnodes; i++)
		for (uint32_t c = b->nodes[i].child; c; c = b->nodes[c].sibling)
			used[b->nodes[c].label] = true;
	memset(b->cls, 0, sizeof(b->cls));
	b->ncls = 1;
	for (int l = 0; l < NLABELS; l++) {
		uint8_t members[2];
		int nm = 0;
		uint32_t next = 0;

		if (!used[l] || l == LABEL_END)
			continue;
		if (l < LABEL_FOLD) {
			members[nm++] = (uint8_t)l;
		} else {
			members[nm++] = (uint8_t)('a' + l - LABEL_FOLD);
			members[nm++] = (uint8_t)('A' + l - LABEL_FOLD);
		}
		/* members move to a new class per old class; then renumber */
		for (int i = 0; i < 512; i++)
			remap[i] = -1;
		for (int i = 0; i < nm; i++) {
			uint16_t old = b->cls[members[i]];

			if (remap[old] < 0)
				remap[old] = (int)(b->ncls + i);
			b->cls[members[i]] = (uint16_t)remap[old];
		}
		for (int i = 0; i < 512; i++)
			remap[i] = -1;
		for (int x = 0; x < 256; x++) {
			if (remap[b->cls[x]] < 0)
				remap[b->cls[x]] = (int)next++;
			b->cls[x] = (uint16_t)remap[b->cls[x]];
		}
		b->ncls = next;
	}
	/* no byte is in it: the parsers hand the end of a token over apart */
	b->end_class = proto ? b->ncls++ : 0;
	b->label_cls[LABEL_END][0] = (uint16_t)b->end_class;
	b->label_ncls[LABEL_END] = proto;
	for (int l = 0; l < LABEL_END; l++) {
		if (l < LABEL_FOLD) {
			b->label_cls[l][0] = b->cls[l];
			b->label_ncls[l] = 1;
		} else {
			uint16_t lo = b->cls['a' + l - LABEL_FOLD], up = b->cls['A' + l - LABEL_FOLD];

			b->label_cls[l][0] = lo;
			b->label_cls[l][1] = up;
			b->label_ncls[l] = lo == up ? 1 : 2;
		}
	}
}

static uint32_t hash_set(const uint32_t *s, uint32_t n)
{
	uint32_t h = 2166136261u;

	for (uint32_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 16777619u;
		h ^= h >> 15;
	}
	return h;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void sort_unique(struct vec32 *v)
{
	uint32_t j = 0;

	if (v->n > 16) {
		qsort(v->v, v->n, sizeof(uint32_t), cmp_u32);
	} else {
		for (uint32_t i = 1; i < v->n; i++) {
			uint32_t x = v->v[i], k = i;

			while (k && v->v[k - 1] > x) {
				v->v[k] = v->v[k - 1];
				k--;
			}
			v->v[k] = x;
		}
	}
	for (uint32_t i = 0; i < v->n; i++)
		if (!j || v->v[j - 1] != v->v[i])
			v->v[j++] = v->v[i];
	v->n = j;
}

static bool rehash(struct builder *b)
{
	uint32_t cap = b->hcap ? b->hcap * 2 : 1024;
	uint32_t *h = calloc(cap, sizeof(*h));

	if (!h)
		return false;
	for (uint32_t id = 0; id < b->set_off.n; id++) {
		uint32_t k = hash_set(&b->sets.v[b->set_off.v[id]], b->set_len.v[id]) & (cap - 1);

		while (h[k])
			k = (k + 1) & (cap - 1);
		h[k] = id + 1;
	}
	free(b->hash);
	b->hash = h;
	b->hcap = cap;
	return true;
}

/* What entering a state reports: the lowest rule index per action. */
static void state_out(struct builder *b, const uint32_t *s, uint32_t n, struct pd_state_out *o)
{
	uint32_t depth = 0;

	memset(o, 0, sizeof(*o));
	for (uint32_t i = 0; i < n; i++) {
		const struct node *nd = &b->nodes[s[i]];

		if (nd->depth > depth)
			depth = nd->depth;
		if (nd->anchored && nd->child) {
			uint32_t h = PD_SF_HOLD_RULE(o->flags);

			o->flags |= PD_SF_ANCHORED;
			if (nd->later && (!h || nd->later < h))
				o->flags = (o->flags & 0xffff) | ((uint32_t)nd->later << 16);
		}
		for (uint32_t l = nd->out; l; l = b->outs[l].next) {
			uint16_t r = (uint16_t)b->outs[l].rule, *slot = NULL;

			switch (b->outs[l].action) {
			case PD_ACT_DENY: slot = &o->deny; break;
			case PD_ACT_REDIRECT: slot = &o->redirect; break;
			case PD_ACT_ALLOW: slot = &o->allow; break;
			case PD_ACT_AUDIT: slot = &o->audit; break;
			}
			if (slot && (!*slot || r < *slot))
				*slot = r;
		}
	}
	o->flags |= (depth < PD_SF_DEPTH_MAX ? depth : PD_SF_DEPTH_MAX) << PD_SF_DEPTH_SHIFT;
}

static bool has_out(const struct pd_state_out *o)
{
	return o->deny || o->redirect || o->allow || o->audit;
}

/* The service needs at least `states` states: past one of the limits. */
static void too_big(struct builder *b, uint32_t states)
{
	if (!b->state_budget || states > b->state_budget + b->set_off.n)
		pd_diag_add(b->d, b->line, "the service's automaton grows past the limit of %u "
			    "states (with the services before it): use fewer or shorter "
			    "patterns", PD_MAX_STATES);
	else
		pd_diag_add(b->d, b->line, "the compiled policy grows past %llu MiB of kernel "
			    "memory: this service's automaton needs more than %u states of %u "
			    "byte classes; use fewer or shorter patterns",
			    (unsigned long long)(PD_MAX_IMAGE_BYTES >> 20), states - 1, b->ncls);
}

/* The state id of node set v (sorted, unique), or ~0u with *slot where it
 * would go. */
static uint32_t find(const struct builder *b, const struct vec32 *v, uint32_t *slot)
{
	uint32_t k = hash_set(v->v, v->n) & (b->hcap - 1), id;

	for (; b->hash[k]; k = (k + 1) & (b->hcap - 1)) {
		id = b->hash[k] - 1;
		if (b->set_len.v[id] == v->n &&
		    !memcmp(&b->sets.v[b->set_off.v[id]], v->v, v->n * sizeof(uint32_t)))
			return id;
	}
	*slot = k;
	return ~0u;
}

/* The state id of node set v (sorted, unique), created if new; ~0u on failure. */
static uint32_t intern(struct builder *b, const struct vec32 *v)
{
	uint32_t k, id;

	if (b->set_off.n * 2 >= b->hcap && !rehash(b))
		goto oom;
	id = find(b, v, &k);
	if (id != ~0u)
		return id;
	if (!b->state_budget || !b->byte_states) {
		too_big(b, b->set_off.n + 1);
		return ~0u;
	}
	if (b->sets.n + v->n > PD_MAX_SET_NODES) {
		pd_diag_add(b->d, b->line, "building the service's automaton takes more than "
			    "%u MiB (%u states so far): use fewer or shorter patterns, or fewer "
			    "nocase ones", (unsigned)((uint64_t)PD_MAX_SET_NODES * 4 >> 20),
			    b->set_off.n);
		return ~0u;
	}
	b->state_budget--;
	b->byte_states--;
	id = b->set_off.n;
	b->souts = grow(b->souts, &b->capsouts, id + 1, sizeof(*b->souts));
	if (!b->souts || !vec_push(&b->set_off, b->sets.n) || !vec_push(&b->set_len, v->n))
		goto oom;
	for (uint32_t i = 0; i < v->n; i++)
		if (!vec_push(&b->sets, v->v[i]))
			goto oom;
	state_out(b, v->v, v->n, &b->souts[id]);
	b->hash[k] = id + 1;
	return id;
oom:
	b->oom = true;
	return ~0u;
}

/* Put node x's children into the buckets of their classes. */
static bool bucket_edges(struct builder *b, const struct node *nd)
{
	for (uint32_t c = nd->child; c; c = b->nodes[c].sibling) {
		uint16_t l = b->nodes[c].label;

		for (uint8_t j = 0; j < b->label_ncls[l]; j++) {
			struct vec32 *bk = &b->bucket[b->label_cls[l][j]];

			if (!bk->n && !vec_push(&b->touched, b->label_cls[l][j]))
				return false;
			if (!vec_push(bk, c))
				return false;
		}
	}
	return true;
}

/*
 * The row of state id (node set S) from the row of a state expanded
 * before it. A byte leads S to {U's root} and the children on that byte
 * of every node of S; so S and S without its deepest node x (the state
 * of x's longest proper suffix, found before S) lead to the same set but
 * for the bytes x has edges on, where x's children join. That is one or
 * two sets to make instead of one per class the nodes of S have edges on
 * (about 40 with case-folded patterns, the root's). 1: done; 0: no such
 * state (the row is made the long way); -1: failure.
 */
static int expand_from_smaller(struct builder *b, uint32_t id)
{
	uint32_t off = b->set_off.v[id], n = b->set_len.v[id], xi = ~0u, depth = 0, fid, slot;
	uint32_t *row;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t dp = b->nodes[b->sets.v[off + i]].depth;

		if (dp > depth) {
			depth = dp;
			xi = i;
		}
	}
	if (xi == ~0u)
		return 0;
	b->tmp.n = 0;
	for (uint32_t i = 0; i < n; i++)
		if (i != xi && !vec_push(&b->tmp, b->sets.v[off + i]))
			goto oom;
	fid = find(b, &b->tmp, &slot);
	if (fid == ~0u || fid >= id)
		return 0;
	row = &b->rows[(size_t)id * b->ncls];
	memcpy(row, &b->rows[(size_t)fid * b->ncls], b->ncls * sizeof(*row));
	b->touched.n = 0;
	if (!bucket_edges(b, &b->nodes[b->sets.v[off + xi]]))
		goto oom;
	for (uint32_t t = 0; t < b->touched.n; t++) {
		uint32_t c = b->touched.v[t], to = row[c];
		struct vec32 *bk = &b->bucket[c];

		b->tmp.n = 0;
		for (uint32_t i = 0; i < b->set_len.v[to]; i++)
			if (!vec_push(&b->tmp, b->sets.v[b->set_off.v[to] + i]))
				goto oom;
		for (uint32_t i = 0; i < bk->n; i++)
			if (!vec_push(&b->tmp, bk->v[i]))
				goto oom;
		bk->n = 0;
		sort_unique(&b->tmp);
		to = intern(b, &b->tmp);
		if (to == ~0u)
			return -1;
		row[c] = to;
	}
	return 1;
oom:
	b->oom = true;
	return -1;
}

/* Fill the transition row of state id; returns false on failure. */
static bool expand(struct builder *b, uint32_t id)
{
	uint32_t off = b->set_off.v[id], n = b->set_len.v[id];
	uint8_t sec = b->nodes[b->sets.v[off]].section;
	uint32_t resume = b->sstart[sec];
	uint32_t *row;
	int r;

	if ((size_t)(id + 1) * b->ncls > b->caprows) {
		size_t cap = b->caprows ? b->caprows * 2 : (size_t)1024 * b->ncls;
		uint32_t *nr = realloc(b->rows, cap * sizeof(*nr));

		if (!nr)
			return !(b->oom = true);
		b->rows = nr;
		b->caprows = cap;
	}
	r = expand_from_smaller(b, id);
	if (r)
		return r > 0;
	b->touched.n = 0;
	for (uint32_t i = 0; i < n; i++)
		if (!bucket_edges(b, &b->nodes[b->sets.v[off + i]]))
			return !(b->oom = true);
	row = &b->rows[(size_t)id * b->ncls];
	for (uint32_t c = 0; c < b->ncls; c++)
		row[c] = resume;
	for (uint32_t t = 0; t < b->touched.n; t++) {
		struct vec32 *bk = &b->bucket[b->touched.v[t]];
		uint32_t to;

		b->tmp.n = 0;
		/* the section's root (U's outside framing http): a pattern
		 * may begin here */
		if (!vec_push(&b->tmp, b->root[sec]))
			return !(b->oom = true);
		for (uint32_t i = 0; i < bk->n; i++)
			if (!vec_push(&b->tmp, bk->v[i]))
				return !(b->oom = true);
		bk->n = 0;
		sort_unique(&b->tmp);
		to = intern(b, &b->tmp);
		if (to == ~0u)
			return false;
		row = &b->rows[(size_t)id * b->ncls];
		row[b->touched.v[t]] = to;
	}
	return true;
}

/* The same set without prefix-trie nodes: where contains matching goes on
 * in the next message. */
static uint32_t unanchored(struct builder *b, uint32_t id)
{
	uint32_t n = b->set_len.v[id];

	b->tmp.n = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t x = b->sets.v[b->set_off.v[id] + i];

		if (!b->nodes[x].anchored && !vec_push(&b->tmp, x)) {
			b->oom = true;
			return ~0u;
		}
	}
	return intern(b, &b->tmp);
}

/* Free what only building needed; place() and skip_set() read the rows,
 * the state outputs and the classes. */
static void builder_trim(struct builder *b)
{
	free(b->nodes);
	free(b->outs);
	free(b->sets.v);
	free(b->set_len.v);
	free(b->hash);
	if (b->bucket)
		for (uint32_t c = 0; c < 256; c++)
			free(b->bucket[c].v);
	free(b->bucket);
	free(b->touched.v);
	free(b->tmp.v);
	b->nodes = NULL;
	b->outs = NULL;
	b->sets.v = b->set_len.v = b->touched.v = b->tmp.v = NULL;
	b->hash = NULL;
	b->bucket = NULL;
}

static void builder_free(struct builder *b)
{
	builder_trim(b);
	free(b->set_off.v);
	free(b->rows);
	free(b->souts);
}

static uint32_t pow2_at_least(uint32_t x)
{
	uint32_t p = 1;

	while (p < x)
		p <<= 1;
	return p;
}

/*
 * Build one service's automaton into b. Local state 0 is "resume" (U's
 * root alone), state 1 is the start state when the service has prefix
 * rules (else the start is state 0).
 */
static int build_service(struct builder *b, const struct pd_service_src *s, uint32_t *start)
{
	uint32_t rootu, roota, id;
	bool anchored = false;

	b->fold_commands = s->framing == PD_FRAME_RESP;
	rootu = new_node(b, false);
	roota = new_node(b, true);
	b->root[0] = b->root[1] = b->root[2] = b->root[3] = rootu;
	for (size_t k = 0; k < s->nrules; k++) {
		int sec = pd_http_section_of(&s->rules[k]);

		if (sec && b->root[sec] == rootu) {
			b->root[sec] = new_node(b, false);
			b->nodes[b->root[sec]].section = (uint8_t)sec;
		}
	}
	for (size_t k = 0; k < s->nrules && !b->oom && !b->full; k++) {
		const struct pd_rule_src *r = &s->rules[k];

		if (pd_http_section_of(r))
			add_pattern(b, b->root[pd_http_section_of(r)], r);
		else if (r->kind == PD_M_CONTAINS)
			add_pattern(b, rootu, r);
		else if (r->kind == PD_M_PREFIX || r->kind == PD_M_COMMAND) {
			add_pattern(b, roota, r);
			anchored = true;
		}
	}
	if (b->full)
		return -1;
	b->bucket = calloc(256, sizeof(*b->bucket));
	if (b->oom || !b->bucket)
		goto oom;
	/* for each prefix-trie node, the lowest rule a longer prefix through
	 * it reports: what keeps a message held there. Children are made
	 * after their parents, so one pass from the last node does it. */
	for (uint32_t i = b->nnodes; anchored && i-- > roota;) {
		struct node *nd = &b->nodes[i];

		for (uint32_t ci = nd->child; ci; ci = b->nodes[ci].sibling) {
			const struct node *c = &b->nodes[ci];
			uint16_t lo = c->later;

			for (uint32_t l = c->out; l; l = b->outs[l].next)
				if (!lo || b->outs[l].rule < lo)
					lo = (uint16_t)b->outs[l].rule;
			if (lo && (!nd->later || lo < nd->later))
				nd->later = lo;
		}
	}
	make_classes(b, s->framing == PD_FRAME_LINE, PD_FRAME_IS_PROTO(s->framing));
	/* the states the image has room for, now that the row width is
	 * known; and at least one state per node of either trie: a policy
	 * that cannot fit is refused before its automaton is built */
	if (pow2_at_least(b->ncls) > b->width)
		b->width = pow2_at_least(b->ncls);
	b->byte_states = (uint32_t)(PD_MAX_IMAGE_BYTES / ((uint64_t)b->width * sizeof(uint32_t) +
							  sizeof(struct pd_state_out)));
	b->byte_states = b->byte_states > b->prev_states ? b->byte_states - b->prev_states : 0;
	if (b->ntrie[0] + 1 > b->state_budget || b->ntrie[0] + 1 > b->byte_states ||
	    b->ntrie[1] + 1 > b->state_budget || b->ntrie[1] + 1 > b->byte_states) {
		too_big(b, (b->ntrie[0] > b->ntrie[1] ? b->ntrie[0] : b->ntrie[1]) + 1);
		return -1;
	}
	b->tmp.n = 0;
	if (!vec_push(&b->tmp, rootu))
		goto oom;
	if (intern(b, &b->tmp) != 0)
		return -1;
	*start = 0;
	if (anchored) {
		if (!vec_push(&b->tmp, roota))
			goto oom;
		if ((*start = intern(b, &b->tmp)) == ~0u)
			return -1;
	}
	b->sstart[0] = b->sstart[1] = b->sstart[2] = b->sstart[3] = 0;
	for (int sec = 1; sec <= 3; sec++) {
		if (b->root[sec] == rootu)
			continue;       /* no rule of that section: never walked */
		b->tmp.n = 0;
		if (!vec_push(&b->tmp, b->root[sec]))
			goto oom;
		if ((b->sstart[sec] = intern(b, &b->tmp)) == ~0u)
			return -1;
	}
	for (id = 0; id < b->set_off.n; id++) {
		uint32_t c;

		if (!expand(b, id))
			return b->oom ? -2 : -1;
		c = anchored ? unanchored(b, id) : id;
		if (c == ~0u)
			return b->oom ? -2 : -1;
		b->souts[id].cont = c;
	}
	return 0;
oom:
	b->oom = true;
	return -2;
}


/* Fill the service entry (everything but the automaton). */
static void service_entry(const struct pd_service_src *s, struct pd_service *svc)
{
	size_t maxlen = 0, longest = 0;
	bool prefix = false, allow = false, pattern = false, stop = false, content = false;

	memset(svc, 0, sizeof(*svc));
	svc->framing = s->framing;
	svc->def = s->def;
	svc->inspect = s->inspect;
	for (size_t k = 0; k < s->nrules; k++) {
		const struct pd_rule_src *r = &s->rules[k];

		if (r->kind == PD_M_CONTAINS && r->patlen > maxlen)
			maxlen = r->patlen;
		if ((r->kind == PD_M_CONTAINS || r->kind == PD_M_PREFIX) && r->patlen > longest)
			longest = r->patlen;
		/* a prefix that would deny or divert the message holds it back
		 * until it is decided; allow and audit prefixes change nothing
		 * that has left */
		if ((r->kind == PD_M_PREFIX || r->kind == PD_M_COMMAND) &&
		    (r->action == PD_ACT_DENY || r->action == PD_ACT_REDIRECT))
			prefix = true;
		if (r->kind == PD_M_PREFIX || r->kind == PD_M_CONTAINS || r->kind == PD_M_COMMAND)
			pattern = true;
		/* under a protocol framing: what keeps a message held until its
		 * end (a contains rule that would deny or divert it) */
		if (r->kind == PD_M_CONTAINS)
			content = true;
		if (r->action == PD_ACT_ALLOW || r->action == PD_ACT_REDIRECT)
			allow = true;
		if (r->action == PD_ACT_DENY || r->action == PD_ACT_REDIRECT)
			stop = true;
		if (r->kind == PD_M_LONGER_THAN && svc->nlen < PD_MAX_LEN_RULES) {
			struct pd_len_rule *l = &svc->len_rules[svc->nlen++];

			l->len = r->longer_than;
			l->rule = (uint16_t)r->index;
			l->action = (uint8_t)r->action;
		}
	}
	if (s->framing == PD_FRAME_NONE && maxlen > 1)
		svc->carry = (uint32_t)(maxlen - 1);
	svc->tail = svc->carry;
	if (s->framing == PD_FRAME_LINE && longest > 1)
		svc->tail = (uint32_t)(longest - 1);
	/* under line framing the scan still looks for the ends of lines */
	svc->noscan = s->framing == PD_FRAME_NONE && !pattern;
	if (s->framing == PD_FRAME_LINE && s->hold_timeout) {
		if (prefix)
			svc->hold |= PD_HOLD_ANCHORED;
		if (s->def == PD_DEF_DENY && allow)
			svc->hold |= PD_HOLD_ALLOWLIST;
		if (stop)
			svc->hold |= PD_HOLD_LINE;
	}
	if (PD_FRAME_IS_PROTO(s->framing)) {
		svc->pflags = (content ? PD_PF_CONTENT : 0) | (s->no_inline ? PD_PF_NO_INLINE : 0);
		for (size_t k = 0; k < s->nrules; k++) {
			const struct pd_rule_src *r = &s->rules[k];
			bool stops = r->action == PD_ACT_DENY || r->action == PD_ACT_REDIRECT;

			int sec = pd_http_section_of(r);

			if (sec == 1)
				svc->pflags |= PD_PF_HEADERS;
			if (sec == 2)
				svc->pflags |= PD_PF_BODY;
			if (sec == 3)
				svc->pflags |= PD_PF_QUERY;
			if (!s->hold_timeout || !stops)
				continue;
			/* held until the section that may deny it ended */
			if (sec == 3)
				svc->pflags |= PD_PF_HOLD_QUERY;
			if (sec == 1 || sec == 2)
				svc->pflags |= PD_PF_HOLD_HEAD;
			if (r->http == PD_HTTP_BODY)
				svc->pflags |= PD_PF_HOLD_BODY;
		}
		if (s->hold_timeout) {
			if (prefix)
				svc->hold |= PD_HOLD_ANCHORED;
			if (s->def == PD_DEF_DENY && allow)
				svc->hold |= PD_HOLD_ALLOWLIST;
			for (size_t k = 0; k < s->nrules; k++)
				if (s->rules[k].kind == PD_M_CONTAINS &&
				    (s->rules[k].action == PD_ACT_DENY ||
				     s->rules[k].action == PD_ACT_REDIRECT))
					svc->hold |= PD_HOLD_LINE;
		}
	}
	svc->hold_ms = s->hold_timeout;
}

/* The bytes that lead out of the resume state (local state 0): the first
 * bytes of the contains patterns, and '\n' under line framing, where it
 * ends a message. All of them in stop; up to PD_SKIP_MAX of them, each
 * repeated in a word, let the data plane pass over runs of other bytes 8
 * at a time. */
static void skip_set(const struct builder *b, bool line, struct pd_service *svc,
		     struct pd_classmap *cm)
{
	uint32_t n = 0;

	for (int x = 0; x < 256; x++) {
		uint32_t to = b->rows[b->cls[x]];

		cm->stop[x] = to != 0 || has_out(&b->souts[0]) || (line && x == '\n');
		if (!cm->stop[x])
			continue;
		if (n < PD_SKIP_MAX)
			svc->skip[n] = 0x0101010101010101ull * (uint8_t)x;
		n++;
	}
	if (!n)
		/* no byte leads out; the loop still compares with one: a 0
		 * then stops it for nothing, which costs time, not matches */
		svc->skip[n++] = 0;
	for (uint32_t k = n; k < PD_SKIP_MAX; k++)
		svc->skip[k] = svc->skip[0];
	svc->nskip = n <= PD_SKIP_MAX ? n : 0;
}

/* Set the entries of the 3 bytes at pat[0..2] in every case of their
 * nocase letters; the number of entries newly set. */
static uint32_t gram_add(struct pd_classmap *cm, const uint8_t *pat, bool nocase)
{
	uint32_t added = 0;

	for (uint32_t v = 0; v < 8; v++) {
		uint32_t x = 0, h;
		bool dup = false;

		for (int k = 0; k < 3; k++) {
			uint8_t c = pat[k];

			if (v & (1u << k)) {
				if (!folds(c, nocase)) {
					dup = true;     /* the same 3 bytes as variant v - bit */
					break;
				}
				c ^= 0x20;
			}
			x |= (uint32_t)c << (8 * k);
		}
		if (dup)
			continue;
		h = PD_GRAM_HASH(x);
		if (!cm->grams[h]) {
			cm->grams[h] = 1;
			added++;
		}
	}
	return added;
}

/*
 * The gram filter (framing none, where more than PD_SKIP_MAX bytes begin
 * a pattern): with s the stride, every occurrence of a contains pattern
 * has, at one of its offsets 0 to s - 1, 3 bytes that begin at a multiple
 * of s from wherever the scan stands, provided its shortest pattern has
 * s + 2 bytes. So where the 3 bytes at the last of the next s are none of
 * the patterns' (at those offsets), none of the s can begin an
 * occurrence, and the scan passes over them. The widest stride whose
 * entries stay sparse (at most 1 in 16 set: a test that finds one set
 * costs the walk a few bytes through the table); none when even stride
 * 3 is too dense, or the shortest pattern has fewer than 5 bytes.
 */
static void gram_set(const struct builder *b, const struct pd_service_src *s,
		     struct pd_service *svc, struct pd_classmap *cm)
{
	size_t shortest = SIZE_MAX;
	uint32_t stride, set;

	svc->gstride = 0;
	memset(cm->grams, 0, sizeof(cm->grams));
	if (s->framing != PD_FRAME_NONE || svc->nskip || has_out(&b->souts[0]))
		return;
	for (size_t k = 0; k < s->nrules; k++)
		if (s->rules[k].kind == PD_M_CONTAINS && s->rules[k].patlen < shortest)
			shortest = s->rules[k].patlen;
	if (shortest == SIZE_MAX || shortest < 5)
		return;
	stride = shortest - 2 < PD_GRAM_STRIDE_MAX ? (uint32_t)(shortest - 2) : PD_GRAM_STRIDE_MAX;
	for (; stride >= 3; stride--) {
		set = 0;
		memset(cm->grams, 0, sizeof(cm->grams));
		for (size_t k = 0; k < s->nrules && set <= PD_GRAM_BYTES / 16; k++) {
			const struct pd_rule_src *r = &s->rules[k];

			if (r->kind != PD_M_CONTAINS)
				continue;
			for (uint32_t j = 0; j < stride; j++)
				set += gram_add(cm, r->pat + j, r->nocase);
		}
		if (set <= PD_GRAM_BYTES / 16) {
			svc->gstride = stride;
			return;
		}
	}
	memset(cm->grams, 0, sizeof(cm->grams));
}

struct built {
	struct builder b;
	uint32_t start;
};

/* Copy a service's automaton into the image at state base, in the
 * kernel's encoding (policyd.h): an entry is the byte offset of the
 * target's row; PD_T_MATCH where the target reports a rule or, under
 * line framing, on the class of '\n' (nl, or -1). */
static void place(struct pd_image *img, struct builder *b, uint32_t base, int nl)
{
	uint32_t n = b->set_off.n, w = img->row_width, row = w * (uint32_t)sizeof(uint32_t);

	for (uint32_t id = 0; id < n; id++) {
		uint32_t *dst = &img->trans[(size_t)(base + id) * w];

		for (uint32_t c = 0; c < b->ncls; c++) {
			uint32_t to = b->rows[(size_t)id * b->ncls + c];

			dst[c] = (base + to) * row |
				 (has_out(&b->souts[to]) || (int)c == nl ? PD_T_MATCH : 0);
		}
		/* classes the service does not have are never read; they lead
		 * to the state itself */
		for (uint32_t c = b->ncls; c < w; c++)
			dst[c] = (base + id) * row;
		img->outs[base + id] = b->souts[id];
		img->outs[base + id].cont += base;
	}
}

void pd_slot_shape(const struct pd_image *img, uint32_t *states, uint32_t *width)
{
	*states = img->nstates + img->nstates / 4 + 256;
	*width = img->row_width < PD_MIN_ROW_WIDTH ? PD_MIN_ROW_WIDTH : img->row_width;
}

int pd_image_widen(struct pd_image *img, uint32_t width)
{
	uint32_t w = img->row_width, *t;

	if (width < w || (width & (width - 1)))
		return -1;
	if (width == w)
		return 0;
	if ((uint64_t)img->nstates * width * sizeof(uint32_t) > PD_T_STATE)
		return -1;
	t = malloc((size_t)img->nstates * width * sizeof(uint32_t) + 4);
	if (!t)
		return -1;
	for (uint32_t s = 0; s < img->nstates; s++)
		for (uint32_t c = 0; c < width; c++) {
			/* a row offset scales with the row; the new classes
			 * lead to the state itself, as unused ones do */
			uint32_t e = c < w ? img->trans[(size_t)s * w + c] : s * w * 4;

			t[(size_t)s * width + c] = (e & PD_T_STATE) / w * width | (e & PD_T_MATCH);
		}
	free(img->trans);
	img->trans = t;
	img->bytes += (uint64_t)img->nstates * (width - w) * sizeof(uint32_t);
	img->row_width = width;
	return 0;
}

static int fill_ports(const struct pd_policy *p, struct pd_image *img, struct pd_diag *d)
{
	uint32_t n = 0, i = 0;

	for (size_t s = 0; s < p->nservices; s++)
		for (size_t k = 0; k < p->services[s].nports; k++) {
			const struct pd_port_range *r = &p->services[s].ports[k];
			uint32_t dirs = p->services[s].dir == PD_DIR_BOTH ? 2 : 1;

			n += (uint32_t)(r->hi - r->lo + 1) * dirs;
			if (n > PD_MAX_PORTS) {
				pd_diag_add(d, r->line, "more than %d (port, direction) pairs in the "
					    "policy; use fewer or narrower port ranges", PD_MAX_PORTS);
				return -1;
			}
		}
	img->port_keys = calloc(n ? n : 1, sizeof(*img->port_keys));
	img->port_services = calloc(n ? n : 1, sizeof(*img->port_services));
	if (!img->port_keys || !img->port_services)
		return -2;
	for (size_t s = 0; s < p->nservices; s++)
		for (size_t k = 0; k < p->services[s].nports; k++) {
			const struct pd_port_range *r = &p->services[s].ports[k];

			for (uint32_t port = r->lo; port <= r->hi; port++)
				for (uint8_t dir = PD_DIR_TO; dir <= PD_DIR_FROM; dir++) {
					if (!(p->services[s].dir & dir))
						continue;
					img->port_keys[i] = (struct pd_port_key){ (uint16_t)port, dir, 0 };
					img->port_services[i++] = (uint32_t)s;
				}
		}
	img->nports = i;
	return 0;
}

int pd_compile(const struct pd_policy *p, struct pd_image *img, struct pd_diag *d)
{
	struct built *bs = calloc(p->nservices ? p->nservices : 1, sizeof(*bs));
	uint32_t total = 0, maxcls = 1, budget = PD_MAX_STATES;
	int ret = -1;

	memset(img, 0, sizeof(*img));
	if (!bs)
		goto oom;
	for (size_t i = 0; i < p->nservices; i++) {
		struct builder *b = &bs[i].b;
		int r;

		b->d = d;
		b->line = p->services[i].line;
		b->state_budget = budget;
		b->prev_states = total;
		b->width = pow2_at_least(maxcls);
		r = build_service(b, &p->services[i], &bs[i].start);
		if (r == -2)
			goto oom;
		if (r < 0)
			goto out;
		builder_trim(b);
		budget -= b->set_off.n;
		total += b->set_off.n;
		if (b->ncls > maxcls)
			maxcls = b->ncls;
	}
	img->nservices = (uint32_t)p->nservices;
	img->nstates = total;
	img->row_width = pow2_at_least(maxcls);
	img->bytes = (uint64_t)total * img->row_width * sizeof(uint32_t) +
		     (uint64_t)total * sizeof(struct pd_state_out);
	if (img->bytes > PD_MAX_IMAGE_BYTES) {
		pd_diag_add(d, 1, "the compiled policy needs %llu MiB of kernel memory; at most "
			    "%llu MiB are supported", (unsigned long long)(img->bytes >> 20),
			    (unsigned long long)(PD_MAX_IMAGE_BYTES >> 20));
		goto out;
	}
	img->services = calloc(img->nservices ? img->nservices : 1, sizeof(*img->services));
	img->trans = malloc((size_t)total * img->row_width * sizeof(uint32_t) + 4);
	img->outs = calloc(total ? total : 1, sizeof(*img->outs));
	img->nrules = (uint32_t)p->nrules;
	img->rules = calloc(p->nrules + 1, sizeof(*img->rules));
	if (!img->services || !img->trans || !img->outs || !img->rules)
		goto oom;
	for (uint32_t i = 0, base = 0; i < img->nservices; i++) {
		struct pd_image_service *is = &img->services[i];
		const struct pd_service_src *s = &p->services[i];
		struct builder *b = &bs[i].b;

		service_entry(s, &is->svc);
		is->svc.excerpt = s->excerpt >= 0 ? (uint32_t)s->excerpt : p->daemon.excerpt;
		is->svc.start = base + bs[i].start;
		is->svc.resume = base;
		is->svc.hstart = base + b->sstart[1];
		is->svc.bstart = base + b->sstart[2];
		is->svc.qstart = base + b->sstart[3];
		is->svc.nclasses = b->ncls;
		is->svc.end_class = b->end_class;
		for (int x = 0; x < 256; x++)
			is->classes.cls[x] = (uint8_t)b->cls[x];
		skip_set(b, s->framing == PD_FRAME_LINE, &is->svc, &is->classes);
		gram_set(b, s, &is->svc, &is->classes);
		is->nstates = b->set_off.n;
		is->first_state = base;
		place(img, b, base, s->framing == PD_FRAME_LINE ? b->cls['\n'] : -1);
		base += b->set_off.n;
		for (size_t k = 0; k < s->nrules; k++) {
			const struct pd_rule_src *r = &s->rules[k];

			img->rules[r->index] = (struct pd_rule){
				.id = (uint16_t)r->id, .action = (uint8_t)r->action,
				.sink = (uint8_t)(r->action == PD_ACT_REDIRECT ? r->sink_index : 0),
				.service = i,
				.excerpt = (uint16_t)(r->excerpt >= 0 ? (uint32_t)r->excerpt :
						      is->svc.excerpt),
			};
		}
	}
	ret = fill_ports(p, img, d);
	if (ret == -2)
		goto oom;
	img->bytes += (uint64_t)img->nports * (sizeof(struct pd_port_key) + sizeof(uint32_t)) +
		      (uint64_t)img->nservices * (sizeof(struct pd_service) +
						 sizeof(struct pd_classmap)) +
		      (uint64_t)(img->nrules + 1) * sizeof(struct pd_rule);
	goto out;
oom:
	pd_diag_add(d, 1, "out of memory while compiling the policy");
	ret = -1;
out:
	for (size_t i = 0; bs && i < p->nservices; i++)
		builder_free(&bs[i].b);
	free(bs);
	if (ret)
		pd_image_free(img);
	return ret;
}

void pd_image_free(struct pd_image *img)
{
	free(img->services);
	free(img->port_keys);
	free(img->port_services);
	free(img->rules);
	free(img->trans);
	free(img->outs);
	memset(img, 0, sizeof(*img));
}
