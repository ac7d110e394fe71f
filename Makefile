# policyd build. Everything goes to $(O) (default build/); `make V=1` shows
# the commands. `make help` lists the targets.

O ?= build
# install paths; the unit, the man pages and the starter policy are
# written with them (`make install PREFIX=/usr` for a system install)
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
LOGROTATEDIR ?= $(SYSCONFDIR)/logrotate.d
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
# jumps, so 32-bit values need no shifts to clear their upper halves: the
# table walk, run for every byte read, takes fewer instructions.
BPF_CFLAGS := -target bpf -mcpu=v3 -O2 -g -Wall -Werror -D__TARGET_ARCH_$(ARCH) \
	-I include -I bpf -I /usr/include/$(MULTIARCH)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter -Werror
CFLAGS ?= -O2 -g
ALL_CFLAGS := $(CPPFLAGS) $(CFLAGS) $(WARN) -std=gnu11 -D_GNU_SOURCE -I include -I bpf -I policyd -I $(O)
LDLIBS := -lconfig -lbpf -lcap -lelf -lz -lsystemd -lpthread

ABI := include/policyd.h $(wildcard bpf/*.h)
CORE_SRC := policyd/parse.c policyd/compile.c policyd/dump.c policyd/lint.c policyd/judge.c \
	policyd/names.c
DAEMON_SRC := policyd/main.c policyd/run.c policyd/load.c policyd/events.c policyd/adopt.c \
	policyd/stats.c policyd/privs.c policyd/abort.c policyd/instance.c policyd/log.c \
	policyd/reload.c policyd/kernel.c policyd/test.c policyd/build.c policyd/escape.c policyd/sink.c
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

.PHONY: all deps check check-kernels test fuzz fuzz-build demo bench install deb clean help

all: $(O)/policyd $(O)/policyd.service

# The files that name install paths, written with them: the unit and
# the man pages (whose sources name the default PREFIX, /usr/local).
SUBST := sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	-e 's|/usr/local/sbin|$(SBINDIR)|g' -e 's|/usr/local/share/policyd|$(DATADIR)/policyd|g' \
	-e 's|/usr/local/lib/systemd/system|$(UNITDIR)|g' -e 's|/usr/local/lib/sysusers.d|$(SYSUSERSDIR)|g'
$(O)/policyd.service: policyd/policyd.service.in Makefile | $(O)
	$(call msg,GEN,$@)
	$(Q)$(SUBST) $< > $@

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
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(O) $(O)/obj $(O)/san $(O)/tests:
	$(Q)mkdir -p $@

# ---- tests ----
$(O)/san/%.o: policyd/%.c $(wildcard policyd/*.h) $(ABI) | $(O)/san
	$(call msg,CC-SAN,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) -c $< -o $@

$(O)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(SAN_CORE) $(ABI) $(wildcard bpf/*.h) | $(O)/tests
	$(call msg,CC-TEST,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) -I tests/unit -I bpf $< $(SAN_CORE) -o $@ -lconfig

$(O)/fuzz_policy: tests/fuzz/fuzz_policy.c tests/unit/quick_check.h $(CORE_SRC) $(wildcard policyd/*.h) \
		$(wildcard bpf/*.h) $(ABI) | $(O)
	$(call msg,FUZZ,$@)
	$(Q)$(CLANG) $(ALL_CFLAGS) -I bpf -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $< $(CORE_SRC) -o $@ -lconfig

# Kernel-facing test helpers link the real loader (no sanitizers: libbpf).
$(O)/tests/e2e_%: tests/e2e/%.c tests/unit/tap.h $(CORE_OBJ) $(O)/obj/load.o $(O)/obj/kernel.o | $(O)/tests
	$(call msg,CC-TEST,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -I tests/unit $< $(CORE_OBJ) $(O)/obj/load.o $(O)/obj/kernel.o -o $@ $(LDLIBS)

E2E_BIN := $(patsubst tests/e2e/%.c,$(O)/tests/e2e_%,$(wildcard tests/e2e/*.c))

deps:
	$(Q)tests/deps.sh

# check, demo and bench first install what is missing, then build.
check:
	$(Q)$(MAKE) --no-print-directory deps
	$(Q)$(MAKE) --no-print-directory test

# Each file runs under tests/run-test: a time limit (PD_TEST_LIMIT s, default
# 1200, times PD_SLOW), no process left behind, no kernel warning logged, a
# skip is status 77 with the plan "1..0 # SKIP reason".
# PD_SLOW (default 1): how many times slower the machine is (an emulated
# guest: 5 to 35); every bound on time a test checks or waits for scales.
test: all $(UNIT_BIN) $(E2E_BIN) $(O)/fuzz_policy
	$(Q)O=$(O) prove --exec tests/run-test --timer $(if $(V),-v) $(UNIT_BIN) tests/cli.t tests/cli-test.t tests/man.t \
		tests/fuzz.t tests/harness.t tests/harness-ns.t tests/bench-targets.t $(wildcard tests/e2e/*.t)

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
	$(Q)O=$(O) tests/demo.py

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

# The starter policy is installed only where none is: an operator's
# policy is never overwritten.
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(DATADIR)/policyd/examples $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(BASHCOMPDIR) \
		$(DESTDIR)$(LOGROTATEDIR) $(DESTDIR)$(SYSCONFDIR)/policyd
	install -m 0755 $(O)/policyd $(DESTDIR)$(SBINDIR)/policyd
	install -m 0644 policy-examples/*.conf $(DESTDIR)$(DATADIR)/policyd/examples/
	$(SUBST) policyd/policyd.8 > $(DESTDIR)$(MANDIR)/man8/policyd.8
	$(SUBST) policyd/policyd.conf.5 > $(DESTDIR)$(MANDIR)/man5/policyd.conf.5
	$(SUBST) policyd/policyd.service.in > $(DESTDIR)$(UNITDIR)/policyd.service
	install -m 0644 policyd/sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/policyd.conf
	install -m 0644 policyd/tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/policyd.conf
	install -m 0644 policyd/policyd.bash-completion $(DESTDIR)$(BASHCOMPDIR)/policyd
	install -m 0644 policyd/logrotate $(DESTDIR)$(LOGROTATEDIR)/policyd
	[ -e $(DESTDIR)$(SYSCONFDIR)/policyd/policy.conf ] || \
		install -m 0644 policyd/policy.conf $(DESTDIR)$(SYSCONFDIR)/policyd/policy.conf

# A Debian package (debhelper), built from a copy of the tree in $(O)/deb:
# $(O)/deb/policyd_VERSION_ARCH.deb. Needs debhelper (make deps).
deb:
	$(Q)rm -rf $(O)/deb && mkdir -p $(O)/deb/src
	$(Q)git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(O)/deb/src 2>/dev/null || \
		tar --exclude=./$(O) --exclude=./.git -cf - . | tar -xf - -C $(O)/deb/src
	$(Q)cp -r policyd/debian $(O)/deb/src/debian
	$(call msg,DEB,$(O)/deb)
	$(Q)cd $(O)/deb/src && dpkg-buildpackage -b -us -uc $(if $(V),,>../build.log 2>&1) || \
		{ tail -30 ../build.log; exit 1; }
	$(Q)ls $(O)/deb/*.deb

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
	@echo '  bench    benchmarks: every profile on its own workload against no firewall,'
	@echo '           the socket map alone and HAProxy; iptables string match (root)'
	@echo '  install  install binary, man pages, examples, unit, starter policy (PREFIX, DESTDIR)'
	@echo '  deb      build a Debian package in $(O)/deb'
	@echo '  clean    remove $(O)'
