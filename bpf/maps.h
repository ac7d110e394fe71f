/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The data plane's maps, one comment each, and the shape of the
 * transition table the loader sets before load. Names: pd_ (the daemon
 * opens every map by this name, through the skeleton or a pin).
 * Included by policyd.bpf.c only.
 */
#ifndef PD_MAPS_H
#define PD_MAPS_H

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

/* This instance's pin directory and cgroup (read by other instances). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pd_instance);
} pd_instance SEC(".maps");

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

/* Each policed socket's state (struct pd_sock): where its stream and
 * its walk stand, what it holds back, why it is refused. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pd_sock);
} pd_sk SEC(".maps");

/* Redirect sinks: slot * PD_MAX_SINKS + sink -> a socket of policyd's
 * own, where the diverted bytes go (policyd drains it; the bytes it
 * writes to the sink file come from pd_sink_data). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2 * PD_MAX_SINKS);
	__type(key, __u32);
	__type(value, __u64);
} pd_sinks SEC(".maps");

/* Diversions so far: numbers each redirect event and its pieces. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pd_sink_seq SEC(".maps");

/* A piece of diverted bytes being put together for pd_sink_data. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pd_sink_piece);
} pd_sink_buf SEC(".maps");

/* The diverted bytes, in pieces, for the sink records. Apart from
 * pd_events: a flood of diverted bytes never crowds out deny events. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} pd_sink_data SEC(".maps");

/* Deny, redirect and audit events for the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} pd_events SEC(".maps");

/* What could not be judged or recorded, counted by cause (enum
 * pd_trouble), per CPU; `policyd stats` sums them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PD_TR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} pd_trouble SEC(".maps");

/* The sk_msg program's second part, reached by a tail call (a fresh
 * stack): slot 0, pd_replay. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} pd_progs SEC(".maps");

/* Bytes kept per socket for a while (struct pd_bytes): created the first
 * time a socket needs them. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pd_bytes);
} pd_bytes SEC(".maps");

/* The stream's last bytes while a half match is pending (struct
 * pd_tail): created the first time a socket needs them. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pd_tail);
} pd_tail SEC(".maps");

/* Sockets holding a message back, by cookie: a timer each, armed when
 * the message began to be held, that decides it when its service's
 * hold_timeout passes (hold_timed_out); the entry goes when the message
 * is decided or the socket closes. Sized like pd_sockets by the loader. */
struct pd_held {
	struct bpf_timer timer;
	__u64 cookie;
	__u32 service;
	__u32 tgid;
	__u32 uid;
	__u32 len;
	__u16 rule;             /* what keeps it held: pd_sock.held_rule */
	__u8 expired;           /* decided: every later send is dropped */
	__u8 pad;
	struct pd_doomed doom;  /* the socket, for the event and the abort */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct pd_held);
} pd_held SEC(".maps");

/* Connections to abort, by cookie (struct pd_doomed: how the daemon finds
 * each). Preallocated, sized by the loader to twice pd_sockets: the
 * sockets in the socket map, and as many outside it (refused by the
 * egress program). An entry goes when its socket closes (pd_sockops) or
 * the daemon had it aborted; none is ever evicted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * 65536);
	__type(key, __u64);
	__type(value, struct pd_doomed);
} pd_doomed SEC(".maps");

/* Where a doomed connection's pd_doomed entry is put together before it
 * is stored: needed once in a connection's life, so neither in pd_sock
 * (its size decides the slab every policed socket's storage comes from)
 * nor on pd_msg's stack (6.1's 512-byte limit). A run never migrates
 * between CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pd_doomed);
} pd_doom_draft SEC(".maps");

/* pd_doom_draft's key, not on the stack */
static const volatile __u32 pd_key0 = 0;

#endif /* PD_MAPS_H */
