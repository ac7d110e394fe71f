# Shared helpers for the shell tests: TAP output, the build directory, the
# slowness factor, skips, and the kernel log check.
# shellcheck shell=bash
O=${O:-build}
PD=${PD:-$O/policyd}
_n=0
_failed=0
_kmsg_mark=

# PD_SLOW: how many times slower than this project's own machines the
# one under test is (an emulated guest: 5 to 35). Every bound on time a
# test checks or waits for is multiplied by it; 1 checks what it always
# did. A test's own `sleep`s (its waits for something to happen, and the
# polls of its bounded loops) are scaled by the function below.
PD_SLOW=${PD_SLOW:-1}
awk -v f="$PD_SLOW" 'BEGIN { exit !(f ~ /^[0-9]*\.?[0-9]+$/ && f > 0) }' ||
	{ echo "PD_SLOW=$PD_SLOW is not a positive number" >&2; exit 2; }
export PD_SLOW
# SLOW: PD_SLOW rounded up to a whole number, for $(( ))
SLOW=$(awk -v f="$PD_SLOW" 'BEGIN { s = int(f); if (s < f) s++; print s < 1 ? 1 : s }')

# slow N: N (seconds, milliseconds) times PD_SLOW
slow() { awk -v n="$1" -v f="$PD_SLOW" 'BEGIN { printf "%.3f\n", n * f }' | sed 's/\.*0*$//'; }

# sleep SECONDS: sleep SECONDS times PD_SLOW
sleep() {
	if [ "$#" = 1 ] && [ "$PD_SLOW" != 1 ]; then command sleep "$(slow "$1")"
	else command sleep "$@"; fi
}

ok() {   # ok CONDITION-EXIT-STATUS DESCRIPTION
	local st=$1; shift
	_n=$((_n + 1))
	if [ "$st" -eq 0 ]; then
		echo "ok $_n - $*"
	else
		echo "not ok $_n - $*"
		_failed=$((_failed + 1))
	fi
	return "$st"   # so that `ok ... || diagnose` shows why
}

# is GOT WANT DESCRIPTION
is() {
	if [ "$1" = "$2" ]; then ok 0 "$3"; else
		ok 1 "$3"
		printf '%s\n' "got:  $1" "want: $2" | sed 's/^/#   /'
	fi
}

# diag FILE-OR-TEXT...: show text or a file's last lines as TAP comments
diag() {
	local a
	for a in "$@"; do
		if [ -f "$a" ]; then tail -n 40 "$a"; else printf '%s\n' "$a"; fi
	done | sed 's/^/#   /'
}

# skip_all REASON: the whole file is skipped (a missing tool, not root), with
# the status of a skip, 77 (tests/run-test)
skip_all() { echo "1..0 # SKIP $*"; exit 77; }

# skip COUNT REASON: the next COUNT checks are skipped, saying why
skip() {
	local i
	for i in $(seq "$1"); do _n=$((_n + 1)); echo "ok $_n # SKIP $2"; done
}

# kernel_has FEATURE: whether the running kernel has FEATURE, one of
#   sock_destroy  the bpf_sock_destroy kfunc (Linux 6.5)
#   bpf_lsm       BPF LSM programs active (lsm=...,bpf)
#   cgroup_kill   cgroup.kill (Linux 5.14)
kernel_has() {
	case $1 in
	sock_destroy) bpftool btf dump file /sys/kernel/btf/vmlinux 2>/dev/null |
		grep -q "^\[[0-9]*\] FUNC 'bpf_sock_destroy'";;
	bpf_lsm) grep -qw bpf /sys/kernel/security/lsm 2>/dev/null;;
	cgroup_kill) ls "$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)"/*/cgroup.kill \
		>/dev/null 2>&1;;
	*) echo "kernel_has: no such feature: $1" >&2; return 2;;
	esac
}

# require_kernel FEATURE WHY: skip the whole file, distinctly, when the
# kernel lacks a feature the test needs ("# SKIP kernel: ...")
require_kernel() {
	kernel_has "$1" || skip_all "kernel: no $1 on $(uname -r) ($2)"
}

# kernel_log_mark: from here on, a line the kernel logs that says it went
# wrong (WARNING:, BUG:, refcount_t:, use-after-free, general protection)
# fails the test at done_testing (tests/kmsg.py; the end-to-end
# environment takes the mark itself)
kernel_log_mark() {
	_kmsg_mark=$(python3 tests/kmsg.py mark) || _kmsg_mark=
}

# kernel_log_check: the check at the end, as a test of its own
kernel_log_check() {
	local out
	[ -n "$_kmsg_mark" ] || return 0
	out=$(python3 tests/kmsg.py check "$_kmsg_mark" 2>&1)
	ok $? "the kernel logged no warning while the test ran" || {
		diag "$out"
		printf '%s\n' "$out" >&2
	}
	_kmsg_mark=
}

# fail_now REASON [FILE...]: one failed check saying why, the files' last
# lines, and the file ends here (the EXIT trap cleans up)
fail_now() {
	local why=$1; shift
	ok 1 "$why"
	diag "$@"
	echo "# stopped: $why" >&2
	done_testing
	exit 1
}

done_testing() {
	kernel_log_check
	echo "1..$_n"
	[ "$_failed" -eq 0 ]
}
