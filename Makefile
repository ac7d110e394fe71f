# policyd build. Everything goes to $(O) (default build/); `make V=1` shows
# the commands. `make help` lists the targets.

O ?= build
PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
CLANG ?= clang
BPFTOOL ?= bpftool
FUZZ_SECONDS ?= 600

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.DELETE_ON_ERROR:
.SECONDARY:
.SUFFIXES:
.DEFAULT_GOAL := all

ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)

# The BPF side reads kernel UAPI headers (linux/bpf.h) rather than a
# vmlinux.h generated from the build host: every struct it touches
# (sk_msg_md, bpf_sock_ops, bpf_sock) is UAPI, so the objects do not
# depend on the build host's kernel. -mcpu=v3: 32-bit ALU operations and
# jumps, so 32-bit values need no shifts to clear their upper halves (the
# table walk: 20 instructions per byte with v1, 14 with v3; program time
# per Redis request -15 to -25 %, `kernel.bpf_stats_enabled`).
BPF_CFLAGS := -target bpf -mcpu=v3 -O2 -g -Wall -Werror -D__TARGET_ARCH_$(ARCH) \
	-I include -I /usr/include/$(MULTIARCH)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter -Werror
CFLAGS ?= -O2 -g
ALL_CFLAGS := $(CFLAGS) $(WARN) -std=gnu11 -D_GNU_SOURCE -I include -I policyd -I $(O)
LDLIBS := -lconfig -lbpf -lcap -lelf -lz

ABI := include/policyd.h include/pd_match.h
CORE_SRC := policyd/parse.c policyd/compile.c policyd/dump.c
DAEMON_SRC := policyd/main.c policyd/run.c policyd/load.c policyd/events.c policyd/adopt.c \
	policyd/stats.c policyd/privs.c policyd/instance.c policyd/probe.c
BPF_SRC := $(wildcard bpf/*.bpf.c)
BPF_OBJ := $(patsubst bpf/%.bpf.c,$(O)/%.bpf.o,$(BPF_SRC))
SKELS := $(patsubst bpf/%.bpf.c,$(O)/%.skel.h,$(BPF_SRC))

CORE_OBJ := $(patsubst policyd/%.c,$(O)/obj/%.o,$(CORE_SRC))
DAEMON_OBJ := $(patsubst policyd/%.c,$(O)/obj/%.o,$(DAEMON_SRC))

# Unit tests and the fuzz target build the same core with sanitizers.
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_CORE := $(patsubst policyd/%.c,$(O)/san/%.o,$(CORE_SRC))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(O)/tests/%,$(UNIT_SRC))

.PHONY: all deps check check-kernels test fuzz fuzz-build demo bench install clean help

all: $(O)/policyd

$(O)/obj/%.o: policyd/%.c $(wildcard policyd/*.h) $(ABI) $(SKELS) | $(O)/obj
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(O)/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h) $(ABI) | $(O)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(O)/%.skel.h: $(O)/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

$(O)/policyd: $(CORE_OBJ) $(DAEMON_OBJ)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

$(O) $(O)/obj $(O)/san $(O)/tests:
	$(Q)mkdir -p $@

# ---- tests ----
$(O)/san/%.o: policyd/%.c $(wildcard policyd/*.h) $(ABI) | $(O)/san
	$(call msg,CC-SAN,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) -c $< -o $@

$(O)/tests/%: tests/unit/%.c tests/unit/tap.h $(SAN_CORE) $(ABI) | $(O)/tests
	$(call msg,CC-TEST,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) -I tests/unit $< $(SAN_CORE) -o $@ -lconfig

$(O)/fuzz_policy: tests/fuzz/fuzz_policy.c $(CORE_SRC) $(wildcard policyd/*.h) $(ABI) | $(O)
	$(call msg,FUZZ,$@)
	$(Q)$(CLANG) $(ALL_CFLAGS) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $< $(CORE_SRC) -o $@ -lconfig

# Kernel-facing test helpers link the real loader (no sanitizers: libbpf).
$(O)/tests/e2e_%: tests/e2e/%.c tests/unit/tap.h $(CORE_OBJ) $(O)/obj/load.o $(O)/obj/probe.o | $(O)/tests
	$(call msg,CC-TEST,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -I tests/unit $< $(CORE_OBJ) $(O)/obj/load.o $(O)/obj/probe.o -o $@ $(LDLIBS)

E2E_BIN := $(patsubst tests/e2e/%.c,$(O)/tests/e2e_%,$(wildcard tests/e2e/*.c))

deps:
	$(Q)tests/deps.sh

# check, demo and bench first install what is missing, then build.
check:
	$(Q)$(MAKE) --no-print-directory deps
	$(Q)$(MAKE) --no-print-directory test

test: all $(UNIT_BIN) $(E2E_BIN) $(O)/fuzz_policy
	$(Q)O=$(O) prove --exec '' --timer $(if $(V),-v) $(UNIT_BIN) tests/cli.t tests/man.t tests/fuzz.t \
		$(wildcard tests/e2e/*.t)

# The kernel matrix: the end-to-end tests in a qemu guest per Debian
# kernel (KERNELS="6.1 6.12 bpo"; SMOKE=1 for the short set); see
# tests/kernels/run.sh. Not part of check: about 30 minutes per kernel.
check-kernels:
	$(Q)$(MAKE) --no-print-directory deps
	$(Q)tests/deps.sh kernels
	$(Q)$(MAKE) --no-print-directory all $(E2E_BIN)
	$(Q)O=$(O) KERNELS="$(KERNELS)" SMOKE="$(SMOKE)" tests/kernels/run.sh

fuzz: $(O)/fuzz_policy
	$(Q)mkdir -p $(O)/fuzz-corpus
	$(Q)cp -n tests/policies/*/*.conf policy-examples/*.conf $(O)/fuzz-corpus/ 2>/dev/null || true
	ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp $(O)/fuzz_policy -max_total_time=$(FUZZ_SECONDS) \
		-dict=tests/fuzz/policy.dict -timeout=10 $(O)/fuzz-corpus

demo:
	$(Q)$(MAKE) --no-print-directory deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)O=$(O) tests/demo.sh

bench:
	$(Q)$(MAKE) --no-print-directory deps
	$(Q)$(MAKE) --no-print-directory all $(O)/bench/pass.bpf.o
	$(Q)O=$(O) tests/bench/run.sh

# the bench's "socket map alone": the kernel's path with a program that
# passes everything (tests/bench/pass.bpf.c)
$(O)/bench/pass.bpf.o: tests/bench/pass.bpf.c
	$(call msg,BPF,$@)
	$(Q)mkdir -p $(O)/bench
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/policyd/examples
	install -m 0755 $(O)/policyd $(DESTDIR)$(PREFIX)/sbin/policyd
	install -m 0644 policy-examples/*.conf $(DESTDIR)$(PREFIX)/share/policyd/examples/
	install -m 0644 policyd/policyd.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 0644 policyd/policyd.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -D -m 0644 policyd/policyd.service $(DESTDIR)$(PREFIX)/lib/systemd/system/policyd.service

clean:
	rm -rf $(O)

help:
	@echo 'make [V=1] [O=DIR] TARGET'
	@echo '  deps     install missing Debian build and test packages (apt-get)'
	@echo '  all      build $(O)/policyd (default)'
	@echo '  check    build and run every test (unit, CLI, fuzz smoke, end-to-end)'
	@echo '  check-kernels  the end-to-end tests on Debian 12, 13 and backports kernels'
	@echo '           under qemu (KERNELS="6.1 6.12 bpo", SMOKE=1: the short set)'
	@echo '  fuzz     fuzz parse+compile for FUZZ_SECONDS (default 600)'
	@echo '  demo     show policyd enforcing the Redis profile on real traffic'
	@echo '  bench    benchmarks against no firewall and iptables string match'
	@echo '  install  install binary, man pages, examples, unit (PREFIX, DESTDIR)'
	@echo '  clean    remove $(O)'
