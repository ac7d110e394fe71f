/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The scan: how the data plane walks the bytes of a send through a
 * service's automaton, fast where nothing can match. Plain C over
 * pointers and bounds, no helpers and no maps: the BPF program includes
 * it (bpf/policyd.bpf.c) and so do the unit tests and `policyd test`
 * (policyd/judge.c), so that what they run is what the kernel runs.
 *
 * The includer defines, besides what pd_match.h asks for:
 *   PD_ROW_SHIFT          log2 of a row's bytes
 *   PD_SLOT_LAST_ROW      byte offset of the table's last row
 *   PD_SKIP2(s, off, n, k0, k1)  pd_skip2_ascii over the words at window
 *                         offset off (BPF: a global function, verified once)
 *   PD_SKIP4(s, off, n, svc)     pd_skip4 the same way
 *   PD_GRAMS(s, off, n, stride)  pd_grams the same way
 *   PD_DUAL_WALK(d, p, cls, tab) pd_dual_walk (BPF: a function of its own)
 *   PD_FAST_WALK(s, off, n, f)   pd_fast_walk over the bytes at window
 *                         offset off (BPF: a global function, verified once)
 *   PD_STOP_WALK(s, off, n)      pd_stop_walk the same way
 *   PD_PULL(s, src, start, end)  make bytes from start of the send (src)
 *                         readable at s->data (up to s->data_end, which
 *                         may lie further): those up to end, or fewer
 *                         where the send's piece that holds start ends
 *                         before (BPF: a pull that spans pieces makes the
 *                         kernel copy them); how many, or 0 on failure
 *   PD_LOOP(n, fn, ctx)   call fn(i, ctx) for i = 0.. until it returns
 *                         nonzero, at most n times (bpf_loop)
 *   PD_LINE_PASS(s, end)  optional, line framing: the line that ended at
 *                         byte end of the send passes with nothing to log:
 *                         counted, the automaton set for the next line, and
 *                         1 returned for the walk to go on with it; else 0,
 *                         and the walk ends at the line's end (the default)
 *   barrier_var(x)        keep x in a register (bpf_helpers.h)
 * and may define PD_LOAD64(q) and PD_LOAD32(q), 8 and 4 bytes of the send at
 * any alignment.
 *
 * A send is read in windows of PD_WINDOW bytes (pd_scan_window); each is
 * walked by callbacks (pd_scan_step) that go the fast way as far as it
 * goes (pd_scan_fast) and otherwise a few bytes the slow way, through
 * pd_byte (pd_scan_byte). Sends of at most PD_SMALL bytes that lie in
 * one piece are walked in one pass instead (pd_small_walk). All of them
 * agree with pd_walk byte for byte, except the gram filter (pd_grams),
 * whose verdicts agree; tests/unit/test_scan.c checks both.
 */
#ifndef PD_SCAN_H
#define PD_SCAN_H

#include "pd_match.h"

#ifdef __clang__
#define PD_UNROLL _Pragma("unroll")
#else
#define PD_UNROLL
#endif

/* A word of the send, at any alignment (the host's includer reads it
 * with memcpy). */
#ifndef PD_LOAD64
#define PD_LOAD64(q) (*(const __u64 *)(q))
#endif
#ifndef PD_LOAD32
#define PD_LOAD32(q) (*(const __u32 *)(q))
#endif

/* Bytes made readable at once by bpf_msg_pull_data, at most. A range
 * inside one scatterlist element is read in place; one that spans
 * elements (or lies in pages spliced from the page cache) makes the
 * kernel copy every element it touches, whole, into a new page that
 * replaces them. Such a copy also costs the send its layout: TCP then
 * needs more page fragments for a full-sized segment than an skb takes
 * (MAX_SKB_FRAGS), closes one short of it, and a receiver that delays
 * its acknowledgement of a short segment holds the rest up (nginx with
 * tcp_nopush: about 40 ms a reply). So a window also ends where the
 * element that holds its start ends (PD_PULL). */
#define PD_WINDOW 4096
/* Windows per program run: more than the largest sk_msg takes (MAX_SKB_FRAGS
 * elements of at most 32 KiB each, in windows that end at each element's
 * end too). A longer run fails closed. */
#define PD_MAX_WINDOWS 192
/* Work per callback (a bpf_loop call costs more than walking a byte, so
 * each does a batch): words passed over in the resume state (a block with one
 * bounds check, or as many checked one by one), bytes passed over
 * there one by one (when a service has too many bytes to look for in a
 * word), bytes walked through the transition table, bytes searched for a
 * '\n' past the inspect window, bytes walked the slow way while a
 * carried-over state is walked too.
 * An unrolled loop can stop at any of its bytes, and the verifier checks
 * what follows each way out on its own, once for each state the callback
 * is checked in: Linux 6.18's verifier, which checks a callback's body as
 * a loop, did not take pd_msg within its million instructions with the
 * loops inline (on some of its builds). So the stop table's and the
 * table walk's loops are functions of their own (pd_stop_walk,
 * pd_fast_walk: global in the BPF program, checked once), and the slow
 * way, whose byte can end a line or a match, takes one byte a callback:
 * pd_msg verifies in about 675,000 instructions under every policy. */
#define PD_SKIP_WORDS 64
#define PD_STOP_BYTES 64
#define PD_STOP_TAIL 15
#define PD_FAST_BYTES 32
#define PD_FAST_TAIL 15
#define PD_EOL_BYTES 32
#define PD_CHUNK 1

/* What the callbacks work on (on the program's stack). */
struct pd_scan {
	struct pd_match *m;
	struct pd_run *run;
	const struct pd_classmap *cm;
	const struct pd_service *svc;
	const __u8 *tab;        /* the transition table of the policy slot */
	void *src;              /* what PD_PULL and PD_SKIP* read: the sk_msg */
	__u8 *data;             /* the pulled window */
	__u8 *data_end;
	__u32 base;             /* global index of the slot's first state */
	__u32 n;                /* bytes of the window to look at */
	__u32 off;              /* bytes of the send consumed */
	__u64 pass_to;          /* line framing: a line that ends within the first
	                         * pass_to bytes may pass without ending the walk
	                         * (PD_LINE_PASS); 0: each line ends it */
	__u32 piece_end;        /* for PD_PULL: where the send's element that held
	                         * the last window's start ends (0: not known) */
	__u32 gen;              /* the policy slot (for PD_FAST_WALK) */
};

#ifndef PD_LINE_PASS
#define PD_LINE_PASS(s, end) 0
#endif

/* One byte at window offset i, through pd_byte: 0 to go on, 1 to stop
 * (limit, decided, line end, error). */
PD_INLINE int pd_scan_byte(struct pd_scan *s, __u32 i)
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
PD_INLINE int pd_table_step(__u32 *row, __u8 b, const __u8 *cls, const __u8 *tab, __u32 last)
{
	/* a sum, the same as an or (a row's offset has the class bits
	 * clear): Linux 6.1's verifier loses every bound of an or with an
	 * unknown value, and the check below then bounds nothing */
	__u32 off = *row + ((__u32)cls[b] << 2), t;

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
 * addition and one load between steps. The BPF program calls it as a
 * function of its own with the bounds in a struct: inlined, the walks'
 * values did not fit in the registers. */
#define PD_DUAL 64
#define PD_SYNC 16

#define PD_DUAL_STEP(r, b, t)							\
	({									\
		const __u8 *a_ = tab + ((__u32)cls[b] << 2);			\
		asm volatile("" : "+r"(a_));	/* the row is added last */	\
		(t) = *(const __u32 *)(a_ + (r));				\
		(t) <= lim;							\
	})

struct pd_dual {        /* 64-bit fields: the verifier keeps the bounds of whole-slot spills */
	__u64 row;      /* in: the state's row; out: the row after the bytes walked */
	__u64 rrow;     /* the resume state's row */
	__u64 lim;      /* the last row two walks read (see dlim in pd_scan_fast) */
};

PD_INLINE __u32 pd_dual_walk(struct pd_dual *d, const __u8 *p, const __u8 *cls, const __u8 *tab)
{
	__u32 ra = d->row, rb = d->rrow, lim = d->lim, rs = 0, ta, tb, k;

	PD_UNROLL
	for (k = 0; k < PD_DUAL + PD_SYNC; k++) {
		if (!PD_DUAL_STEP(ra, p[k], ta))
			return 0;
		ra = ta;
		if (k < PD_DUAL) {
			if (!PD_DUAL_STEP(rb, p[PD_DUAL + k], tb))
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

/* One way of testing words for pd_skip2_ascii and pd_skip4: a block of
 * PD_SKIP_WORDS with one bounds check where n and the window have it,
 * else word by word up to n. Leaves q at the first word that holds a
 * key's byte, or past the last word tested. */
#define PD_SKIP_WORDS_BY(hit)							\
	do {									\
		if (n >= PD_SKIP_WORDS && p + PD_SKIP_WORDS * 8 <= end) {	\
			PD_UNROLL						\
			for (w = 0; w < PD_SKIP_WORDS; w++) {			\
				v = PD_LOAD64(q);				\
				if (hit)					\
					goto out;				\
				q += 8;						\
			}							\
		} else {							\
			PD_UNROLL						\
			for (w = 0; w < PD_SKIP_WORDS; w++) {			\
				barrier_var(n);					\
				if (w >= n || q + 8 > end)			\
					goto out;				\
				v = PD_LOAD64(q);				\
				if (hit)					\
					goto out;				\
				q += 8;						\
			}							\
		}								\
	} while (0)

/* How many of the n words (at most PD_SKIP_WORDS) at window offset off
 * of the window at data (readable up to end) hold none of the keys'
 * bytes (pd_word_stays), counted up to the first that holds one.
 * pd_skip2_ascii: two keys below 0x80, the common case; pd_skip4: up to
 * four, any bytes (svc->skip). The BPF program calls them through
 * global functions, verified once each, which keep the keys and
 * constants in registers. */
PD_INLINE int pd_skip2_ascii(const __u8 *data, const __u8 *end, __u32 off, __u32 n, __u64 k0,
			     __u64 k1)
{
	__u64 lo = PD_BYTES_01, hi = PD_BYTES_80, v;
	const __u8 *p, *q;
	__u32 w;

	p = data + (off & (PD_WINDOW - 1));
	q = p;
	asm volatile("" : "+r"(lo), "+r"(hi));  /* in registers, not reloaded per word */
	PD_SKIP_WORDS_BY(pd_hit2_ascii(v, k0, k1, lo, hi));
out:
	return (q - p) >> 3;
}

PD_INLINE int pd_skip4(const __u8 *data, const __u8 *end, __u32 off, __u32 n,
		       const struct pd_service *svc)
{
	__u64 lo = PD_BYTES_01, hi = PD_BYTES_80, v, k0, k1, k2, k3;
	const __u8 *p, *q;
	__u32 w;

	k0 = svc->skip[0], k1 = svc->skip[1], k2 = svc->skip[2], k3 = svc->skip[3];
	p = data + (off & (PD_WINDOW - 1));
	q = p;
	asm volatile("" : "+r"(lo), "+r"(hi));
	if (pd_keys_ascii(k0, k1, k2, k3))
		PD_SKIP_WORDS_BY(pd_hit4_ascii(v, k0, k1, k2, k3, lo, hi));
	else
		PD_SKIP_WORDS_BY(pd_hit4(v, k0, k1, k2, k3, lo, hi));
out:
	return (q - p) >> 3;
}

/* One test: whether the 3 bytes at q may be 3 of a pattern's. */
#define PD_GRAM_HIT(q, bits) ((bits)[PD_GRAM_HASH(PD_LOAD32(q) & 0xffffff)])

/* pd_grams with a constant stride: a block of PD_GRAM_TESTS tests at
 * constant offsets with one bounds check where n and the window have
 * them, else test by test. */
PD_INLINE __u32 pd_grams_by(const __u8 *p, const __u8 *end, __u32 n, const __u8 *bits,
			    const __u32 stride)
{
	__u32 k, at = stride - 1;

	if (n >= PD_GRAM_TESTS * stride + 2 && p + PD_GRAM_TESTS * stride + 3 <= end) {
		PD_UNROLL
		for (k = 0; k < PD_GRAM_TESTS; k++)
			if (PD_GRAM_HIT(p + k * stride + stride - 1, bits))
				return k * stride;
		return PD_GRAM_TESTS * stride;
	}
	PD_UNROLL
	for (k = 0; k < PD_GRAM_TESTS; k++) {
		barrier_var(n);
		if (at + 3 > n || p + at + 4 > end || PD_GRAM_HIT(p + at, bits))
			break;
		at += stride;
	}
	return at - (stride - 1);
}

/* The gram filter (pd_service.gstride, compile.c's gram_set): from
 * window offset off in the resume state, stride bytes at a time while the
 * 3 bytes at the last of them have entry 0 in cm->grams: none of those
 * stride bytes can begin an occurrence of a pattern (each has 3 of its
 * first bytes at one of them), so none matters to what follows, and the
 * scan goes on in the resume state past them. Up to PD_GRAM_TESTS tests,
 * within the n bytes from off and the window up to end; strides 3 to
 * PD_GRAM_STRIDE_MAX (each its own unrolled loop, so that every test
 * reads at a constant offset). The bytes passed
 * over: a multiple of stride, short of PD_GRAM_TESTS strides when a test
 * found an entry set or the bytes ran out. Unlike the word and byte skips,
 * it passes over bytes that may begin a pattern's prefix: the state it
 * leaves is the resume state where the walk byte by byte would be in a
 * prefix that cannot complete. The verdicts are the same (test_scan.c
 * checks them against the reference matcher); a state kept across a
 * reload may then know less of a half-matched pattern of the new policy.
 * The BPF program calls it through a global function, verified once. */
PD_INLINE __u32 pd_grams(const __u8 *data, const __u8 *end, __u32 off, __u32 n, __u32 stride,
			 const __u8 *bits)
{
	const __u8 *p = data + (off & (PD_WINDOW - 1));

	switch (stride) {
	case 3: return pd_grams_by(p, end, n, bits, 3);
	case 4: return pd_grams_by(p, end, n, bits, 4);
	case 5: return pd_grams_by(p, end, n, bits, 5);
	case 6: return pd_grams_by(p, end, n, bits, 6);
	case 7: return pd_grams_by(p, end, n, bits, 7);
	case 8: return pd_grams_by(p, end, n, bits, 8);
	}
	return 0;
}

/* In the resume state, bytes one at a time by the stop table (a
 * service's bytes to look for): up to n from window offset off (to
 * end), a block with one bounds check where there are PD_STOP_BYTES.
 * Returns the bytes passed over, times 2, plus 1 where a byte to look
 * for ends them. */
PD_INLINE __u32 pd_stop_walk(const __u8 *data, const __u8 *end, __u32 off, __u32 n,
			     const __u8 *stop)
{
	const __u8 *p = data + (off & (PD_WINDOW - 1));
	__u32 done;

	if (n >= PD_STOP_BYTES && p + PD_STOP_BYTES <= end) {
		PD_UNROLL
		for (done = 0; done < PD_STOP_BYTES; done++)
			if (stop[p[done]])
				return done << 1 | 1;
		return done << 1;
	}
	PD_UNROLL
	for (done = 0; done < PD_STOP_TAIL; done++) {
		barrier_var(n);
		if (done >= n || p + done + 1 > end)
			break;
		if (stop[p[done]])
			return done << 1 | 1;
	}
	return done << 1;
}

/* The table walk of pd_scan_fast: row is the row's offset, grow the
 * resume state's (~0u: none to go back to), gs the gram filter's stride
 * and gen the policy slot (BPF: its table's key). */
struct pd_fast {
	__u32 row;
	__u32 grow;
	__u32 gs;
	__u32 gen;
};

/* Up to n bytes from window offset off (to end) through the table from
 * f->row, one load of the class and one of the entry per byte, until a
 * byte that needs pd_scan_byte, or back in the resume state (f->grow) at least f->gs
 * bytes on; a block with one bounds check where there are PD_FAST_BYTES.
 * Returns the bytes consumed, f->row where they lead. */
PD_INLINE __u32 pd_fast_walk(struct pd_fast *f, const __u8 *data, const __u8 *end, __u32 off,
			     __u32 n, const __u8 *cls, const __u8 *tab, __u32 last)
{
	const __u8 *p = data + (off & (PD_WINDOW - 1));
	__u32 row = f->row, grow = f->grow, gs = f->gs, done;

	if (n >= PD_FAST_BYTES && p + PD_FAST_BYTES <= end) {
		PD_UNROLL
		for (done = 0; done < PD_FAST_BYTES; done++) {
			if (!pd_table_step(&row, p[done], cls, tab, last))
				break;
			if (row == grow && done + 1 >= gs) {
				done++;
				break;
			}
		}
	} else {
		PD_UNROLL
		for (done = 0; done < PD_FAST_TAIL; done++) {
			barrier_var(n);
			if (done >= n || p + done + 1 > end ||
			    !pd_table_step(&row, p[done], cls, tab, last))
				break;
		}
	}
	f->row = row;
	return done;
}

/* The common case, with the automaton state in a register: bytes that
 * report nothing and end nothing, while no carried-over state is walked
 * alongside. In the resume state, words none of whose bytes leads out
 * of it are passed over whole (pd_word_stays), then bytes one by one by
 * the stop table (all of a service's bytes to look for, however many);
 * otherwise each byte is one load of its class and one of the entry,
 * addressed directly in the slot's table. Stops before a byte that needs
 * pd_scan_byte: an entry with PD_T_MATCH (a rule reported, a line's
 * '\n'). Returns whether it consumed any; the result is pd_walk's, byte
 * for byte. */
PD_INLINE __u32 pd_scan_fast(struct pd_scan *s)
{
	struct pd_run *run = s->run;
	struct pd_match *m = s->m;
	const struct pd_service *svc = s->svc;
	const __u8 *tab = s->tab, *cls = s->cm->cls;
	__u8 *data = s->data, *data_end = s->data_end, *p;
	__u32 i = s->run->wused, cnt = s->n - i, done = 0, state = m->state;
	__u32 left = run->match_left, base = s->base, row, skipped = 0, hit = 0;
	__u32 last = PD_SLOT_LAST_ROW + (PD_ROW_MASK(NULL) << 2), dlim, gs = svc->gstride, grow;

	if (i >= s->n)
		return 0;
	if (!left) {
		/* past the inspect window of a line: only its end matters */
		if (!run->line)
			return 0;
		__u32 k;

		PD_UNROLL
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
	if (state == svc->resume && gs) {
		/* stride bytes at a time while the gram filter finds nothing;
		 * where it stops short, on to the walk */
		done = PD_GRAMS(s, i, cnt, gs);
		if (done > cnt)         /* a global function's result is not */
			done = cnt;     /* bounded for the verifier */
		hit = done < PD_GRAM_TESTS * gs;
		goto skipped;
	}
	if (state == svc->resume && svc->nskip) {
		__u32 words = cnt >> 3, w;

		/* 8 bytes at a time while none is one of svc->skip */
		if (svc->nskip <= 2 && pd_keys_ascii(svc->skip[0], svc->skip[1], 0, 0))
			w = PD_SKIP2(s, i, words, svc->skip[0], svc->skip[1]);
		else
			w = PD_SKIP4(s, i, words, svc);
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
		__u32 r = PD_STOP_WALK(s, i, cnt);

		done = r >> 1;
		if (done > cnt)         /* a global function's result is not */
			done = cnt;     /* bounded for the verifier */
		hit = r & 1;
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
	row = (state - base) << PD_ROW_SHIFT;
	p = data + (i & (PD_WINDOW - 1));
	/* two walks at once where the send has the bytes; the class is not
	 * masked there, so a row is read only if the table has 256 entries
	 * past its start: up to dlim (smaller tables, the last rows of narrow
	 * ones: one walk) */
	dlim = last + 4 - 1024;
	/* where the gram filter stopped: one walk, back to the filter as soon
	 * as it is in the resume state again, past the 3 bytes it stopped at;
	 * a walk that was not back within the block goes on by two walks, as
	 * where the filter is off (text that keeps a pattern begun costs no
	 * more than without it). Under line framing with the word test, one
	 * walk too, back to the test as soon as it can: a line's first bytes
	 * (prefix rules) mostly lead there at once, and two walks would stop
	 * at the line's end, short lines' work thrown away */
	grow = (gs && state == svc->resume) || (run->line && svc->nskip) ?
	       (svc->resume - base) << PD_ROW_SHIFT : ~0u;
	if (grow == ~0u && cnt >= 2 * PD_DUAL && p + 2 * PD_DUAL <= data_end && last >= 1024 &&
	    row <= dlim) {
		struct pd_dual d = { .row = row, .lim = dlim };
		__u32 rrow = (svc->resume - base) << PD_ROW_SHIFT;

		/* stored once checked: Linux 6.1's verifier does not carry a
		 * check made after the store over to the stored copy */
		if (rrow <= dlim) {
			d.rrow = rrow;
			done = PD_DUAL_WALK(&d, p, cls, tab);
		}
		row = d.row;
	}
	if (done) {
		/* walked */
	} else {
		struct pd_fast f = { .row = row, .grow = grow, .gs = gs, .gen = s->gen };

		done = PD_FAST_WALK(s, i, cnt, &f);
		if (done > cnt)         /* a global function's result is not */
			done = cnt;     /* bounded for the verifier */
		row = f.row;
	}
	state = (row >> PD_ROW_SHIFT) + base;
	m->state = state;
	m->seen += done;
	run->match_left = left - done;
used:
	run->wused = i + done;
	return skipped || done;
}

/* A stop of pd_scan_byte: 1 to end the walk; 0 to go on where a line
 * ended that passes with nothing to log (PD_LINE_PASS), within pass_to. */
PD_INLINE long pd_scan_stop(struct pd_scan *s)
{
	__u32 end = s->off + s->run->wused;

	if (!s->run->ended || end > s->pass_to)
		return 1;
	return !PD_LINE_PASS(s, end);
}

/* One callback: the fast way as far as it goes, else a few bytes the
 * slow way (back to the fast way once no carried-over state is left).
 * Every call consumes a byte or returns 1, so a window needs at most its
 * length in calls. */
static long pd_scan_step(__u32 c, void *arg)
{
	struct pd_scan *s = arg;
	__u32 i;

	if (s->run->wused >= s->n)
		return 1;
	if (!s->m->cont_left && pd_scan_fast(s))
		return 0;
	i = s->run->wused;
	PD_UNROLL
	for (int k = 0; k < PD_CHUNK; k++) {
		if (pd_scan_byte(s, i + k))
			goto stop;
		if (!s->m->cont_left)
			return 0;
	}
	return 0;
stop:
	return pd_scan_stop(s);
}

PD_INLINE int pd_scan_done(const struct pd_scan *s)
{
	const struct pd_run *run = s->run;

	return s->off >= run->limit || run->ended || run->err ||
	       (!run->line && (!run->match_left || s->m->deny));
}

/* One window: make it readable, then walk it. */
static long pd_scan_window(__u32 w, void *arg)
{
	struct pd_scan *s = arg;
	void *src = s->src;
	__u32 n, got;

	if (pd_scan_done(s))
		return 1;
	n = s->run->limit - s->off;
	if (n > PD_WINDOW)
		n = PD_WINDOW;
	got = PD_PULL(s, src, s->off, s->off + n);
	if (!got || got > n) {
		s->run->err = 1;
		return 1;
	}
	n = got;
	s->n = n;
	s->run->wused = 0;
	PD_LOOP(n, pd_scan_step, s);
	s->off += s->run->wused;
	if (s->run->wused < n && !pd_scan_done(s)) {
		s->run->err = 1;        /* the window was shorter than pulled */
		return 1;
	}
	return 0;
}

/* Consume bytes [0, run.limit) of the send, window by window, until the
 * limit, a deny, or (line framing) the end of a line: s set up by the
 * caller with the message, run (s->run, passed again so that the
 * compiler need not read it back from s after the loop), the slot's
 * tables and the send (src). Sets run.used, or run.err to fail closed. */
PD_INLINE void pd_scan_run(struct pd_scan *s, struct pd_run *run)
{
	PD_LOOP(PD_MAX_WINDOWS, pd_scan_window, s);
	run->used = s->off;
	if (!pd_scan_done(s))
		run->err = 1;           /* longer than PD_MAX_WINDOWS windows */
}

/* Sends of at most PD_SMALL bytes (requests of request/response
 * protocols) are walked in one pass, without windows and callbacks. */
#define PD_SMALL 128
#define PD_SMALL_CONT 4

/* The common small send, framing none, walked in one function: every
 * byte through the table (tab, classes cls, slot base, last: the byte
 * offset of its last row's last entry) from the row in a register, the
 * carried-over walk alongside while it lasts, nothing reported. n is
 * run.limit, 1 to PD_SMALL (the caller checks). Reads
 * the send from p to end with no pull: so only a send that lies whole
 * there. Returns the bytes consumed (run.limit), with m
 * and run updated as pd_scan_run would; or -1 with nothing changed, for
 * pd_scan_run to do it: longer, not in one piece, a transition that
 * reports (PD_T_MATCH: a rule, or a carried walk that ends a pattern, or
 * goes on past PD_SMALL_CONT bytes), tables out of step. */
PD_INLINE int pd_small_walk(struct pd_match *m, struct pd_run *run, const struct pd_service *svc,
			    const __u8 *cls, const __u8 *tab, __u32 base, __u32 last,
			    const __u8 *p, const __u8 *end, __u32 n)
{
	__u32 k, row, crow = 0, rrow, cleft, cont = 0;

	row = (m->state - base) << PD_ROW_SHIFT;
	rrow = (svc->resume - base) << PD_ROW_SHIFT;
	cleft = m->cont_left;
	if (cleft) {
		/* the carried-over walk: mostly back in the resume state
		 * after a byte or two; one that goes on longer is left to
		 * pd_scan_run */
		cont = 1;
		crow = (m->cont - base) << PD_ROW_SHIFT;
		PD_UNROLL
		for (k = 0; k < PD_SMALL_CONT; k++) {
			barrier_var(cleft);     /* else the loop is not unrolled */
			if (!cleft || k >= n)
				break;
			if (p + k + 1 > end || !pd_table_step(&row, p[k], cls, tab, last))
				return -1;
			cleft--;
			if (!pd_table_step(&crow, p[k], cls, tab, last))
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
		if (p + k + 1 > end || !pd_table_step(&row, p[k], cls, tab, last))
			return -1;
	}
	m->state = (row >> PD_ROW_SHIFT) + base;
	if (m->cont_left) {
		m->cont = cont ? (crow >> PD_ROW_SHIFT) + base : PD_NO_STATE;
		m->cont_left = cleft;
	}
	n = run->limit;
	m->seen += n;
	run->match_left -= n;
	run->used = n;
	return n;
}

#endif /* PD_SCAN_H */
