/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The policy model (what the file says, with file:line for every setting),
 * the compiled image (every map's contents as plain C data), and the pure
 * functions between them. Nothing here needs root or a kernel.
 */
#ifndef POLICYD_POLICY_H
#define POLICYD_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "policyd.h"

#define PD_DEFAULT_CONFIG "/etc/policyd/policy.conf"
#define PD_DEFAULT_PIN_DIR "/sys/fs/bpf/policyd"
#define PD_DEFAULT_USER "nobody"
#define PD_DEFAULT_LOG_RATE 100
#define PD_DEFAULT_MAX_CONNECTIONS 65536
#define PD_MAX_CONNECTIONS (1u << 24)
#define PD_DEFAULT_EXCERPT 64
#define PD_DEFAULT_INSPECT 0
#define PD_MAX_INSPECT (1u << 30)
#define PD_DEFAULT_HOLD_TIMEOUT 3000    /* ms */
#define PD_MAX_HOLD_TIMEOUT 3600000

/* ---- diagnostics: every error is one "FILE:LINE: message" line ---- */
struct pd_diag {
	char **lines;
	size_t n, cap;
	const char *file;       /* as given by the user, for messages */
};

void pd_diag_add(struct pd_diag *d, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void pd_diag_print(const struct pd_diag *d, FILE *f);
void pd_diag_free(struct pd_diag *d);

/* ---- the policy model ---- */
enum pd_match_kind {
	PD_M_CONTAINS,
	PD_M_PREFIX,
	PD_M_LONGER_THAN,
	PD_M_COMMAND,           /* protocol framings: a command name, and maybe its
	                         * first argument after one space */
};

/* The setting a rule's match is given as (its words: pd_match_keys). */
enum pd_match_key {
	PD_KEY_CONTAINS,
	PD_KEY_PREFIX,
	PD_KEY_HEX_CONTAINS,
	PD_KEY_HEX_PREFIX,
	PD_KEY_LONGER_THAN,
	PD_KEY_COMMAND,
	PD_KEY_METHOD,
	PD_KEY_PATH_PREFIX,
	PD_KEY_PATH_CONTAINS,
	PD_KEY_HEADER,
	PD_KEY_QUERY_CONTAINS,
	PD_KEY_HEADER_CONTAINS,
	PD_KEY_MAX,
};

/* daemon.on_exit and daemon.fail_mode (pd_daemon_src.keep, .fail_open) */
enum pd_on_exit {
	PD_ON_EXIT_DETACH,      /* the programs and pins go with the daemon */
	PD_ON_EXIT_KEEP,        /* they stay and enforce the last policy */
	PD_ON_EXIT_MAX,
};

enum pd_fail_mode {
	PD_FAIL_CLOSED,         /* a send that cannot be judged is refused */
	PD_FAIL_OPEN,           /* ... passed and logged */
	PD_FAIL_MAX,
};

/* pd_rule_src.http */
#define PD_HTTP_METHOD 1        /* method = "NAME": the request's first token */
#define PD_HTTP_PATH_PREFIX 2   /* path_prefix = "/p": the path token's start */
#define PD_HTTP_PATH_CONTAINS 3 /* path_contains = "x": within the path */
#define PD_HTTP_HEADER 4        /* header = "Name" or "Name: value": a header line
                                 * (pattern: its symbols, bpf/http.h) */
#define PD_HTTP_BODY 5          /* contains, hex_contains: within the body */
#define PD_HTTP_QUERY 6         /* query_contains = "x": within the target's query */
#define PD_HTTP_HEADER_CONTAINS 7 /* header_contains = "x": within a header line
                                   * (pattern: in lower case, blanks as one space) */

struct pd_rule_src {
	int line;
	unsigned id;
	enum pd_action action;
	enum pd_match_kind kind;
	bool hex;               /* the pattern was given as hex_contains/hex_prefix */
	bool nocase;
	uint8_t http;           /* framing http: the key it was given as (PD_HTTP_*);
	                         * a method is a command, a path rule a contains */
	uint8_t *pat;           /* pattern bytes (contains, prefix) */
	size_t patlen;
	uint32_t longer_than;
	char *sink;             /* redirect: sink name */
	int sink_index;         /* redirect: index into policy sinks */
	uint32_t index;         /* rule index in the image (1-based, file order) */
	int excerpt;            /* payload bytes its log lines quote; -1: the service's */
};

/* Framing http: the section of the request a rule's pattern is matched
 * in, each walked from a root of its own (compile.c): 0 the request
 * line's tokens, 1 the header lines, 2 the body, 3 the target's query. */
static inline int pd_http_section_of(const struct pd_rule_src *r)
{
	switch (r->http) {
	case PD_HTTP_HEADER:
	case PD_HTTP_HEADER_CONTAINS:
		return 1;
	case PD_HTTP_BODY:
		return 2;
	case PD_HTTP_QUERY:
		return 3;
	}
	return 0;
}

struct pd_port_range {
	int line;
	uint16_t lo, hi;
};

struct pd_service_src {
	int line;
	char *name;
	struct pd_port_range *ports;
	size_t nports;
	uint8_t dir;            /* enum pd_direction */
	uint8_t framing;        /* enum pd_framing */
	uint8_t def;            /* enum pd_default */
	uint32_t inspect;
	uint32_t hold_timeout;  /* ms a held message may wait; 0: never hold */
	int excerpt;            /* -1: daemon.excerpt */
	bool no_inline;         /* resp: inline = false */
	struct pd_rule_src *rules;
	size_t nrules;
};

struct pd_sink_src {
	int line;
	char *name;
	char *file;
};

struct pd_daemon_src {
	char *cgroup;           /* NULL: the cgroup2 mount */
	char *user;
	int user_line;          /* 0: not in the file */
	char *pin_dir;
	bool keep;              /* on_exit = "keep" */
	bool monitor;           /* mode = "monitor" */
	uint32_t log_rate;
	uint32_t excerpt;
	bool fail_open;         /* fail_mode = "open" */
	uint32_t max_connections;       /* policed connections the socket map holds */
	char *name;             /* instance name in log lines; NULL: the pin dir's last part */
};

struct pd_policy {
	char *file;
	int version;
	struct pd_daemon_src daemon;
	struct pd_sink_src *sinks;
	size_t nsinks;
	struct pd_service_src *services;
	size_t nservices;
	size_t nrules;
};

/* Parse and validate a policy file. Returns 0 and fills *p, or -1 with
 * every error in d (and *p freed). */
int pd_policy_load(const char *file, struct pd_policy *p, struct pd_diag *d);
/* The same from text in memory; file names it in messages. */
int pd_policy_load_string(const char *text, const char *file,
			  struct pd_policy *p, struct pd_diag *d);
void pd_policy_free(struct pd_policy *p);

/* ---- the compiled image ---- */
struct pd_image_service {
	struct pd_service svc;  /* start/resume are global state indexes */
	struct pd_classmap classes;
	uint32_t nstates;       /* states of this service's automaton */
	uint32_t first_state;   /* global index of its first state */
};

struct pd_image {
	uint32_t nservices;
	struct pd_image_service *services;
	uint32_t nports;
	struct pd_port_key *port_keys;  /* gen 0 in every key */
	uint32_t *port_services;
	uint32_t nrules;                /* rules[0] unused */
	struct pd_rule *rules;
	uint32_t nstates;               /* all services */
	uint32_t row_width;             /* power of two >= every nclasses */
	uint32_t *trans;                /* nstates * row_width, the kernel's encoding */
	struct pd_state_out *outs;      /* nstates */
	uint64_t bytes;                 /* kernel map bytes this image fills */
};

/* Compile a validated policy into an image. Returns 0, or -1 with errors
 * (limits exceeded) in d. */
int pd_compile(const struct pd_policy *p, struct pd_image *img, struct pd_diag *d);
void pd_image_free(struct pd_image *img);
/* Narrowest transition row the programs are loaded with, so that most
 * reloads fit the running maps. */
#define PD_MIN_ROW_WIDTH 64
/* The policy slot the loader makes for img: its rows (img's states and
 * headroom, so that a reload to a somewhat larger policy fits) and their
 * width in entries. */
void pd_slot_shape(const struct pd_image *img, uint32_t *states, uint32_t *width);
/* Re-encode img's table for rows of width entries (a power of two, not
 * narrower): the width of the maps it is placed in. 0, or -1 (out of
 * memory, or too large for the encoding). */
int pd_image_widen(struct pd_image *img, uint32_t width);

/* ---- advice (lint.c) ---- */
/* Warnings about a valid policy (check prints them, exit 0): dead allow
 * rules, sinks sharing a file or unused, a sink directory or user that
 * does not exist, user root. Lines "FILE:LINE: warning: ...". */
void pd_policy_lint(const struct pd_policy *p, struct pd_diag *w);
/* The word of the NULL-terminated list closest to word (a typo of it:
 * at most two edits, fewer than word has letters), or NULL. */
const char *pd_closest(const char *word, const char *const *list);
/* After libconfig refused text with a syntax error at line: a better
 * message (the token, an unterminated string and where it began) and its
 * line, written to msg. */
int pd_syntax_hint(const char *orig, const char *parsed, int line, char *msg, size_t cap);

/* ---- names (names.c) ----
 * Every enum a user reads or writes as a word has one table of names,
 * indexed by value; a pd_names is a view of a range of it (the rule
 * actions a policy may give are the actions but "none"). */
struct pd_names {
	const char *what;               /* what the values are */
	const char *const *name;        /* name[v]: the word of value v */
	unsigned lo, n;                 /* the values: lo .. n - 1 */
};

extern const struct pd_names pd_actions, pd_rule_actions, pd_defaults, pd_framings,
	pd_directions, pd_modes, pd_reloads, pd_verdicts, pd_troubles, pd_match_keys,
	pd_on_exits, pd_fail_modes;
/* Every table above, for the tests; NULL-terminated. */
extern const struct pd_names *const pd_all_names[];

/* The word of value v, or "?" when v is not one of t's values. */
const char *pd_name(const struct pd_names *t, unsigned v);
/* The value whose word is name, or -ENOENT. */
int pd_value(const struct pd_names *t, const char *name);
/* t's words for a message, each in quote q: "a", "b" or "c". */
void pd_names_list(const struct pd_names *t, char q, char *out, size_t cap);
/* The word of t closest to word (pd_closest), or NULL. */
const char *pd_names_closest(const struct pd_names *t, const char *word);

const char *pd_action_name(unsigned a);
const char *pd_default_name(unsigned d);
const char *pd_framing_name(unsigned f);
const char *pd_direction_name(unsigned d);
/* enum pd_trouble: the cause of a send that could not be judged, and the
 * data plane's other counted troubles ("oob", "unjudged", ...) */
const char *pd_trouble_name(unsigned t);
/* The word a log line gives verdict v (enum pd_verdict): in monitor mode
 * a deny or redirect is "would-deny", "would-redirect". */
const char *pd_verdict_word(unsigned v, bool monitor);
const char *pd_on_exit_name(bool keep);
const char *pd_fail_mode_name(bool open);
const char *pd_mode_name(bool monitor);

/* ---- output ---- */
void pd_dump_text(FILE *f, const struct pd_policy *p, const struct pd_image *img);
void pd_dump_json(FILE *f, const struct pd_policy *p, const struct pd_image *img);

#endif
