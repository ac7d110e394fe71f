// SPDX-License-Identifier: GPL-2.0-only
/*
 * policyd data plane: sock_ops adds policed TCP sockets to a SOCKHASH; the
 * sk_msg verdict program on that map walks each message through its
 * service's automaton (include/pd_match.h) and passes or drops it.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "policyd.h"

/* Address families (the UAPI headers leave them to libc). */
#define AF_INET 2
#define AF_INET6 10

char LICENSE[] SEC("license") = "GPL";

/* The shape of pd_trans, set by the loader before load: row width - 1
 * (a power of two, so masking bounds a class for the verifier), log2 of
 * a row's bytes, states per slot, and the byte offset of a slot's last
 * row (the bound every row address is checked against). */
const volatile __u32 pd_row_mask = PD_MAX_CLASSES - 1;
const volatile __u32 pd_row_shift = 10;
const volatile __u32 pd_slot_states = 1;
const volatile __u32 pd_slot_last_row = 0;

/* Settings the daemon changes at run time (active policy slot). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pd_config);
} pd_config SEC(".maps");

/* (port, direction, slot) -> service index. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * PD_MAX_PORTS);
	__type(key, struct pd_port_key);
	__type(value, __u32);
} pd_ports SEC(".maps");

/* slot * PD_MAX_SERVICES + service -> service settings. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * PD_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct pd_service);
} pd_services SEC(".maps");

/* slot * PD_MAX_SERVICES + service -> byte classes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * PD_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct pd_classmap);
} pd_classes SEC(".maps");

/* Service names (read by policyd stats only). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * PD_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct pd_name);
} pd_names SEC(".maps");

/* Policy slot -> its transition table (value size set by the loader). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PD_MAX_CLASSES * sizeof(__u32));
} pd_trans SEC(".maps");

/* Global state index -> what entering the state reports. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pd_state_out);
} pd_outs SEC(".maps");

/* slot * (PD_MAX_RULES + 1) + rule index -> rule. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * (PD_MAX_RULES + 1));
	__type(key, __u32);
	__type(value, struct pd_rule);
} pd_rules SEC(".maps");

/* Per rule id and per service default: messages and bytes decided. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PD_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, struct pd_counter);
} pd_counters SEC(".maps");

/* Policed sockets, by socket cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} pd_sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pd_sock);
} pd_sk SEC(".maps");

/* Redirect sinks: one socket of policyd's own per sink index. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, PD_MAX_SINKS);
	__type(key, __u32);
	__type(value, __u64);
} pd_sinks SEC(".maps");

/* Deny, redirect and audit events for the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} pd_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PD_TR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} pd_trouble SEC(".maps");

/* Sockets a verdict dropped a message of, by cookie: the abort iterator
 * (pd_abort) ends their connections. LRU: an entry for a socket that
 * closed before the iterator ran ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);           /* when: bpf_ktime_get_ns() */
} pd_doomed SEC(".maps");

static __always_inline void doom(const struct pd_sock *st)
{
	__u64 now = bpf_ktime_get_ns();

	bpf_map_update_elem(&pd_doomed, &st->cookie, &now, BPF_NOEXIST);
}

static __always_inline void trouble(__u32 what)
{
	__u64 *c = bpf_map_lookup_elem(&pd_trouble, &what);

	if (c)
		*c += 1;
}

static __always_inline const __u32 *row_of(__u32 state)
{
	__u32 gen = state >= pd_slot_states;
	__u64 off = (__u64)(state - gen * pd_slot_states) << pd_row_shift;
	const __u8 *tab;

	if (off > pd_slot_last_row)
		return NULL;
	tab = bpf_map_lookup_elem(&pd_trans, &gen);
	return tab ? (const __u32 *)(tab + off) : NULL;
}

static __always_inline const struct pd_state_out *out_of(__u32 state)
{
	return bpf_map_lookup_elem(&pd_outs, &state);
}

/* The state an entry of state from's row leads to: entries are row
 * offsets within the slot's table (see pd_trans). */
static __always_inline __u32 target_of(__u32 from, __u32 t)
{
	__u32 base = from >= pd_slot_states ? pd_slot_states : 0;

	return ((t & PD_T_STATE) >> pd_row_shift) + base;
}

#define PD_ROW(ctx, st) row_of(st)
#define PD_TARGET(ctx, st, t) target_of(st, t)
#define PD_OUT(ctx, st) out_of(st)
#define PD_ROW_MASK(ctx) pd_row_mask
#include "pd_match.h"

static __always_inline __u32 active_gen(void)
{
	__u32 zero = 0;
	struct pd_config *c = bpf_map_lookup_elem(&pd_config, &zero);

	return c ? (c->active_gen & 1) : 0;
}

/* The service a connection belongs to: remote port for "to", local port
 * for "from". Returns -1 when it is not policed. */
static __always_inline int service_of(__u32 remote_port_be, __u32 local_port, __u32 gen)
{
	struct pd_port_key k = { .gen = (__u8)gen };
	__u32 *svc;

	k.port = bpf_ntohl(remote_port_be) & 0xffff;
	k.dir = PD_DIR_TO;
	svc = bpf_map_lookup_elem(&pd_ports, &k);
	if (svc)
		return *svc;
	k.port = local_port & 0xffff;
	k.dir = PD_DIR_FROM;
	svc = bpf_map_lookup_elem(&pd_ports, &k);
	return svc ? (int)*svc : -1;
}

SEC("sockops")
int pd_sockops(struct bpf_sock_ops *ops)
{
	struct pd_sock *st;
	__u64 cookie;
	int svc, err;

	if (ops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (ops->family != AF_INET && ops->family != AF_INET6)
		return 1;
	svc = service_of(ops->remote_port, ops->local_port, active_gen());
	if (svc < 0 || !ops->sk)
		return 1;
	st = bpf_sk_storage_get(&pd_sk, ops->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		trouble(PD_TR_NO_STATE);
		return 1;
	}
	cookie = bpf_get_socket_cookie(ops);
	st->service = (__u32)svc;
	st->cur.gen = active_gen();
	st->cur.in_msg = 0;
	st->sticky = 0;
	st->cookie = cookie;
	st->cur.m.state = PD_NO_STATE;      /* the service's resume state on first use */
	err = bpf_sock_hash_update(ops, &pd_sockets, &cookie, BPF_ANY);
	if (err)
		trouble(err == -16 /* EBUSY */ ? PD_TR_SOCKHASH_BUSY : PD_TR_SOCKHASH_FULL);
	return 1;
}

static __always_inline void count(__u32 slot, __u32 bytes)
{
	struct pd_counter *c = bpf_map_lookup_elem(&pd_counters, &slot);

	if (c) {
		c->msgs += 1;
		c->bytes += bytes;
	}
}

/* Bytes made readable at once by bpf_msg_pull_data. A range inside one
 * scatterlist element is read in place; one that spans elements (or lies
 * in pages spliced from the page cache) makes the kernel copy every
 * element it touches, whole, into new pages that replace them: the rest
 * of the message is then read in place. */
#define PD_WINDOW 4096
/* Windows per program run: more than the largest sk_msg (MAX_SKB_FRAGS
 * elements of at most 32 KiB each). A longer run fails closed. */
#define PD_MAX_WINDOWS 192
/* Work per bpf_loop callback (the call costs about as much as walking
 * ten bytes): words passed over in the resume state (a block with one
 * bounds check, or as many checked one by one), bytes passed over
 * there one by one (when a service has too many bytes to look for in a
 * word), bytes walked through the transition table, bytes searched for a
 * '\n' past the inspect window, bytes walked the slow way while a
 * carried-over state is walked too. */
#define PD_SKIP_WORDS 64
#define PD_STOP_BYTES 64
#define PD_STOP_TAIL 15
#define PD_FAST_BYTES 32
#define PD_FAST_TAIL 15
#define PD_EOL_BYTES 32
#define PD_CHUNK 4

/* What the callbacks work on (on the program's stack, set up by pd_scan). */
struct scan {
	struct pd_match *m;
	struct pd_run *run;
	const struct pd_classmap *cm;
	const struct pd_service *svc;
	const __u8 *tab;        /* the transition table of the policy slot */
	struct sk_msg_md *msg;
	__u8 *data;             /* the pulled window */
	__u8 *data_end;
	__u32 base;             /* global index of the slot's first state */
	__u32 n;                /* bytes of the window to look at */
	__u32 off;              /* bytes of the sk_msg consumed */
};

/* One byte at window offset i, through pd_byte: 0 to go on, 1 to stop
 * (limit, decided, line end, error). */
static __always_inline int scan_byte(struct scan *s, __u32 i)
{
	struct pd_run *run = s->run;
	__u8 *p = s->data;
	int r;
	__u8 b;

	if (i >= s->n)
		return 1;
	p += i & (PD_WINDOW - 1);
	if ((void *)(p + 1) > (void *)s->data_end)
		return 1;
	b = *p;
	s->run->wused = i + 1;
	if (run->match_left) {
		run->match_left--;
		r = pd_byte(s->m, s->cm, run->line, s->svc->resume, b, NULL);
		if (r < 0) {
			run->err = 1;
			return 1;
		}
		if (s->m->deny) {
			/* decided; under line framing go on to the line's end,
			 * so that the event reports its length */
			if (!run->line)
				return 1;
			run->match_left = 0;
		}
	} else if (!run->line) {
		return 1;
	}
	if (run->line && b == '\n') {
		run->ended = 1;
		return 1;
	}
	return 0;
}

/* One byte through the slot's table from the row at *row: its class, then
 * the entry. 0 (row kept) at an entry that needs the slow way (PD_T_MATCH)
 * or past the table's end (only with inconsistent tables). */
static __always_inline int table_step(__u32 *row, __u8 b, const __u8 *cls, const __u8 *tab,
				      __u32 last)
{
	__u32 off = *row | ((__u32)cls[b] << 2), t;

	if (off > last)
		return 0;
	t = *(const __u32 *)(tab + off);
	if (t >= PD_T_MATCH)
		return 0;
	*row = t;
	return 1;
}

/* Two walks through the table at once. A byte's step waits for the one
 * before it (its entry's address needs the row the previous entry gave),
 * so one walk leaves the CPU waiting between loads; a second, independent
 * walk costs little more. Walk A goes on from the current state over
 * PD_DUAL + PD_SYNC bytes; walk B starts in the resume state at byte
 * PD_DUAL and goes over PD_DUAL bytes, so the two overlap by PD_SYNC. B
 * at first knows only what it has seen, but a pattern in progress
 * depends only on the bytes since it began: where B's state after the
 * overlap equals A's at the same byte, B's end state is exact (the
 * automaton is deterministic). That fails only while A is in a pattern
 * begun more than PD_SYNC bytes back (a long one, or a prefix rule's
 * progress): then A's bytes alone count. At a byte that needs the slow
 * way (PD_T_MATCH) in either walk nothing counts (0 returned, *d
 * unchanged) and the walk one byte at a time takes over. Each step adds
 * the row last, to the address of the class's entry in row 0: one
 * addition and one load between steps. A function of its own, called
 * with the bounds in a struct: inlined, the walks' values did not fit in
 * the registers (13 instructions per step with three reloads from the
 * stack; here 11 with one).
 * redis-benchmark GET -P 16 with the Redis profile (576-byte sends),
 * program time per run, medians of 5 alternated: 1,626 -> 1,136 ns. */
#define PD_DUAL 64
#define PD_SYNC 16

#define DUAL_STEP(r, b, t)							\
	({								\
		const __u8 *a_ = tab + ((__u32)cls[b] << 2);		\
		asm volatile("" : "+r"(a_));	/* the row is added last */	\
		(t) = *(const __u32 *)(a_ + (r));			\
		(t) <= lim;						\
	})

struct dual {           /* 64-bit fields: the verifier keeps the bounds of whole-slot spills */
	__u64 row;      /* in: the state's row; out: the row after the bytes walked */
	__u64 rrow;     /* the resume state's row */
	__u64 lim;      /* the last row two walks read (see dlim in scan_fast) */
};

static __noinline __u32 dual_walk(struct dual *d, const __u8 *p, const __u8 *cls, const __u8 *tab)
{
	__u32 ra = d->row, rb = d->rrow, lim = d->lim, rs = 0, ta, tb, k;

#pragma unroll
	for (k = 0; k < PD_DUAL + PD_SYNC; k++) {
		if (!DUAL_STEP(ra, p[k], ta))
			return 0;
		ra = ta;
		if (k < PD_DUAL) {
			if (!DUAL_STEP(rb, p[PD_DUAL + k], tb))
				return 0;
			rb = tb;
			if (k == PD_SYNC - 1)
				rs = rb;
		}
	}
	if (ra == rs) {
		d->row = rb;
		return 2 * PD_DUAL;
	}
	d->row = ra;
	return PD_DUAL + PD_SYNC;
}

/* One way of testing words for skip2_ascii and skip4: a block of
 * PD_SKIP_WORDS with one bounds check where n and the window have it,
 * else word by word up to n. Leaves q at the first word that holds a
 * key's byte, or past the last word tested. */
#define SKIP_WORDS(hit)							\
	do {								\
		if (n >= PD_SKIP_WORDS && p + PD_SKIP_WORDS * 8 <= end) {	\
			_Pragma("unroll")					\
			for (w = 0; w < PD_SKIP_WORDS; w++) {			\
				v = *(__u64 *)q;				\
				if (hit)					\
					goto out;				\
				q += 8;						\
			}							\
		} else {							\
			_Pragma("unroll")					\
			for (w = 0; w < PD_SKIP_WORDS; w++) {			\
				barrier_var(n);					\
				if (w >= n || q + 8 > end)			\
					goto out;				\
				v = *(__u64 *)q;				\
				if (hit)					\
					goto out;				\
				q += 8;						\
			}							\
		}								\
	} while (0)

/* How many of the n words (at most PD_SKIP_WORDS) at window offset off
 * hold none of the bytes of svc->skip, counted up to the first that
 * holds one (pd_word_stays). Global functions, verified once each: they
 * keep the keys and constants in registers (inlined into scan_fast, with
 * all its values live, they were read back from the stack for every
 * word: 20 instructions per word, 16 here with pd_hit2_ascii), and the
 * verifier checks them once instead of once per path into scan_fast
 * (82,987 instructions processed before, 92,870 with this and the
 * word-by-word tail of 64 instead of 15). skip2_ascii: two keys below
 * 0x80, the common case; skip4: up to four, any bytes. */
__noinline int skip2_ascii(struct sk_msg_md *msg, __u32 off, __u32 n, __u64 k0, __u64 k1)
{
	__u64 lo = PD_BYTES_01, hi = PD_BYTES_80, v;
	const __u8 *p, *q, *end;
	__u32 w;

	if (!msg)
		return 0;
	p = (const __u8 *)(long)msg->data + (off & (PD_WINDOW - 1));
	end = (const __u8 *)(long)msg->data_end;
	q = p;
	asm volatile("" : "+r"(lo), "+r"(hi));  /* in registers, not reloaded per word */
	SKIP_WORDS(pd_hit2_ascii(v, k0, k1, lo, hi));
out:
	return (q - p) >> 3;
}

__noinline int skip4(struct sk_msg_md *msg, __u32 off, __u32 n, const struct pd_service *svc)
{
	__u64 lo = PD_BYTES_01, hi = PD_BYTES_80, v, k0, k1, k2, k3;
	const __u8 *p, *q, *end;
	__u32 w;

	if (!msg || !svc)
		return 0;
	k0 = svc->skip[0], k1 = svc->skip[1], k2 = svc->skip[2], k3 = svc->skip[3];
	p = (const __u8 *)(long)msg->data + (off & (PD_WINDOW - 1));
	end = (const __u8 *)(long)msg->data_end;
	q = p;
	asm volatile("" : "+r"(lo), "+r"(hi));
	if (pd_keys_ascii(k0, k1, k2, k3))
		SKIP_WORDS(pd_hit4_ascii(v, k0, k1, k2, k3, lo, hi));
	else
		SKIP_WORDS(pd_hit4(v, k0, k1, k2, k3, lo, hi));
out:
	return (q - p) >> 3;
}

/* The common case, with the automaton state in a register: bytes that
 * report nothing and end nothing, while no carried-over state is walked
 * alongside. In the resume state, words none of whose bytes leads out
 * of it are passed over whole (pd_word_stays), then bytes one by one by
 * the stop table (all of a service's bytes to look for, however many);
 * otherwise each byte is one
 * load of its class and one of the entry, addressed directly in the
 * slot's table. Stops before a byte that needs scan_byte: an entry with
 * PD_T_MATCH (a rule reported, a line's '\n'). Returns whether it
 * consumed any; the result is pd_walk's, byte for byte. */
static __always_inline __u32 scan_fast(struct scan *s)
{
	struct pd_run *run = s->run;
	struct pd_match *m = s->m;
	const struct pd_service *svc = s->svc;
	const __u8 *tab = s->tab, *cls = s->cm->cls;
	__u8 *data = s->data, *data_end = s->data_end, *p;
	__u32 i = s->run->wused, cnt = s->n - i, done = 0, state = m->state;
	__u32 left = run->match_left, base = s->base, row, skipped = 0, hit = 0;
	__u32 last = pd_slot_last_row + (pd_row_mask << 2), dlim;

	if (i >= s->n)
		return 0;
	if (!left) {
		/* past the inspect window of a line: only its end matters */
		if (!run->line)
			return 0;
		__u32 k;

#pragma unroll
		for (k = 0; k < PD_EOL_BYTES; k++) {
			barrier_var(cnt);       /* else the loop is not unrolled */
			if (k >= cnt)
				break;
			p = data + ((i + k) & (PD_WINDOW - 1));
			if (p + 1 > data_end || *p == '\n')
				break;
		}
		done = k;
		goto used;
	}
	if (cnt > left)
		cnt = left;
	if (state == svc->resume && svc->nskip) {
		__u32 words = cnt >> 3, w;

		/* 8 bytes at a time while none is one of svc->skip */
		if (svc->nskip <= 2 && pd_keys_ascii(svc->skip[0], svc->skip[1], 0, 0))
			w = skip2_ascii(s->msg, i, words, svc->skip[0], svc->skip[1]);
		else
			w = skip4(s->msg, i, words, svc);
		if (w > words)          /* a global function's result is not */
			w = words;      /* bounded for the verifier */
		hit = w < words && w < PD_SKIP_WORDS;
		done = w * 8;
		if (done)
			goto skipped;
	}
	if (state == svc->resume) {
		/* one at a time, by table: too many bytes to look for in a
		 * word, or the word test stopped at once */
		const __u8 *stop = s->cm->stop;

		p = data + (i & (PD_WINDOW - 1));
		if (cnt >= PD_STOP_BYTES && p + PD_STOP_BYTES <= data_end) {
#pragma unroll
			for (done = 0; done < PD_STOP_BYTES; done++)
				if (stop[p[done]]) {
					hit = 1;
					break;
				}
		} else {
#pragma unroll
			for (done = 0; done < PD_STOP_TAIL; done++) {
				barrier_var(cnt);
				if (done >= cnt || p + done + 1 > data_end)
					break;
				if (stop[p[done]]) {
					hit = 1;
					break;
				}
			}
		}
		if (done)
			goto skipped;
	}
skipped:
	if (done) {
		/* at a byte that leads out of the resume state, on to the walk
		 * in the same call (for small sends the calls cost more than
		 * the bytes); else the next call passes over more. What was
		 * passed over is written back and read again from memory, so
		 * that the verifier, which does not follow it there, checks
		 * the walk once and not once for each number of bytes passed
		 * over */
		m->seen += done;
		run->match_left = left - done;
		run->wused = i + done;
		if (!hit)
			return 1;
		skipped = 1;    /* not the count: one value on every path */
		i = *(volatile __u32 *)&run->wused;
		left = *(volatile __u32 *)&run->match_left;
		if (i >= s->n || !left)
			return skipped;
		cnt = s->n - i;
		if (cnt > left)
			cnt = left;
		done = 0;
	}
	/* through the table: the row's offset in a register, one load of the
	 * class and one of the entry per byte; a block with one bounds check
	 * where the window has it */
	row = (state - base) << pd_row_shift;
	p = data + (i & (PD_WINDOW - 1));
	/* two walks at once where the send has the bytes; the class is not
	 * masked there, so a row is read only if the table has 256 entries
	 * past its start: up to dlim (smaller tables, the last rows of narrow
	 * ones: one walk) */
	dlim = last + 4 - 1024;
	if (cnt >= 2 * PD_DUAL && p + 2 * PD_DUAL <= data_end && last >= 1024 && row <= dlim) {
		struct dual d = { .row = row, .lim = dlim };

		d.rrow = (svc->resume - base) << pd_row_shift;
		if (d.rrow <= dlim)
			done = dual_walk(&d, p, cls, tab);
		row = d.row;
	}
	if (done) {
		/* walked */
	} else if (cnt >= PD_FAST_BYTES && p + PD_FAST_BYTES <= data_end) {
#pragma unroll
		for (done = 0; done < PD_FAST_BYTES; done++)
			if (!table_step(&row, p[done], cls, tab, last))
				break;
	} else {
#pragma unroll
		for (done = 0; done < PD_FAST_TAIL; done++) {
			barrier_var(cnt);
			if (done >= cnt || p + done + 1 > data_end ||
			    !table_step(&row, p[done], cls, tab, last))
				break;
		}
	}
	state = (row >> pd_row_shift) + base;
	m->state = state;
	m->seen += done;
	run->match_left = left - done;
used:
	run->wused = i + done;
	return skipped || done;
}

/* One callback: the fast way as far as it goes, else a few bytes the
 * slow way (back to the fast way once no carried-over state is left).
 * Every call consumes a byte or returns 1, so a window needs at most its
 * length in calls. */
static long scan_step(__u32 c, void *arg)
{
	struct scan *s = arg;
	__u32 i;

	if (s->run->wused >= s->n)
		return 1;
	if (!s->m->cont_left && scan_fast(s))
		return 0;
	i = s->run->wused;
#pragma unroll
	for (int k = 0; k < PD_CHUNK; k++) {
		if (scan_byte(s, i + k))
			return 1;
		if (!s->m->cont_left)
			return 0;
	}
	return 0;
}

static __always_inline int scan_done(const struct scan *s)
{
	const struct pd_run *run = s->run;

	return s->off >= run->limit || run->ended || run->err ||
	       (!run->line && (!run->match_left || s->m->deny));
}

/* One window: make it readable, then walk it. */
static long scan_window(__u32 w, void *arg)
{
	struct scan *s = arg;
	struct sk_msg_md *msg = s->msg;
	__u32 n;

	if (scan_done(s))
		return 1;
	n = s->run->limit - s->off;
	if (n > PD_WINDOW)
		n = PD_WINDOW;
	if (bpf_msg_pull_data(msg, s->off, s->off + n, 0)) {
		s->run->err = 1;
		return 1;
	}
	s->data = msg->data;
	s->data_end = msg->data_end;
	s->n = n;
	s->run->wused = 0;
	bpf_loop(n, scan_step, s, 0);
	s->off += s->run->wused;
	if (s->run->wused < n && !scan_done(s)) {
		s->run->err = 1;        /* the window was shorter than pulled */
		return 1;
	}
	return 0;
}

/* Sends of at most PD_SMALL bytes (requests of request/response
 * protocols) are walked in one pass, without pd_scan's windows and
 * callbacks. */
#define PD_SMALL 128
#define PD_SMALL_CONT 4

/* The common small send, framing none, walked in one function: every
 * byte through the table from the row in a register, the carried-over
 * walk alongside while it lasts, nothing reported. Reads the send where
 * the kernel points the program at its first scatterlist element, with
 * no pull: so only a send that lies whole in it. Returns the bytes
 * consumed (run.limit), with st->cur.m and st->run updated as pd_scan
 * would; or -1 with nothing changed, for pd_scan to do it: longer, not
 * in one element, a transition that reports (PD_T_MATCH: a rule, or a
 * carried walk that ends a pattern, or goes on past PD_SMALL_CONT bytes),
 * tables out of step. Global, so the verifier checks it once (92,870 ->
 * 124,547 instructions processed for the program). Program time per run
 * for redis-benchmark -P 1 with the Redis profile, medians of 4
 * alternated (kernel.bpf_stats_enabled): 632 -> 418 ns; the floor, a
 * policy that reads no byte, is ~200 ns. */
__noinline int small_walk(struct sk_msg_md *msg, struct pd_sock *st)
{
	__u32 gen, key, n, k, row, crow = 0, rrow, cleft, base, cont = 0;
	__u32 last = pd_slot_last_row + (pd_row_mask << 2);
	const struct pd_classmap *cm;
	const struct pd_service *svc;
	const __u8 *tab, *p, *end, *cls;
	struct pd_match *m;

	if (!msg || !st)
		return -1;
	n = st->run.limit;
	if (!n || n > PD_SMALL)
		return -1;
	gen = st->cur.gen & 1;
	key = gen * PD_MAX_SERVICES + (st->service & (PD_MAX_SERVICES - 1));
	cm = bpf_map_lookup_elem(&pd_classes, &key);
	svc = bpf_map_lookup_elem(&pd_services, &key);
	tab = bpf_map_lookup_elem(&pd_trans, &gen);
	if (!cm || !svc || !tab)
		return -1;
	cls = cm->cls;
	p = (const __u8 *)(long)msg->data;
	end = (const __u8 *)(long)msg->data_end;
	m = &st->cur.m;
	base = gen * pd_slot_states;
	row = (m->state - base) << pd_row_shift;
	rrow = (svc->resume - base) << pd_row_shift;
	cleft = m->cont_left;
	if (cleft) {
		/* the carried-over walk: mostly back in the resume state
		 * after a byte or two; one that goes on longer is left to
		 * pd_scan */
		cont = 1;
		crow = (m->cont - base) << pd_row_shift;
#pragma unroll
		for (k = 0; k < PD_SMALL_CONT; k++) {
			barrier_var(cleft);     /* else the loop is not unrolled */
			if (!cleft || k >= n)
				break;
			if (p + k + 1 > end || !table_step(&row, p[k], cls, tab, last))
				return -1;
			cleft--;
			if (!table_step(&crow, p[k], cls, tab, last))
				return -1;
			if (crow == rrow) {
				cleft = 0;
				cont = 0;       /* back where it skips: ended */
			}
		}
		if (cleft && k < n)
			return -1;
		p += k;
		n -= k;
	}
	for (k = 0; k < PD_SMALL; k++) {
		if (k >= n)
			break;
		if (p + k + 1 > end || !table_step(&row, p[k], cls, tab, last))
			return -1;
	}
	m->state = (row >> pd_row_shift) + base;
	if (m->cont_left) {
		m->cont = cont ? (crow >> pd_row_shift) + base : PD_NO_STATE;
		m->cont_left = cleft;
	}
	n = st->run.limit;
	m->seen += n;
	st->run.match_left -= n;
	st->run.used = n;
	return n;
}

/* Consume bytes [0, run.limit) of this sk_msg, window by window, until the
 * limit, a deny, or (line framing) the end of a line. Sets run.used, or
 * run.err to fail closed. Inline, with the caller's socket storage: one
 * call site, and a global function would look the storage up again
 * (a run of the program with one byte inspected: ~400 -> ~350 ns). */
static __always_inline int pd_scan(struct sk_msg_md *msg, struct pd_sock *st)
{
	struct scan s = {};
	__u32 key, gen;

	gen = st->cur.gen & 1;
	key = gen * PD_MAX_SERVICES + (st->service & (PD_MAX_SERVICES - 1));
	s.cm = bpf_map_lookup_elem(&pd_classes, &key);
	s.svc = bpf_map_lookup_elem(&pd_services, &key);
	s.tab = bpf_map_lookup_elem(&pd_trans, &gen);
	if (!s.cm || !s.svc || !s.tab) {
		st->run.err = 1;
		return -1;
	}
	s.base = gen * pd_slot_states;
	s.m = &st->cur.m;
	s.run = &st->run;
	s.msg = msg;
	bpf_loop(PD_MAX_WINDOWS, scan_window, &s, 0);
	st->run.used = s.off;
	if (!scan_done(&s))
		st->run.err = 1;        /* longer than PD_MAX_WINDOWS windows */
	return 0;
}

/* Send the event described by st->run.ev_* to the daemon. Global, so the
 * verifier checks it once however many paths lead here. */
__noinline int pd_emit(struct sk_msg_md *msg)
{
	__u32 zero = 0, ex = 0, avail, gen, rk;
	struct pd_config *cfg;
	struct pd_event *e;
	struct pd_sock *st;
	struct pd_rule *r;
	__u64 id;

	if (!msg || !msg->sk)
		return -1;
	st = bpf_sk_storage_get(&pd_sk, msg->sk, 0, 0);
	if (!st)
		return -1;
	avail = msg->size;
	gen = st->cur.gen & 1;
	cfg = bpf_map_lookup_elem(&pd_config, &zero);
	e = bpf_ringbuf_reserve(&pd_events, sizeof(*e), 0);
	if (!e) {
		trouble(PD_TR_RINGBUF);
		return -1;
	}
	id = bpf_get_current_pid_tgid();
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->len = st->run.ev_len;
	e->bytes = st->run.ev_bytes;
	e->service = st->service;
	e->verdict = st->run.ev_verdict;
	e->rule_id = 0;
	e->audit_id = 0;
	e->sink = 0;
	e->audit = st->cur.m.audit ? 1 : 0;
	rk = gen * (PD_MAX_RULES + 1) + st->run.ev_rule;
	r = st->run.ev_rule ? bpf_map_lookup_elem(&pd_rules, &rk) : NULL;
	if (r) {
		e->rule_id = r->id;
		e->sink = r->sink;
	}
	rk = gen * (PD_MAX_RULES + 1) + st->cur.m.audit;
	r = st->cur.m.audit ? bpf_map_lookup_elem(&pd_rules, &rk) : NULL;
	if (r)
		e->audit_id = r->id;
	e->family = (__u8)msg->family;
	e->pad = 0;
	if (msg->family == AF_INET6) {
		e->saddr[0] = msg->local_ip6[0];
		e->saddr[1] = msg->local_ip6[1];
		e->saddr[2] = msg->local_ip6[2];
		e->saddr[3] = msg->local_ip6[3];
		e->daddr[0] = msg->remote_ip6[0];
		e->daddr[1] = msg->remote_ip6[1];
		e->daddr[2] = msg->remote_ip6[2];
		e->daddr[3] = msg->remote_ip6[3];
	} else {
		e->saddr[0] = msg->local_ip4;
		e->daddr[0] = msg->remote_ip4;
		e->saddr[1] = e->saddr[2] = e->saddr[3] = 0;
		e->daddr[1] = e->daddr[2] = e->daddr[3] = 0;
	}
	e->sport = (__u16)msg->local_port;
	e->dport = bpf_ntohl(msg->remote_port) & 0xffff;
	if (cfg)
		ex = cfg->excerpt;
	if (ex > PD_EXCERPT_MAX)
		ex = PD_EXCERPT_MAX;
	if (ex > avail)
		ex = avail;
	/* the message's own bytes: under line framing the next line may
	 * follow in the same sk_msg */
	if (e->bytes && ex > e->bytes)
		ex = e->bytes;
	e->excerpt_len = 0;
	if (ex && !bpf_msg_pull_data(msg, 0, ex, 0)) {
		void *d = msg->data;

		ex &= PD_EXCERPT_MAX * 2 - 1;
		if (ex <= PD_EXCERPT_MAX && !bpf_probe_read_kernel(e->excerpt, ex, d))
			e->excerpt_len = ex;
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

static __always_inline void emit(struct sk_msg_md *msg, struct pd_sock *st, __u32 verdict,
				 __u32 rule, __u32 len, __u32 bytes)
{
	st->run.ev_verdict = (__u8)verdict;
	st->run.ev_rule = (__u16)rule;
	st->run.ev_len = len;
	st->run.ev_bytes = bytes;
	pd_emit(msg);
}

static __always_inline __u32 counter_slot(const struct pd_sock *st, __u32 rule)
{
	__u32 rk = (st->cur.gen & 1) * (PD_MAX_RULES + 1) + (rule & 0xffff);
	struct pd_rule *r;

	if (rule) {
		r = bpf_map_lookup_elem(&pd_rules, &rk);
		if (r)
			return r->id;
	}
	return PD_COUNTER_DEFAULT(st->service & (PD_MAX_SERVICES - 1));
}

/* A decided message: count it, log it when it must be logged. */
static __always_inline void decided(struct sk_msg_md *msg, struct pd_sock *st, __u32 verdict,
				    __u32 rule, __u32 len, __u32 bytes)
{
	__u32 audit = st->cur.m.audit;

	count(counter_slot(st, rule), len);
	if (audit && rule != audit)
		count(counter_slot(st, audit), len);
	if (verdict != PD_V_PASS || audit)
		emit(msg, st, verdict, rule, len, bytes);
}

/* Pass, drop or divert. Every run sets apply and cork bytes itself: the
 * kernel keeps the values of an earlier run on the same sk_msg. */
static __always_inline int act(struct sk_msg_md *msg, struct pd_sock *st, __u32 verdict,
			       __u32 rule, __u32 apply)
{
	__u32 rk = (st->cur.gen & 1) * (PD_MAX_RULES + 1) + (rule & 0xffff);
	__u64 self = st->cookie;
	struct pd_rule *r;

	bpf_msg_cork_bytes(msg, 0);
	bpf_msg_apply_bytes(msg, apply);
	if (verdict == PD_V_DENY) {
		doom(st);
		return SK_DROP;
	}
	if (verdict == PD_V_REDIRECT) {
		r = bpf_map_lookup_elem(&pd_rules, &rk);
		/* the rest of this sk_msg keeps the target: see sticky */
		st->sticky = apply != 0;
		return bpf_msg_redirect_map(msg, &pd_sinks, r ? r->sink : 0, BPF_F_INGRESS);
	}
	/* After a redirect, the kernel's sk_msg still names the sink, and a
	 * plain pass would send the rest there too: pass by sending it out
	 * on this very socket. */
	if (st->sticky) {
		if (!apply)
			st->sticky = 0;
		return bpf_msg_redirect_hash(msg, &pd_sockets, &self, 0);
	}
	return SK_PASS;
}

SEC("sk_msg")
int pd_msg(struct sk_msg_md *msg)
{
	const struct pd_service *svc;
	struct pd_sock *st;
	__u32 key, size = msg->size, verdict, rule = 0, win_done, used;
	int hold;

	if (!msg->sk)
		return SK_DROP;
	st = bpf_sk_storage_get(&pd_sk, msg->sk, 0, 0);
	if (!st) {
		trouble(PD_TR_NO_STATE);
		return SK_DROP;
	}
	/* a held message is judged again from here */
	st->snap = st->cur;
	if (!st->cur.in_msg) {
		__u32 gen = active_gen();

		if (gen != st->cur.gen)
			st->cur.m.state = PD_NO_STATE;      /* nothing carries across a reload */
		st->cur.gen = gen;
	}
	key = (st->cur.gen & 1) * PD_MAX_SERVICES + (st->service & (PD_MAX_SERVICES - 1));
	svc = bpf_map_lookup_elem(&pd_services, &key);
	if (!svc)
		goto tables;
	if (st->cur.m.state == PD_NO_STATE)
		st->cur.m.state = svc->resume;
	if (!st->cur.in_msg) {
		if (pd_begin(&st->cur.m, svc, NULL))
			goto tables;
		st->cur.msglen = 0;
	}
	st->run.line = svc->framing == PD_FRAME_LINE;
	st->run.ended = 0;
	st->run.err = 0;
	st->run.used = 0;
	st->run.match_left = 0xffffffff;
	if (svc->inspect)
		st->run.match_left = svc->inspect > st->cur.msglen ? svc->inspect - st->cur.msglen : 0;
	/* framing none: this sk_msg is the message; line: up to a '\n' */
	st->run.limit = size;
	if (!st->run.line && st->run.match_left < size)
		st->run.limit = st->run.match_left;
	if (svc->noscan)
		st->run.used = st->run.limit;   /* nothing to look for */
	else if (st->run.line || small_walk(msg, st) < 0)
		pd_scan(msg, st);
	if (st->run.err)
		goto tables;
	used = st->run.used;

	if (!st->run.line) {
		pd_length(&st->cur.m, svc, size);
		verdict = pd_verdict(&st->cur.m, svc, &rule);
		pd_end(&st->cur.m, svc, used == size);
		decided(msg, st, verdict, rule, size, size);
		return act(msg, st, verdict, rule, 0);
	}

	st->cur.msglen += used;
	pd_length(&st->cur.m, svc, st->cur.msglen);
	win_done = svc->inspect && st->cur.msglen >= svc->inspect;
	if (st->run.ended || st->cur.m.deny) {
		verdict = pd_verdict(&st->cur.m, svc, &rule);
		st->cur.in_msg = 0;
		decided(msg, st, verdict, rule, st->cur.msglen, used);
		pd_end(&st->cur.m, svc, 1);
		/* a drop covers the whole sk_msg: the kernel frees all of it,
		 * and only then tells the sender the right count */
		return act(msg, st, verdict, rule,
			   verdict != PD_V_DENY && used < size ? used : 0);
	}
	/* the line goes on past this sk_msg */
	hold = win_done ? 0 : pd_must_hold(&st->cur.m, svc, NULL);
	if (hold < 0)
		goto tables;
	if (hold) {
		/* keep it back until more of the line arrives; the kernel runs
		 * us on the whole held part again, from the state saved above.
		 * If it cannot hold (buffer full), the drop applies. */
		st->cur = st->snap;
		trouble(PD_TR_HELD);
		bpf_msg_apply_bytes(msg, 0);
		bpf_msg_cork_bytes(msg, size + 1);
		return SK_DROP;
	}
	st->cur.in_msg = 1;
	verdict = PD_V_PASS;
	rule = 0;
	if (win_done || st->cur.m.redirect)
		verdict = pd_verdict(&st->cur.m, svc, &rule);
	if (verdict == PD_V_DENY)
		decided(msg, st, verdict, rule, st->cur.msglen, size);
	else if (verdict == PD_V_REDIRECT)
		emit(msg, st, verdict, rule, st->cur.msglen, size);
	else
		verdict = PD_V_PASS;    /* audit and default: decided at the line's end */
	return act(msg, st, verdict, rule, 0);
tables:
	trouble(PD_TR_TABLES);
	doom(st);
	return SK_DROP;
}

/* The kernel's types the abort iterator reads, resolved against its BTF
 * at load time (CO-RE): only the fields used are declared. */
struct sock_common {
	unsigned short skc_family;
} __attribute__((preserve_access_index));
struct bpf_iter_meta;
struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __attribute__((preserve_access_index));
struct tcp_sock {
	__u32 snd_una;
	__u32 write_seq;
} __attribute__((preserve_access_index));

/* How long an abort waits for the bytes passed before the drop to be
 * acknowledged by the peer (an abort discards unsent data). */
#define PD_ABORT_DRAIN_NS (10ull * 1000000000)

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* After a drop the kernel fails every later send on the socket, but the
 * connection stays open: a client that then waits for a reply (libpq,
 * many RPC clients) would wait for ever, and so would the server. The
 * daemon runs this iterator over the TCP sockets after a drop; it aborts
 * the doomed ones as `ss -K` would: the peer gets a reset, the sender's
 * next call fails with ECONNABORTED. Not before the peer acknowledged
 * every byte sent before the drop (passed lines of the same send): an
 * abort throws away what is still queued. */
SEC("iter/tcp")
int pd_abort(struct bpf_iter__tcp *ctx)
{
	struct sock_common *sk = ctx->sk_common;
	struct tcp_sock *tp;
	__u64 cookie, *when;

	if (!sk || (sk->skc_family != AF_INET && sk->skc_family != AF_INET6))
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	when = bpf_map_lookup_elem(&pd_doomed, &cookie);
	if (!when)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (tp && tp->snd_una != tp->write_seq &&
	    bpf_ktime_get_ns() - *when < PD_ABORT_DRAIN_NS)
		return 0;       /* the next pass */
	bpf_map_delete_elem(&pd_doomed, &cookie);
	bpf_sock_destroy(sk);
	return 0;
}
