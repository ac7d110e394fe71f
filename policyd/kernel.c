// SPDX-License-Identifier: GPL-2.0-only
/*
 * What policyd needs from the running kernel: its release (the floor of
 * the sockmap fixes, kernel.h), and the kernel features policyd uses, one
 * row each: what it is, how to find out whether the running kernel has
 * it, and what the user loses without it. A helper or kfunc is probed by
 * loading a minimal program of the type that calls it (with the same
 * attach type and target): the verifier checks that the program type may
 * call it before it checks the arguments, so a refusal that names the
 * call ("unknown func", "program of this type cannot use helper",
 * "calling kernel function ... is not allowed") means missing, and any
 * other outcome means present. libbpf's own probe (1.1, Debian 12) knows
 * only the first of those messages, and so takes a helper that 6.12
 * refuses for present.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/utsname.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include "kernel.h"

enum pd_feature_kind {
	PD_F_MAP,       /* a map type, created */
	PD_F_PROG,      /* a program type (with its attach type and target), loaded */
	PD_F_HELPER,    /* a helper, called from a program of that type */
	PD_F_KFUNC,     /* a kfunc, the same way */
};

struct pd_feature {
	const char *what;               /* its name in the sentences */
	enum pd_feature_kind kind;
	enum bpf_map_type map;
	enum bpf_prog_type prog;        /* the program type that uses it, */
	enum bpf_attach_type attach;    /* its expected attach type, */
	const char *target;             /* the kernel function (BTF) it attaches to */
	int helper;
	const char *kfunc;
	/* NULL: policyd cannot enforce without it, and refuses to start;
	 * else the program of policyd.bpf.c that is left out without it */
	const char *program;
	const char *cost;               /* what the user loses then */
};

#define MAP(t, w) { .what = (w), .kind = PD_F_MAP, .map = (t) }
#define PROG(t, w) { .what = (w), .kind = PD_F_PROG, .prog = (t) }
#define SK_MSG(h, w) { .what = (w), .kind = PD_F_HELPER, .prog = BPF_PROG_TYPE_SK_MSG, .helper = (h) }
#define SOCK_OPS(h, w) { .what = (w), .kind = PD_F_HELPER, .prog = BPF_PROG_TYPE_SOCK_OPS, .helper = (h) }
#define CGROUP(t, a, w) { .what = (w), .kind = PD_F_PROG, .prog = (t), .attach = (a) }
#define CGROUP_HELPER(t, a, h, w) { .what = (w), .kind = PD_F_HELPER, .prog = (t), .attach = (a), \
	.helper = (h) }

static const struct pd_feature features[] = {
	MAP(BPF_MAP_TYPE_SOCKHASH, "SOCKHASH maps (CONFIG_BPF_STREAM_PARSER, CONFIG_NET_SOCK_MSG)"),
	MAP(BPF_MAP_TYPE_SK_STORAGE, "socket-local storage (Linux 5.2)"),
	MAP(BPF_MAP_TYPE_RINGBUF, "BPF ring buffers (Linux 5.8)"),
	PROG(BPF_PROG_TYPE_SK_MSG, "sk_msg programs (CONFIG_NET_SOCK_MSG)"),
	PROG(BPF_PROG_TYPE_SOCK_OPS, "sock_ops programs (CONFIG_CGROUP_BPF)"),
	SK_MSG(BPF_FUNC_msg_pull_data, "the helper bpf_msg_pull_data for sk_msg programs"),
	SK_MSG(BPF_FUNC_msg_apply_bytes, "the helper bpf_msg_apply_bytes for sk_msg programs"),
	SK_MSG(BPF_FUNC_msg_cork_bytes, "the helper bpf_msg_cork_bytes for sk_msg programs"),
	SK_MSG(BPF_FUNC_msg_redirect_map, "the helper bpf_msg_redirect_map for sk_msg programs"),
	SK_MSG(BPF_FUNC_msg_redirect_hash, "the helper bpf_msg_redirect_hash for sk_msg programs"),
	SK_MSG(BPF_FUNC_sk_storage_get, "the helper bpf_sk_storage_get for sk_msg programs (Linux 5.2)"),
	SK_MSG(BPF_FUNC_ringbuf_reserve, "the helper bpf_ringbuf_reserve for sk_msg programs"),
	SK_MSG(BPF_FUNC_loop, "the helper bpf_loop for sk_msg programs (Linux 5.17)"),
	SK_MSG(BPF_FUNC_get_current_pid_tgid, "the helper bpf_get_current_pid_tgid for sk_msg programs"),
	SK_MSG(BPF_FUNC_get_current_uid_gid, "the helper bpf_get_current_uid_gid for sk_msg programs"),
	SK_MSG(BPF_FUNC_get_current_cgroup_id, "the helper bpf_get_current_cgroup_id for sk_msg "
	       "programs"),
	SK_MSG(BPF_FUNC_get_current_task, "the helper bpf_get_current_task for sk_msg programs "
	       "(needs CAP_PERFMON)"),
	SK_MSG(BPF_FUNC_probe_read_kernel, "the helper bpf_probe_read_kernel for sk_msg programs "
	       "(refused while the kernel is locked down for confidentiality)"),
	SOCK_OPS(BPF_FUNC_sock_hash_update, "the helper bpf_sock_hash_update for sock_ops programs"),
	SOCK_OPS(BPF_FUNC_sk_storage_get, "the helper bpf_sk_storage_get for sock_ops programs "
		 "(Linux 5.2)"),
	SOCK_OPS(BPF_FUNC_get_socket_cookie, "the helper bpf_get_socket_cookie for sock_ops programs"),
	SK_MSG(BPF_FUNC_msg_push_data, "the helper bpf_msg_push_data for sk_msg programs"),
	SK_MSG(BPF_FUNC_msg_pop_data, "the helper bpf_msg_pop_data for sk_msg programs"),
	SK_MSG(BPF_FUNC_timer_init, "BPF timers for sk_msg programs (Linux 5.15)"),
	SOCK_OPS(BPF_FUNC_sock_ops_cb_flags_set, "the helper bpf_sock_ops_cb_flags_set for "
		 "sock_ops programs"),
	/* the enforcement boundary's cgroup hooks */
	CGROUP(BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS, "cgroup_skb egress programs"),
	CGROUP_HELPER(BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS, BPF_FUNC_sk_fullsock,
		      "the helper bpf_sk_fullsock for cgroup_skb programs"),
	CGROUP_HELPER(BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS, BPF_FUNC_skb_load_bytes,
		      "the helper bpf_skb_load_bytes for cgroup_skb programs"),
	CGROUP(BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE,
	       "cgroup/sock_create programs"),
	CGROUP_HELPER(BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE, BPF_FUNC_set_retval,
		      "the helper bpf_set_retval for cgroup/sock_create programs (Linux 5.18)"),
	CGROUP(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, "cgroup/connect4 programs"),
	CGROUP(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT, "cgroup/connect6 programs"),
	CGROUP(BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_SETSOCKOPT,
	       "cgroup/setsockopt programs (Linux 5.3)"),
	CGROUP_HELPER(BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_SETSOCKOPT, BPF_FUNC_set_retval,
		      "the helper bpf_set_retval for cgroup/setsockopt programs (Linux 5.18)"),
};

#define NFEATURES (sizeof(features) / sizeof(features[0]))

static int probed;              /* 0: not yet, 1: done, else the -errno it failed with */
static char why_not[600];       /* what failed */
static bool missing[NFEATURES];
static char sentences[NFEATURES][512];

/* The verifier's words for a call the program type may not make. */
static bool refused_call(const char *log)
{
	return strstr(log, "unknown func ") || strstr(log, "invalid func ") ||
	       strstr(log, "cannot use helper") || strstr(log, "is not allowed") ||
	       strstr(log, "is not a function");
}

/* 1: present, 0: missing, -errno: cannot tell. */
static int probe_one(const struct pd_feature *f, const struct btf *vmlinux)
{
	static char log[4096];
	struct bpf_insn insns[3] = { { 0 } };
	size_t n = 0;
	int fd, id;
	LIBBPF_OPTS(bpf_prog_load_opts, o, .expected_attach_type = f->attach,
		    .log_buf = log, .log_size = sizeof(log), .log_level = 1);

	if (f->kind == PD_F_MAP) {
		fd = libbpf_probe_bpf_map_type(f->map, NULL);
		return fd < 0 && fd != -EOPNOTSUPP && fd != -EINVAL ? fd : fd == 1;
	}
	if (f->target) {
		id = vmlinux ? btf__find_by_name_kind(vmlinux, f->target, BTF_KIND_FUNC) : -ENOENT;
		if (id < 0)
			return 0;
		o.attach_btf_id = (uint32_t)id;
	}
	if (f->kind == PD_F_HELPER) {
		insns[n++] = (struct bpf_insn){ .code = BPF_JMP | BPF_CALL, .imm = f->helper };
	} else if (f->kind == PD_F_KFUNC) {
		id = vmlinux ? btf__find_by_name_kind(vmlinux, f->kfunc, BTF_KIND_FUNC) : -ENOENT;
		if (id < 0)
			return 0;
		insns[n++] = (struct bpf_insn){ .code = BPF_JMP | BPF_CALL,
						.src_reg = BPF_PSEUDO_KFUNC_CALL, .imm = id };
	}
	/* r0 = 0; exit */
	insns[n++] = (struct bpf_insn){ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0 };
	insns[n++] = (struct bpf_insn){ .code = BPF_JMP | BPF_EXIT };
	log[0] = '\0';
	fd = bpf_prog_load(f->prog, "pd_probe", "GPL", insns, n, &o);
	if (fd >= 0) {
		close(fd);
		return 1;
	}
	fd = -errno;
	if (fd == -EPERM)
		return fd;
	if (f->kind == PD_F_PROG)
		return 0;       /* the type, attach type or target is refused */
	return !refused_call(log);
}

int pd_probe(const char **why)
{
	struct btf *vmlinux;
	int err = 0;

	*why = why_not;
	if (probed)
		return probed < 0 ? probed : 0;
	vmlinux = btf__load_vmlinux_btf();      /* NULL without BTF: what needs it is missing */
	for (size_t i = 0; i < NFEATURES && !err; i++) {
		const struct pd_feature *f = &features[i];
		int r;

		if (f->program && !pd_probe_loads(f->program))
			continue;       /* one sentence per program left out */
		r = probe_one(f, vmlinux);
		if (r < 0) {
			err = r;
			snprintf(why_not, sizeof(why_not), "cannot probe the kernel for %s", f->what);
		} else if (!r && !f->program) {
			err = -EOPNOTSUPP;
			snprintf(why_not, sizeof(why_not), "this kernel lacks %s, which policyd needs",
				 f->what);
		} else if (!r) {
			snprintf(sentences[i], sizeof(sentences[i]), "this kernel lacks %s: %s",
				 f->what, f->cost);
		}
		missing[i] = !r;
	}
	btf__free(vmlinux);
	probed = err ? err : 1;
	return err;
}

bool pd_probe_loads(const char *program)
{
	for (size_t i = 0; i < NFEATURES; i++)
		if (missing[i] && features[i].program && !strcmp(features[i].program, program))
			return false;
	return true;
}

int pd_probe_apply(struct bpf_object *obj, const char **why)
{
	struct bpf_program *p;
	int err = pd_probe(why);

	if (err)
		return err;
	bpf_object__for_each_program(p, obj)
		if (!pd_probe_loads(bpf_program__name(p)))
			bpf_program__set_autoload(p, false);
	return 0;
}

const char *pd_probe_missing(size_t i)
{
	for (size_t k = 0; k < NFEATURES; k++)
		if (missing[k] && features[k].program && i-- == 0)
			return sentences[k];
	return NULL;
}

bool pd_kernel_has_smc(void)
{
	char line[256], path[512];
	struct utsname u;
	bool has = false;
	FILE *f;

	if (!access("/sys/module/smc", F_OK))
		return true;
	if ((f = fopen("/proc/net/protocols", "re"))) {
		while (!has && fgets(line, sizeof(line), f))
			has = !strncmp(line, "SMC", 3);
		fclose(f);
	}
	if (has || uname(&u))
		return has;
	snprintf(path, sizeof(path), "/lib/modules/%s/kernel/net/smc", u.release);
	return !access(path, F_OK);
}

const char *pd_kernel_old(void)
{
	static char sentence[512];
	struct utsname u;

	if (uname(&u) || !pd_release_below(u.release, PD_KERNEL_FLOOR_MAJOR,
					   PD_KERNEL_FLOOR_MINOR) ||
	    pd_stable_has_fixes(u.release, u.version))
		return NULL;
	snprintf(sentence, sizeof(sentence), "kernel %s is older than " PD_KERNEL_FLOOR ", the "
		 "first with the known sockmap and sk_msg fixes (cork, apply_bytes, redirect, "
		 "teardown); payloads may be passed or dropped wrongly: upgrade the kernel",
		 u.release);
	return sentence;
}
