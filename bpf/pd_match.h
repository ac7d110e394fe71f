/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The automaton walk: one byte through a service's automaton (pd_byte),
 * what a message's start, length and end add, and how its verdict
 * follows from what matched. Plain C, compiled into the BPF program, the
 * daemon (`policyd test`) and the unit tests. The kernel's fast way
 * through a send is pd_scan.h, which walks with pd_byte where it cannot
 * go fast; pd_walk here is the plain reference the tests compare it with.
 *
 * The includer defines, before including this file:
 *   PD_ROW(ctx, state)   const __u32 *: the transition row of a state, or NULL
 *   PD_OUT(ctx, state)   const struct pd_state_out *, or NULL
 *   PD_ROW_MASK(ctx)     row width - 1 (the row width is a power of two)
 * A NULL from PD_ROW or PD_OUT means the tables are inconsistent; the walk
 * then reports an error and the caller fails closed. It may define:
 *   PD_TARGET(ctx, st, t) the state a transition entry t of state st's row
 *                         leads to (default below; the BPF program's tables
 *                         hold two policy slots and it adds the slot's first
 *                         state: lookup_target)
 *
 * Semantics (see policyd.conf(5)):
 *  - framing "line": a message ends after '\n'; every message starts at the
 *    start state, so prefix rules anchor at each line.
 *  - framing "none": each sk_msg is a message; prefix rules anchor at its
 *    start, and contains matching goes on across messages: a new message
 *    is also walked from the previous message's end state (prefix progress
 *    dropped) for `carry` bytes, so a pattern split across sends is found
 *    in the message that completes it.
 */
#ifndef PD_MATCH_H
#define PD_MATCH_H

#include "policyd.h"

#ifndef PD_INLINE
#define PD_INLINE static inline __attribute__((always_inline))
#endif

/* The state an entry leads to, in a table whose first row is state 0 (one
 * compiled policy): an entry is its target's row offset in bytes
 * (policyd.h), a multiple of the row's bytes. */
#ifndef PD_TARGET
#define PD_TARGET(ctx, st, t) (((t) & PD_T_STATE) / ((PD_ROW_MASK(ctx) + 1) * 4))
#endif

/* Most bytes one pd_walk call looks at; callers loop. (The BPF program
 * does not call pd_walk: pd_scan.h's scan and the bpf_loop callbacks over
 * kept bytes call pd_byte.) */
#ifndef PD_WALK_MAX
#define PD_WALK_MAX 256
#endif

/* Keep the lowest rule index of each action the state reports. */
PD_INLINE void pd_merge(struct pd_match *m, const struct pd_state_out *o)
{
	if (o->deny && (!m->deny || o->deny < m->deny))
		m->deny = o->deny;
	if (o->redirect && (!m->redirect || o->redirect < m->redirect))
		m->redirect = o->redirect;
	if (o->allow && (!m->allow || o->allow < m->allow))
		m->allow = o->allow;
	if (o->audit && (!m->audit || o->audit < m->audit))
		m->audit = o->audit;
}

/* One transition of *state on byte class cls; merges what the target
 * reports into m. Returns 0, or -1 on inconsistent tables. */
PD_INLINE int pd_step(__u32 *state, struct pd_match *m, __u32 cls, void *ctx)
{
	const struct pd_state_out *o;
	const __u32 *row;
	__u32 t;

	row = PD_ROW(ctx, *state);
	if (!row)
		return -1;
	t = row[cls & PD_ROW_MASK(ctx)];
	*state = PD_TARGET(ctx, *state, t);
	if (t & PD_T_MATCH) {
		o = PD_OUT(ctx, *state);
		if (!o)
			return -1;
		pd_merge(m, o);
	}
	return 0;
}

/* Start a new message of service svc. For framing none, what the previous
 * message left half-matched is carried over. Returns 0 or -1. */
PD_INLINE int pd_begin(struct pd_match *m, const struct pd_service *svc, void *ctx)
{
	const struct pd_state_out *o;
	__u32 cont = PD_NO_STATE, left = 0;

	if (svc->framing == PD_FRAME_NONE && svc->carry) {
		o = PD_OUT(ctx, m->state);
		if (!o)
			return -1;
		if (o->cont != svc->resume) {
			cont = o->cont;
			left = svc->carry;
		}
	}
	m->state = svc->start;
	m->cont = cont;
	m->cont_left = left;
	m->seen = 0;
	m->deny = m->redirect = m->allow = m->audit = 0;
	return 0;
}

/* End the current message. whole: every byte of it was walked (no part
 * skipped past the inspect window). Leaves m->state where matching goes on
 * in the next message (framing none); line framing restarts anyway. */
PD_INLINE void pd_end(struct pd_match *m, const struct pd_service *svc, int whole)
{
	if (!whole)
		m->state = svc->resume;
	else if (m->cont != PD_NO_STATE && m->seen <= svc->carry)
		/* the carried walk saw the whole message: it knows every
		 * pattern still in progress, including older ones */
		m->state = m->cont;
	m->cont = PD_NO_STATE;
	m->cont_left = 0;
}

/* One byte of the current message: step the automaton (and the carried
 * walk). Returns 1 when the message must stop here (a '\n' under line
 * framing, or a deny rule matched), 0 to go on, -1 on inconsistent tables.
 * The carried walk ends as soon as it is back in the resume state: from
 * there on it could only find what the main walk finds. The BPF program
 * calls this from a bpf_loop callback, so the verifier checks it once
 * whatever the message length. */
PD_INLINE int pd_byte(struct pd_match *m, const struct pd_classmap *cm, int line,
		      __u32 resume, __u8 b, void *ctx)
{
	__u32 cls = cm->cls[b];

	if (pd_step(&m->state, m, cls, ctx))
		return -1;
	if (m->cont_left) {
		m->cont_left--;
		if (pd_step(&m->cont, m, cls, ctx))
			return -1;
		if (m->cont == resume) {
			m->cont = PD_NO_STATE;
			m->cont_left = 0;
		}
	}
	m->seen++;
	return (line && b == '\n') || m->deny;
}

#define PD_BYTES_01 0x0101010101010101ull
#define PD_BYTES_80 0x8080808080808080ull
/* The high bit of some byte of the result is set if and only if a byte
 * of x is zero. */
#define PD_ZERO_BYTE(x) (((x) - PD_BYTES_01) & ~(x))

/* Whether no byte of word v is k0 or k1 (each repeated in a word); four:
 * pd_stays4, below. */
PD_INLINE int pd_stays2(__u64 v, __u64 k0, __u64 k1)
{
	return !((PD_ZERO_BYTE(v ^ k0) | PD_ZERO_BYTE(v ^ k1)) & PD_BYTES_80);
}

/* The same, as the data plane computes it: nonzero when some byte of v
 * is one of the keys' bytes, with lo and hi for PD_BYTES_01 and
 * PD_BYTES_80 (held in registers by the caller). pd_hit*_ascii need the
 * keys' bytes below 0x80 (pd_keys_ascii) and take fewer operations: a
 * byte of v equal to a key's is 0 in v ^ key, and the lowest such byte
 * of each XOR sets its high bit in the subtraction (no borrow reaches
 * it); any other byte of an XOR is 1 to 0xff and sets it only when it is
 * 0x81 or above, i.e. when the byte of v is 0x80 or above, which ~v
 * leaves out. Exact either way. */
PD_INLINE int pd_keys_ascii(__u64 k0, __u64 k1, __u64 k2, __u64 k3)
{
	return !((k0 | k1 | k2 | k3) & PD_BYTES_80);
}

PD_INLINE __u64 pd_hit2_ascii(__u64 v, __u64 k0, __u64 k1, __u64 lo, __u64 hi)
{
	return (((v ^ k0) - lo) | ((v ^ k1) - lo)) & ~v & hi;
}

PD_INLINE __u64 pd_hit4_ascii(__u64 v, __u64 k0, __u64 k1, __u64 k2, __u64 k3, __u64 lo,
			      __u64 hi)
{
	return (((v ^ k0) - lo) | ((v ^ k1) - lo) | ((v ^ k2) - lo) | ((v ^ k3) - lo)) & ~v & hi;
}

PD_INLINE __u64 pd_hit4(__u64 v, __u64 k0, __u64 k1, __u64 k2, __u64 k3, __u64 lo, __u64 hi)
{
	__u64 a = v ^ k0, b = v ^ k1, c = v ^ k2, d = v ^ k3;

	return (((a - lo) & ~a) | ((b - lo) & ~b) | ((c - lo) & ~c) | ((d - lo) & ~d)) & hi;
}

PD_INLINE int pd_stays4(__u64 v, __u64 k0, __u64 k1, __u64 k2, __u64 k3)
{
	return !pd_hit4(v, k0, k1, k2, k3, PD_BYTES_01, PD_BYTES_80);
}

/* Whether the 8 bytes of word v leave the resume state where it is, with
 * nothing to report: none of them is one of svc->skip. */
PD_INLINE int pd_word_stays(const struct pd_service *svc, __u64 v)
{
	if (svc->nskip > 2)
		return pd_stays4(v, svc->skip[0], svc->skip[1], svc->skip[2], svc->skip[3]);
	return pd_stays2(v, svc->skip[0], svc->skip[1]);
}

/* Walk at most n bytes (and at most PD_WALK_MAX) of the current message
 * from p, never past end. Stops after a '\n' under line framing (*ended
 * set) and as soon as a deny rule matched. Passes over bytes where the
 * data plane's word and byte skips do: in the resume state, 8 at a time
 * (pd_word_stays) or, with too many bytes to look for, one at a time by
 * cm->stop. It does not model the gram filter (pd_scan.h's pd_grams),
 * whose verdicts, not states, agree with it. Returns the bytes walked, or
 * -1 on inconsistent tables. */
PD_INLINE int pd_walk(struct pd_match *m, const struct pd_service *svc,
		      const struct pd_classmap *cm, const __u8 *p, const __u8 *end,
		      __u32 n, int *ended, void *ctx)
{
	int line = svc->framing == PD_FRAME_LINE, r;
	__u32 i;
	__u64 v;

	*ended = 0;
	for (i = 0; i < PD_WALK_MAX; i++) {
		if (i >= n || p + i + 1 > end)
			break;
		if (m->state == svc->resume && !m->cont_left && svc->nskip &&
		    i + 8 <= n && p + i + 8 <= end && i + 8 <= PD_WALK_MAX) {
			__builtin_memcpy(&v, p + i, 8);
			if (pd_word_stays(svc, v)) {
				m->seen += 8;
				i += 7;
				continue;
			}
		}
		if (m->state == svc->resume && !m->cont_left && !svc->nskip && !cm->stop[p[i]]) {
			m->seen++;
			continue;
		}
		r = pd_byte(m, cm, line, svc->resume, p[i], ctx);
		if (r < 0)
			return -1;
		if (r) {
			*ended = line && p[i] == '\n';
			i++;
			break;
		}
	}
	return i;
}

/* Apply the service's longer_than rules to a message known to be at least
 * len bytes long. */
PD_INLINE void pd_length(struct pd_match *m, const struct pd_service *svc, __u32 len)
{
	struct pd_state_out o = {};
	__u32 i;

	for (i = 0; i < PD_MAX_LEN_RULES; i++) {
		if (i >= svc->nlen)
			break;
		if (len <= svc->len_rules[i].len)
			continue;
		switch (svc->len_rules[i].action) {
		case PD_ACT_DENY: o.deny = svc->len_rules[i].rule; break;
		case PD_ACT_REDIRECT: o.redirect = svc->len_rules[i].rule; break;
		case PD_ACT_ALLOW: o.allow = svc->len_rules[i].rule; break;
		case PD_ACT_AUDIT: o.audit = svc->len_rules[i].rule; break;
		}
		pd_merge(m, &o);
		o.deny = o.redirect = o.allow = o.audit = 0;
	}
}

/* The verdict of a message from what matched: deny, else redirect, else
 * pass on an allow rule, else the service default. *rule is the deciding
 * rule index, 0 when the default decided. */
PD_INLINE __u32 pd_verdict(const struct pd_match *m, const struct pd_service *svc,
			   __u32 *rule)
{
	if (m->deny) {
		*rule = m->deny;
		return PD_V_DENY;
	}
	if (m->redirect) {
		*rule = m->redirect;
		return PD_V_REDIRECT;
	}
	if (m->allow) {
		*rule = m->allow;
		return PD_V_PASS;
	}
	*rule = 0;
	if (svc->def == PD_DEF_DENY)
		return PD_V_DENY;
	return svc->def == PD_DEF_AUDIT ? PD_V_AUDIT : PD_V_PASS;
}

/* Whether an unfinished message must be held back because its verdict
 * could still turn against bytes not yet seen: 1 hold, 0 no, -1 error. */
PD_INLINE int pd_must_hold(const struct pd_match *m, const struct pd_service *svc,
			   void *ctx)
{
	const struct pd_state_out *o;

	if (m->deny || svc->framing != PD_FRAME_LINE)
		return 0;
	if ((svc->hold & PD_HOLD_ALLOWLIST) && !m->allow && !m->redirect)
		return 1;
	if (svc->hold & PD_HOLD_ANCHORED) {
		o = PD_OUT(ctx, m->state);
		if (!o)
			return -1;
		return (o->flags & PD_SF_ANCHORED) ? 1 : 0;
	}
	return 0;
}

#endif /* PD_MATCH_H */
