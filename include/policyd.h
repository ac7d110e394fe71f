/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * policyd ABI: the one contract between the BPF programs (bpf/) and the
 * daemon/compiler (policyd/). Every map key and value, every enum and every
 * limit that both sides rely on lives here. Both sides are rebuilt when this
 * file changes (see Makefile).
 *
 * Conventions:
 *  - All integers are in host byte order unless a comment says otherwise.
 *  - "gen" is the policy generation slot, 0 or 1. Policy maps hold two
 *    complete copies of the policy; pd_config.active_gen says which one the
 *    data plane reads. The daemon writes the inactive slot, then flips.
 *  - Index 0 of rule tables is never used: rule index 0 means "no rule".
 */
#ifndef POLICYD_H
#define POLICYD_H

#ifdef __bpf__
#include <linux/types.h>
#else
#include <linux/types.h>
#include <stdint.h>
#endif

/* Layout version of pinned maps. Bump on any change to a struct below or
 * to the set of maps (2: pd_doomed; 3: pd_trans holds one table per slot,
 * pd_service.skip; 4: pd_service.noscan; 5: the wire position and port
 * binding in pd_sock, pd_bytes, pd_config.fail_open, event causes; 6:
 * pd_sinks per slot, the diverted bytes in pd_sink_data,
 * pd_event.sink_seq and gen; 7: pd_rule.excerpt and pd_service.excerpt;
 * 8: pd_config.mode and the daemon's start, reload and pid fields,
 * pd_counter.would_*, pd_event.monitor; 9: pd_doomed a hash of struct
 * pd_doomed, pd_sock.abort; 10: pd_sock.adopted_end; 11: pd_tail,
 * pd_sock.tail_len, tail_seq, tail_ids and tail_ring, pd_service.tail,
 * the depth in pd_state_out.flags; 12: protocol framings: pd_progress.parse,
 * pd_service.end_class and pflags, PD_TR_MALFORMED; 13: pd_doom_draft, pd_sock
 * without its draft; 14: pd_service.hstart and bstart, framing http's
 * header and body sections; 15: pd_service.qstart, framing http's query
 * section, PD_PF_QUERY and PD_PF_HOLD_QUERY; 16: pd_classmap.grams and
 * pd_service.gstride, the gram filter; 17: pd_bytes.held_end,
 * PD_TR_CLOSED_HELD; 18: PD_TR_KTLS; 19: pd_classmap.grams of 2^15
 * entries, not 2^12). */
#define PD_LAYOUT_VERSION 19

/* ---- limits (each enforced by the compiler with a clear error) ---- */
#ifndef PD_MAX_SERVICES
#define PD_MAX_SERVICES 64          /* services per policy */
#endif
#ifndef PD_MAX_RULES
#define PD_MAX_RULES 65535          /* rules per policy; also the largest rule id */
#endif
#ifndef PD_MAX_PORTS
#define PD_MAX_PORTS 4096           /* (port, direction) entries per policy */
#endif
#ifndef PD_MAX_SINKS
#define PD_MAX_SINKS 16             /* redirect sinks per policy */
#endif
#ifndef PD_MAX_LEN_RULES
#define PD_MAX_LEN_RULES 8          /* longer_than rules per service */
#endif
#ifndef PD_MAX_PATTERN
#define PD_MAX_PATTERN 1024         /* bytes in one pattern */
#endif
#ifndef PD_MAX_STATES
#define PD_MAX_STATES (1u << 22)    /* automaton states over both generations */
#endif
#ifndef PD_MAX_IMAGE_BYTES
#define PD_MAX_IMAGE_BYTES (256ull << 20) /* compiled image, all maps */
#endif
#define PD_MAX_CLASSES 256          /* byte classes per service automaton */
#define PD_SKIP_MAX 4               /* bytes a scan for the next pattern start looks for */
#define PD_GRAM_BITS 15             /* the gram filter's entries: 2^15 bytes */
#define PD_GRAM_BYTES (1u << PD_GRAM_BITS)
#define PD_GRAM_STRIDE_MAX 8        /* bytes the gram filter passes over per test */
#define PD_GRAM_TESTS 64            /* tests of the gram filter per call */
#define PD_NAME_MAX 32              /* service and sink names, with NUL */
#define PD_EXCERPT_MAX 256          /* payload bytes an event may carry */
#define PD_COMM_LEN 16

/* The data plane bounds an index with a mask (PD_MAX_SERVICES - 1 for a
 * service, 0xffff for a rule index, PD_MAX_PATTERN - 1, PD_MAX_CLASSES - 1
 * and PD_BYTES_MAX - 1 for offsets): the verifier then sees every key
 * and offset in range. A mask keeps an index in range only for a power
 * of two. */
#define PD_POWER_OF_TWO(n) ((n) > 0 && ((n) & ((n) - 1)) == 0)
_Static_assert(PD_POWER_OF_TWO(PD_MAX_SERVICES), "PD_MAX_SERVICES must be a power of two");
_Static_assert(PD_MAX_RULES == 0xffff, "rule indexes are 16 bits, masked with 0xffff");
_Static_assert(PD_POWER_OF_TWO(PD_MAX_PATTERN), "PD_MAX_PATTERN must be a power of two");
_Static_assert(PD_POWER_OF_TWO(PD_MAX_CLASSES), "PD_MAX_CLASSES must be a power of two");

/* ---- map keys ----
 * The policy maps hold both slots: slot gen's entries follow slot 0's.
 * The daemon writes and the data plane reads them with these. */

/* pd_services, pd_classes, pd_names: service svc of slot gen. */
static inline __u32 pd_service_key(__u32 gen, __u32 svc)
{
	return gen * PD_MAX_SERVICES + svc;
}

/* pd_rules: rule index i of slot gen (0 is no rule). */
static inline __u32 pd_rule_key(__u32 gen, __u32 i)
{
	return gen * (PD_MAX_RULES + 1) + i;
}

/* pd_sinks: sink index sink of slot gen. */
static inline __u32 pd_sink_key(__u32 gen, __u32 sink)
{
	return gen * PD_MAX_SINKS + sink;
}

/* ---- enums ---- */

/* What a rule does when it matches. Order is priority: deny wins. */
enum pd_action {
	PD_ACT_NONE = 0,
	PD_ACT_AUDIT = 1,     /* log, leave the verdict alone */
	PD_ACT_ALLOW = 2,     /* pass, unless a deny or redirect also matched */
	PD_ACT_REDIRECT = 3,  /* divert the message to a sink */
	PD_ACT_DENY = 4,      /* drop: the sender's send() fails with EACCES */
	PD_ACT_MAX,           /* the count, for tables of names */
};

/* A service's verdict when no allow/deny/redirect rule matched. */
enum pd_default {
	PD_DEF_ALLOW = 0,
	PD_DEF_DENY = 1,
	PD_DEF_AUDIT = 2,     /* pass and log */
	PD_DEF_MAX,
};

/* Where one message ends. */
enum pd_framing {
	PD_FRAME_NONE = 0,    /* each sk_msg (one sendmsg, or a piece of a large one) */
	PD_FRAME_LINE = 1,    /* a message ends after '\n' */
	PD_FRAME_RESP = 2,    /* one Redis command: a RESP array or an inline line */
	PD_FRAME_MEMCACHE = 3,/* one memcached text-protocol command (and its data) */
	PD_FRAME_HTTP = 4,    /* one HTTP/1.x request: head and body */
	PD_FRAME_MAX,
};

/* What the data plane does with a deny or a redirect (pd_config.mode). */
enum pd_mode {
	PD_MODE_ENFORCE = 0,  /* drop, divert and abort */
	PD_MODE_MONITOR = 1,  /* pass everything; log and count what would have been
	                       * denied or diverted (pd_event.monitor, would_*) */
	PD_MODE_MAX,
};

/* How the daemon's last SIGHUP ended (pd_config.last_reload). */
enum pd_reload {
	PD_RELOAD_NONE = 0,   /* no reload since the daemon started */
	PD_RELOAD_OK = 1,
	PD_RELOAD_REFUSED = 2,/* invalid or too big: the running policy stayed */
	PD_RELOAD_MAX,
};

/* Whether a framing is a protocol's: messages are parsed, and the
 * automaton walks the protocol's tokens (see bpf/proto.h), not the bytes. */
#define PD_FRAME_IS_PROTO(f) ((f) >= PD_FRAME_RESP)

/* The symbol that ends a token under a protocol framing: not a byte, so
 * it has a byte class of its own (pd_service.end_class), and a pattern
 * of bytes never spans two tokens. */
#define PD_SYM_END 256
/* Framing http: the request target's query, the request's head (its
 * header lines) and its body are sections of their own, each walked from
 * its own start state (pd_service.qstart, hstart, bstart), where no
 * pattern of another section can begin: a path rule never matches in the
 * query or a header, a header rule never in the body. These symbols move
 * the automaton there; they have no class. */
#define PD_SYM_HEADERS 257
#define PD_SYM_BODY 258
#define PD_SYM_QUERY 259

/* Which port of a connection selects the service (bit mask). */
enum pd_direction {
	PD_DIR_TO = 1,        /* the remote port: requests a client sends */
	PD_DIR_FROM = 2,      /* the local port: replies a server sends */
	PD_DIR_BOTH = 3,
};

/* ---- automaton encoding ----
 * A service's automaton is a DFA over byte classes. pd_classes maps every
 * byte to its class (0..nclasses-1). A transition entry is the byte offset
 * of the target state's row in its table (state * row_width * 4, states
 * counted from the table's first), with PD_T_MATCH set where the walk must
 * stop for the slow way: entering the target reports at least one rule
 * (its pd_state_out says which), or, under line framing, the byte is '\n'.
 * The compiler writes this encoding, for the maps' row width
 * (pd_image_widen), and the kernel walks it; the loader only places a
 * table in a policy slot.
 */
#define PD_T_MATCH 0x80000000u
#define PD_T_STATE 0x7fffffffu

/* Flags of a state (pd_state_out.flags). */
#define PD_SF_ANCHORED 0x1    /* a prefix rule may still match later in this message */
/* bits 4-15: how many of the last bytes walked lead to this state from a
 * message's start or its middle (its deepest pattern progress, at most
 * PD_SF_DEPTH_MAX): what pd_tail keeps of them */
#define PD_SF_DEPTH_SHIFT 4
#define PD_SF_DEPTH_MAX 0xfff
#define PD_SF_DEPTH(flags) (((flags) >> PD_SF_DEPTH_SHIFT) & PD_SF_DEPTH_MAX)
/* bits 16-31: the lowest rule index such a prefix rule has (what holds a
 * message back here) */
#define PD_SF_HOLD_RULE(flags) ((flags) >> 16)

/* ---- maps ---- */

/* pd_config (ARRAY, 1 entry): settings the daemon changes at run time,
 * and what `policyd stats` reports about the daemon (read from the pins
 * only). The data plane reads active_gen, excerpt, fail_open, slot_gen
 * and mode. */
struct pd_config {
	__u32 active_gen;       /* 0 or 1: the policy slot the data plane reads */
	__u32 excerpt;          /* daemon.excerpt (the data plane reads each rule's and
	                         * service's, in which the compiler resolved it) */
	__u64 generation;       /* increases by one per successful load (for logs) */
	__u32 layout;           /* PD_LAYOUT_VERSION of the programs and maps */
	__u32 slot_states;      /* states per policy slot in pd_trans / pd_outs */
	__u32 row_width;        /* entries per pd_trans row */
	__u32 fail_open;        /* daemon.fail_mode = "open": a send that cannot be
	                         * judged passes (logged); 0: it is refused */
	__u32 slot_gen[2];      /* the generation (low 32 bits) each policy slot holds;
	                         * 0 while the daemon rewrites it. A message begun
	                         * under a slot that was rewritten since cannot go
	                         * on there. */
	__u32 mode;             /* enum pd_mode */
	__u32 last_reload;      /* enum pd_reload */
	__u32 pid;              /* the daemon's process id (`policyd reload` signals it) */
	__u32 pad;
	__u64 started;          /* when the daemon that writes this started (Unix s) */
	__u64 reloads;          /* SIGHUPs handled since it started */
	__u64 reloads_refused;  /* of which refused */
	__u64 last_reload_time; /* Unix s of the last one; 0: none */
};

/* pd_instance (ARRAY, 1 entry): where this instance lives, so that another
 * instance that finds its programs on a related cgroup can name it. */
#define PD_PATH_MAX 4096
struct pd_instance {
	char pin_dir[PD_PATH_MAX];
	char cgroup[PD_PATH_MAX];
};

/* pd_names (ARRAY, 2 * PD_MAX_SERVICES): same key as pd_services; the
 * service's name, so that `policyd stats` needs nothing but the pins. */
struct pd_name {
	char name[PD_NAME_MAX];
};

/* pd_ports (HASH): which service a connection belongs to. */
struct pd_port_key {
	__u16 port;             /* TCP port, host byte order */
	__u8 dir;               /* PD_DIR_TO (remote port) or PD_DIR_FROM (local port) */
	__u8 gen;               /* policy slot */
};
/* value: __u32 service index (0..PD_MAX_SERVICES-1) */

/* A longer_than rule: matches when a message is longer than len bytes. */
struct pd_len_rule {
	__u32 len;              /* bytes */
	__u16 rule;             /* rule index (pd_rules) */
	__u8 action;            /* enum pd_action */
	__u8 pad;
};

/* pd_services (ARRAY, 2 * PD_MAX_SERVICES): key = pd_service_key(gen, service). */
struct pd_service {
	__u32 start;            /* global index of the start state (message start) */
	__u32 resume;           /* global index of the state "no pattern begun, not at a
	                         * message start" (framing none, after a skipped gap) */
	__u32 nclasses;         /* byte classes; transition rows have this many used entries */
	__u32 inspect;          /* bytes of each message matched; 0 = all */
	__u32 carry;            /* framing none: bytes of a new message that may still
	                         * complete a pattern begun in the previous one
	                         * (longest contains pattern - 1) */
	__u8 framing;           /* enum pd_framing */
	__u8 def;               /* enum pd_default */
	__u8 hold;              /* PD_HOLD_* : when to hold back an undecided message */
	__u8 nlen;              /* used entries of len_rules */
	struct pd_len_rule len_rules[PD_MAX_LEN_RULES];
	/* The bytes that take the resume state anywhere else (the first
	 * bytes of the contains patterns, and '\n' under line framing), each
	 * repeated in the 8 bytes of a word: in the resume state the data
	 * plane passes over 8 bytes at once while none of them is one of
	 * these. nskip 0: more than PD_SKIP_MAX such bytes, no skipping;
	 * entries past nskip repeat skip[0]. */
	__u32 nskip;
	__u32 noscan;           /* framing none and no byte pattern: no byte of a
	                         * message is read, only its length counts */
	__u32 hold_ms;          /* hold_timeout: how long a message may be held;
	                         * 0: never held */
	__u32 excerpt;          /* payload bytes an event of the default copies */
	__u32 tail;             /* bytes of the stream kept while a pattern may be
	                         * half matched (pd_tail): carry under framing none,
	                         * longest prefix or contains pattern - 1 under line */
	__u32 end_class;        /* protocol framings: the class of PD_SYM_END */
	__u32 pflags;           /* protocol framings: PD_PF_* */
	__u32 hstart;           /* framing http: the start state of the head's header
	                         * lines (PD_PF_HEADERS), of the body (PD_PF_BODY) and
	                         * of the target's query (PD_PF_QUERY) */
	__u32 bstart;
	__u32 qstart;
	__u64 skip[PD_SKIP_MAX];
	/* framing none: 0, or the stride of the gram filter (3 to
	 * PD_GRAM_STRIDE_MAX): in the resume state the data plane passes
	 * over gstride bytes at once when the entry of pd_classmap.grams of
	 * the 3 bytes at the last of them is 0, see bpf/pd_scan.h */
	__u32 gstride;
	__u32 pad_gram;
};

/* pd_service.pflags */
#define PD_PF_CONTENT 0x1     /* a contains rule: every token is walked, not only
                               * the command's (bulk contents are then read) */
#define PD_PF_NO_INLINE 0x2   /* resp: inline = false, an inline command (a first
                               * byte other than '*') is malformed */
#define PD_PF_HEADERS 0x4     /* http: header rules: the header lines are walked */
#define PD_PF_BODY 0x8        /* http: contains rules: the body is walked */
#define PD_PF_HOLD_HEAD 0x10  /* http, hold_timeout: a header or body rule denies or
                               * diverts: the head is held until it ended */
#define PD_PF_HOLD_BODY 0x20  /* http, hold_timeout: a body rule denies or diverts:
                               * the body is held until the request ended */
#define PD_PF_QUERY 0x40      /* http: query rules: the target's query is walked */
#define PD_PF_HOLD_QUERY 0x80 /* http, hold_timeout: a query rule denies or diverts:
                               * the query is held until it ended */

/* pd_service.hold bits (line and protocol framings; framing none never
 * holds: each message is whole when it is judged; none of them with
 * hold_ms 0). Under a protocol framing PD_HOLD_ANCHORED holds while a
 * command rule may still match, PD_HOLD_LINE while a contains rule may. */
#define PD_HOLD_ANCHORED 0x1  /* while a prefix rule may still match */
#define PD_HOLD_ALLOWLIST 0x2 /* default deny: until an allow rule matched or the
                               * message ended */
#define PD_HOLD_LINE 0x4      /* a deny or redirect rule exists: any unfinished
                               * line, while it fits what can be held, so that
                               * no byte of a line refused at its end leaves */

/* pd_classes (ARRAY, 2 * PD_MAX_SERVICES): same key as pd_services. */
struct pd_classmap {
	__u8 cls[256];          /* byte -> class */
	__u8 stop[256];         /* byte -> 1 if it leads out of the resume state
	                         * (or ends a line): the bytes of pd_service.skip,
	                         * however many, for scanning byte by byte */
	/* with pd_service.gstride: entry PD_GRAM_HASH(x) 1 for every 3 bytes
	 * x (little-endian, in the low 24 bits) that a contains pattern has
	 * at offsets 0 to gstride - 1, in every case of a nocase letter */
	__u8 grams[PD_GRAM_BYTES];
};

/* The gram filter's hash of 3 bytes x (the low 24 bits): an entry of
 * pd_classmap.grams. */
#define PD_GRAM_HASH(x) ((__u32)((__u32)(x) * 0x9e3779b1u) >> (32 - PD_GRAM_BITS))

/* pd_trans (ARRAY, 2 entries): key = policy slot; value = the slot's
 * transition table, slot_states rows of row_width entries (row_width a
 * power of two >= every nclasses). The row of global state s is row
 * s - g * slot_states of table g = s / slot_states. One table per slot,
 * and row offsets instead of state indexes (see the automaton encoding
 * above), let the data plane walk without a map lookup or a
 * multiplication per byte. */

/* pd_state_out (ARRAY, states): key = global state index. The lowest
 * rule index of each action reported when this state is entered. */
struct pd_state_out {
	__u16 deny;
	__u16 redirect;
	__u16 allow;
	__u16 audit;
	__u32 flags;            /* PD_SF_* */
	__u32 cont;             /* this state without its prefix-rule progress: where
	                         * contains matching goes on in the next message */
};

/* pd_rules (ARRAY, 2 * (PD_MAX_RULES + 1)): key = pd_rule_key(gen, index). */
struct pd_rule {
	__u16 id;               /* the rule's id in the policy file (1..65535) */
	__u8 action;            /* enum pd_action */
	__u8 sink;              /* redirect: sink index; else 0 */
	__u32 service;          /* service index */
	__u16 excerpt;          /* payload bytes its events copy (<= PD_EXCERPT_MAX): the
	                         * rule's, else its service's, else daemon.excerpt */
	__u16 pad;
};

/* Matching state of the message a socket is sending (also kept per socket
 * in socket-local storage). Rule fields hold the lowest rule index of that
 * action matched so far in the message, 0 for none. */
struct pd_match {
	__u32 state;            /* automaton state (global index) */
	__u32 cont;             /* framing none: state carried over from the previous
	                         * message, walked alongside for cont_left more bytes */
	__u32 cont_left;
	__u32 seen;             /* bytes of the current message walked so far */
	__u16 deny;
	__u16 redirect;
	__u16 allow;
	__u16 audit;
};
#define PD_NO_STATE 0xffffffffu /* pd_match.cont when nothing is carried over */

/* pd_counters (PERCPU_ARRAY, PD_COUNTER_SLOTS): per rule id, then per
 * service default. Keyed by rule id so that counts survive reloads. */
#define PD_COUNTER_DEFAULT(svc) (PD_MAX_RULES + 1 + (svc))
#define PD_COUNTER_SLOTS (PD_MAX_RULES + 1 + PD_MAX_SERVICES)
struct pd_counter {
	__u64 msgs;             /* messages this rule (or default) decided or audited */
	__u64 bytes;            /* their bytes */
	__u64 would_msgs;       /* monitor mode: messages it would have denied or
	                         * diverted (they passed) */
	__u64 would_bytes;
};

/* Event kinds in the ring buffer. */
enum pd_verdict {
	PD_V_PASS = 0,
	PD_V_AUDIT = 1,
	PD_V_REDIRECT = 2,
	PD_V_DENY = 3,
	PD_V_REFUSE = 4,        /* could not be judged: refused (fail_mode closed);
	                         * pd_event.cause says why */
	PD_V_UNJUDGED = 5,      /* could not be judged: passed (fail_mode open) */
	PD_V_MAX,
};

/* pd_events (RINGBUF): one record per logged verdict. */
struct pd_event {
	__u64 cgroup_id;
	__u64 sink_seq;         /* redirect: the number of this diversion (from 1), the
	                         * key of its bytes in pd_sink_data; else 0 */
	__u32 pid;              /* thread id of the sender */
	__u32 tgid;             /* process id of the sender */
	__u32 uid;
	__u32 len;              /* message length in bytes, as far as seen when decided */
	__u32 bytes;            /* bytes this verdict moved now (redirect: what the sink gets) */
	__u32 service;          /* service index */
	__u16 rule_id;          /* 0: the service default decided */
	__u8 verdict;           /* enum pd_verdict */
	__u8 family;            /* AF_INET or AF_INET6 */
	__u8 sink;              /* redirect: sink index */
	__u8 audit;             /* an audit rule matched too (rule in audit_id) */
	__u16 audit_id;
	__u32 saddr[4];         /* network byte order; IPv4 in saddr[0] */
	__u32 daddr[4];
	__u16 sport;            /* host byte order */
	__u16 dport;            /* host byte order */
	__u16 excerpt_len;      /* bytes valid in excerpt */
	__u8 cause;             /* PD_V_REFUSE, PD_V_UNJUDGED: enum pd_trouble */
	__u8 gen;               /* policy slot that decided (sink: pd_sink_key(gen, sink)) */
	__u8 monitor;           /* monitor mode: the deny or redirect did not happen,
	                         * the message passed */
	char comm[PD_COMM_LEN];
	__u8 excerpt[PD_EXCERPT_MAX];
};

/* pd_sink_data (RINGBUF): the bytes each redirect diverted, copied in
 * pieces right after its event, so that a sink record always holds its
 * own message's bytes: a piece carries the number of its diversion, and
 * what the ring buffer had no room for is known to be missing. The
 * diverted bytes themselves go to policyd's socket in pd_sinks, which
 * only drains them. At most PD_SINK_KEEP bytes of a message are copied. */
#define PD_SINK_PIECE 4096
#define PD_SINK_KEEP (1u << 20)
struct pd_sink_piece {
	__u64 seq;              /* pd_event.sink_seq of the diversion */
	__u32 off;              /* where data starts in the diverted bytes */
	__u32 len;              /* bytes valid in data */
	__u8 gen;               /* policy slot and sink, as in the event */
	__u8 sink;
	__u8 pad[6];
	__u8 data[PD_SINK_PIECE];
};

/* Scratch of one sk_msg program run, kept with the socket (the socket is
 * locked while its messages are judged, so nothing else touches it). */
struct pd_run {
	__u32 match_left;       /* bytes still inside the inspect window */
	__u32 limit;            /* bytes of this sk_msg to consume at most */
	__u32 used;             /* bytes consumed */
	__u32 ev_len;           /* event: message length */
	__u32 ev_bytes;         /* event: bytes moved */
	__u16 ev_rule;          /* event: rule index */
	__u8 ev_verdict;        /* event: enum pd_verdict */
	__u8 line;              /* line framing */
	__u8 ended;             /* a '\n' ended the message */
	__u8 err;               /* fail closed */
	__u8 ev_cause;          /* event: enum pd_trouble, for PD_V_REFUSE */
	__u8 monitor;           /* pd_config.mode was PD_MODE_MONITOR when this run began */
	__u32 wused;            /* bytes of the current window consumed (here, not
	                         * on the stack: the verifier need not follow it) */
	__u32 mstart;           /* protocol framings: where the message in progress
	                         * began in this sk_msg; line framing: where the
	                         * line after those that passed in this run began
	                         * (0: none passed) */
	__u8 first;             /* ... and whether it is the run's first */
	__u8 hold_why;          /* PD_PO_HOLD: pd_proto_must_hold's reason */
	__u8 outcome;           /* protocol framings: PD_PO_*, what the walk found */
	__u8 replay;            /* the walk goes over a decided range again */
	__u32 woff;             /* the current window's offset in the sk_msg */
};

/* pd_run.outcome: what a walk under a protocol framing found. The run's
 * first message may have begun in an earlier run; whole messages after
 * it are walked in the same run while they pass without an event. */
#define PD_PO_PASS 0            /* [0, used) leaves: messages that passed (each
                                 * counted), and maybe the beginning of one that
                                 * may leave before it ends (in_msg) */
#define PD_PO_ENDED 1           /* the first message ended at used; its verdict
                                 * (in cur.m) is logged or acted on */
#define PD_PO_DENY 2            /* the first message is denied before its end */
#define PD_PO_BAD 3             /* the first message is malformed */
#define PD_PO_HOLD 4            /* the first message goes on after this sk_msg and
                                 * must be held back */
#define PD_PO_REDIRECT 5        /* ... and is diverted */

/* Where a protocol parser stands in the current message (all zero at a
 * message's start). The meaning of the fields is the framing's own (see
 * bpf/resp.h, bpf/memcache.h, bpf/http.h). */
struct pd_parse {
	__u8 phase;             /* where in the message's grammar */
	__u8 tok;               /* token (argument) index, saturating at 255 */
	__u8 aux;               /* per-phase detail (escape, digit flags) */
	__u8 kind;              /* what the message turned out to be */
	__u32 count;            /* tokens (arguments) still to come */
	__u32 len;              /* a number being read, or bytes left to pass over */
	__u32 word;             /* per-framing: tokens' validity (memcache) */
	__u64 name;             /* the first 8 bytes of the command name or method */
};

/* The symbols one byte hands to the matcher: bytes of a token (0..255)
 * and PD_SYM_END. A byte gives at most three (an escape "\x4" that turns
 * out not to be one gives back 'x' and '4', then the byte itself). */
struct pd_syms {
	__u16 s[3];
	__u32 n;
};

/* pd_doomed (HASH, key: socket cookie): connections to abort. The data
 * plane adds one where it drops a message or refuses a connection's bytes,
 * and when a held message outlives its hold_timeout; the sock_ops program
 * removes it when the socket closes. The daemon walks the map and has its
 * aborter end each connection with SOCK_DESTROY (sock_diag, as `ss -K`),
 * found by its addresses and ports and checked by its cookie, then removes
 * the entry. Preallocated, twice max_connections: an entry is never
 * evicted, whatever the daemon's delay. */
struct pd_doomed {
	__u64 when;             /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the drop */
	__u64 acked;            /* the peer has acknowledged every byte let out before
	                         * the drop once tcpi_bytes_acked reaches this */
	__u64 netns;            /* the socket's network namespace cookie */
	__u64 asked;            /* written by the daemon: when it last named the
	                         * connection to its aborter (CLOCK_MONOTONIC ns) */
	__u32 saddr[4];         /* local address, network byte order; IPv4 in saddr[0] */
	__u32 daddr[4];         /* remote address */
	__u16 sport;            /* local port, host byte order */
	__u16 dport;            /* remote port, host byte order */
	__u32 ifindex;          /* the device the socket is bound to, 0: none */
	__u8 family;            /* AF_INET or AF_INET6 */
	__u8 pad[7];
};

/* Where a socket's stream stands: saved whole before each run. */
struct pd_progress {
	struct pd_match m;
	struct pd_parse parse;  /* protocol framings: the parser */
	__u32 gen;              /* policy slot m belongs to */
	__u32 slot_gen;         /* pd_config.slot_gen[gen] when m began there */
	__u32 msglen;           /* bytes of the current message judged so far */
	__u8 in_msg;            /* line and protocol framings: a message is in progress */
	__u8 pad[3];
};

#define PD_HELD_LINE 0xffff

/* Kept bytes (pd_sock.tail_len) of a service whose pd_service.tail is
 * below this stay in the socket's own storage; longer ones go to pd_tail. */
#define PD_TAIL_SMALL 32

/* pd_sk (SK_STORAGE): per policed socket. The sock_ops program creates it
 * when a connection is established; policyd writes it when it adopts a
 * connection that was open before it started.
 *
 * The wire: judged_end is the TCP sequence number just after the last byte
 * a verdict let into the socket's stream. Every run of the sk_msg program
 * first compares it with the socket's write_seq: equal means every byte
 * queued so far was judged, in order. The egress program drops any segment
 * that carries a byte at or after it (plus a pending hold). */
struct pd_sock {
	struct pd_progress cur; /* the message in progress (or the last one: carry) */
	struct pd_progress snap;/* cur when this run began: a held message is
	                         * judged again from there */
	struct pd_progress alt; /* cur where this run's walk began (so that a decided
	                         * range can be walked again piece by piece); during
	                         * a replay, cur after the decided range */
	__u64 cookie;           /* socket cookie: the key in pd_sockets */
	__u64 held_since;       /* bpf_ktime_get_ns() when a message began to be held */
	__u64 adopted_end;      /* PD_SK_UNSYNCED: how long the stream was when its
	                         * adoption began (bytes acknowledged + bytes queued):
	                         * what it queued before was not ours to judge, any
	                         * later byte no verdict covers is refused */
	__u16 held_rule;        /* the rule index that keeps it held: 0 the default
	                         * (an allow list), PD_HELD_LINE an unfinished line */
	__u16 tail_len;         /* framing none: bytes of pd_tail that end at */
	__u32 tail_seq;         /* this sequence number (0 bytes: none kept) */
	__u32 service;          /* service index (re-bound by port after a reload) */
	__u8 flags;             /* PD_SK_* */
	__u8 cause;             /* PD_SK_UNMAPPED, PD_SK_DEAD: enum pd_trouble */
	__u16 rport;            /* remote port, host byte order */
	__u16 lport;            /* local port, host byte order */
	__u16 pad;
	__u32 judged_end;       /* see above */
	__u32 replay;           /* bytes of a decided range still to be pushed piece
	                         * by piece (the send buffer could not take them at once) */
	__u32 tgid;             /* the last process that sent on it, and its uid: */
	__u32 uid;              /* named when the egress program refuses its bytes */
	__u16 tail_ids[3];      /* line framing, a line going out as it comes: the ids
	                         * of the allow, audit and redirect rules it matched */
	__u8 tail_big;          /* the kept bytes are in pd_tail, else in tail_ring */
	__u8 pad4;
	__u8 tail_ring[PD_TAIL_SMALL]; /* the kept bytes of a service whose tail is
	                         * shorter: byte s at tail_ring[s % PD_TAIL_SMALL] */
	struct pd_run run;
	/* protocol framings: scratch of a walk, here rather than on the
	 * stack (6.1's verifier counts the parsers' bpf_loop callbacks as
	 * calls: their frames and the program's must fit in 512 bytes) */
	struct pd_syms syms;    /* the symbols of the byte just parsed */
	struct pd_parse hdr;    /* the parser while headers are read at once */
	struct pd_match mtry;   /* the automaton while a command is taken whole */
	__u32 hvia;             /* ... and its offsets (pd_resp_off) */
	__u32 wlen;             /* bytes of the window being walked */
};

/* Every policed socket pays for pd_sock: after the kernel's storage
 * element header (72 bytes from 6.1 to 7.x: the value follows
 * bpf_local_storage_elem's cache-line-aligned sdata and its map pointer)
 * it must fit kmalloc's 512-byte slab, or each socket takes 1 KiB.
 * Whatever a connection needs only sometimes goes elsewhere (pd_bytes,
 * pd_tail, pd_doom_draft). */
_Static_assert(sizeof(struct pd_sock) <= 512 - 72, "pd_sock outgrows its 512-byte slab");

/* pd_sock.service of a socket whose port a reload stopped policing */
#define PD_NO_SERVICE 0xffffffffu

/* pd_sock.flags */
#define PD_SK_UNSYNCED 0x01     /* adopted, judged_end not set yet: adopted_end says
                                 * where the judged stream begins */
#define PD_SK_DEAD 0x02         /* refused or denied: every later send is dropped */
#define PD_SK_UNMAPPED 0x04     /* not in the socket map: no byte of it can be judged */
#define PD_SK_BUSY 0x08         /* ... because another sockmap user holds it */
#define PD_SK_REPORTED 0x10     /* its refusal was reported once */
#define PD_SK_ACTIVE 0x20       /* it connected (direction to); else it was accepted */
#define PD_SK_DOOMED 0x40       /* in pd_doomed: its abort is under way */
#define PD_SK_NOROOM 0x80       /* pd_doomed had no room for it (counted once) */

/* pd_bytes (SK_STORAGE, created when first needed): bytes of the stream
 * the data plane keeps for a while, one use at a time.
 *  - PD_BYTES_RISK: the last piece pushed while the send buffer was short
 *    of room, and where the stream stood before it (from). If the kernel
 *    pushes only part of the piece (a non-blocking send, a signal), the
 *    next run walks the part that left from there: the stream is
 *    followed exactly.
 *  - PD_BYTES_HELD: the end of a message held back until it can be
 *    decided, taken out of the send; the next run puts them back in
 *    front of what follows and judges them with it. */
#define PD_BYTES_MAX 4096
_Static_assert(PD_POWER_OF_TWO(PD_BYTES_MAX), "PD_BYTES_MAX must be a power of two");
#define PD_BYTES_NONE 0
#define PD_BYTES_RISK 1
#define PD_BYTES_HELD 2
struct pd_bytes {
	__u32 kind;             /* PD_BYTES_* */
	__u32 len;              /* valid bytes */
	__u32 seq;              /* PD_BYTES_RISK: sequence number of bytes[0] */
	__u32 held_end;         /* after held bytes were put back in front of a
	                         * send (hold_restore): the sequence number after
	                         * them. A push the kernel cuts short inside them
	                         * leaves the rest to no one (the sender's count
	                         * covers only its own bytes): they are held
	                         * again (wire_reheld) */
	struct pd_progress from;
	__u8 bytes[PD_BYTES_MAX];
};

/* pd_tail (SK_STORAGE, created when first needed, for a service whose
 * pd_service.tail is PD_TAIL_SMALL or more, else pd_sock.tail_ring): the
 * stream's last bytes that lead to the matching state (its depth, at most
 * pd_service.tail), while a pattern may be half matched:
 * under framing none after a message that ended with one, under line
 * framing while a line goes out as it comes (not held). The byte at
 * sequence number s is bytes[s % PD_TAIL_MAX]. Should two reloads rewrite
 * the policy slot the socket's matching state belongs to before it sends
 * again, these bytes are walked through the active policy to find the
 * state again there (and, for a line, the rules it matched, by id). */
#define PD_TAIL_MAX 1024
struct pd_tail {
	__u8 bytes[PD_TAIL_MAX];
};
_Static_assert(PD_MAX_PATTERN <= PD_TAIL_MAX, "a half match is shorter than a pattern");
_Static_assert((PD_TAIL_MAX & (PD_TAIL_MAX - 1)) == 0 && (PD_TAIL_SMALL & (PD_TAIL_SMALL - 1)) == 0,
	       "the data plane masks with PD_TAIL_MAX - 1 and PD_TAIL_SMALL - 1");

/* pd_trouble (PERCPU_ARRAY): data-plane troubles, counted. */
enum pd_trouble {
	PD_TR_SOCKHASH_BUSY,    /* socket held by another sockmap user: not policed */
	PD_TR_SOCKHASH_FULL,    /* other sockhash update failure: not policed */
	PD_TR_NO_STATE,         /* message on a socket without state: dropped */
	PD_TR_TABLES,           /* inconsistent tables or a failed pull: dropped */
	PD_TR_RINGBUF,          /* event lost: ring buffer full */
	PD_TR_HELD,             /* messages held back until decidable */
	/* sends that could not be judged (refused, or passed with
	 * fail_mode = "open"), by cause */
	PD_TR_CONCURRENT,       /* while another send on the socket was under way */
	PD_TR_CUT,              /* after a send cut short where the stream could not
	                         * be followed */
	PD_TR_UNJUDGED,         /* bytes reached TCP without a verdict */
	PD_TR_UNMAPPED,         /* a policed connection that is not in the socket map */
	PD_TR_OOB,              /* urgent data (MSG_OOB) */
	PD_TR_MPTCP,            /* a Multipath TCP socket */
	PD_TR_FASTOPEN,         /* TCP Fast Open towards a policed port */
	PD_TR_KTLS,             /* kernel TLS (SOL_TLS TLS_TX, TLS_RX) on a policed socket */
	/* informational */
	PD_TR_RESYNC,           /* a send cut short, followed exactly */
	PD_TR_HOLD_FULL,        /* a held message outgrew what can be held: decided */
	PD_TR_HOLD_TIMEOUT,     /* a message held longer than hold_timeout: refused */
	PD_TR_ABORTS,           /* connections recorded in pd_doomed, to be aborted */
	PD_TR_ABORT_FULL,       /* a connection to abort that pd_doomed had no room
	                         * for (tried again at its next send) */
	PD_TR_MALFORMED,        /* a message its protocol framing cannot parse: denied */
	PD_TR_CLOSED_HELD,      /* a held message's end its connection ended before
	                         * (close, shutdown, connect(AF_UNSPEC)): never sent */
	PD_TR_MAX,
};

#endif /* POLICYD_H */
