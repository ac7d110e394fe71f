#!/bin/bash
# Inside the guest (run by the initramfs's init, chrooted into the
# overlay over the host's root): mount what policyd and the tests need,
# make the kernel package's modules loadable, run the tests with prove,
# and leave in the results directory (/run/pd-kernels) the kernel's
# release, its LSM list, prove's output, the kernel log and the exit
# status. The settings come from /run/pd-kernels/env, written by run.sh.
set -u
out=/run/pd-kernels
# shellcheck source=/dev/null
. "$out/env"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb

# a fresh /tmp, unless the tree under test is there (a clone in /tmp):
# the overlay keeps what the guest writes there in memory anyway
case $PD_WORKTREE/ in
/tmp/*) ;;
*) mount -t tmpfs -o mode=1777 tmp /tmp ;;
esac
mkdir -p /dev/pts /dev/shm
# devtmpfs has no /dev/fd nor /dev/std*: udev makes them on a booted
# system; bash's process substitution (<(...)) opens /dev/fd/N
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
# the tests find the cgroup2 mount in /proc/mounts
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf -o mode=0700 bpf /sys/fs/bpf
mount -t securityfs securityfs /sys/kernel/security
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mkdir -p /run/lock
# modules loaded on demand (tls, the socket diagnostics of ss) come from
# the kernel package, as on an installed system
rel=$(uname -r)
mkdir -p "/usr/lib/modules/$rel"
mount --bind "$PD_MODULES" "/usr/lib/modules/$rel"
ip link set lo up
hostname pd-guest

echo "$rel" > "$out/release"
cat /sys/kernel/security/lsm > "$out/lsm" 2>/dev/null
echo "pd-kernels: $rel up after $(cut -d' ' -f1 /proc/uptime) s; running: $PD_TESTS"

cd "$PD_WORKTREE" || exit 1
# tests/run-test's limit is PD_TEST_LIMIT x PD_SLOW seconds: PD_LIMIT
PD_TEST_LIMIT=$(awk -v l="$PD_LIMIT" -v s="$PD_SLOW" 'BEGIN { print l / s }')
export O="$PD_O" PD_SLOW PD_TEST_LIMIT
# prove, its output flushed line by line (the host shows it as it comes):
# every test file through tests/run-test, as make check runs them: under a
# time limit, so a hung one fails and the rest run, and a file that
# cannot run on this kernel (status 77) reported as a skip
# shellcheck disable=SC2086
perl -MApp::Prove -e '$| = 1; my $p = App::Prove->new; $p->process_args(@ARGV);
	exit($p->run ? 0 : 1)' -- -v --timer --merge --exec tests/run-test \
	$PD_TESTS 2>&1 | tee "$out/prove.log"
rc=${PIPESTATUS[0]}
dmesg > "$out/dmesg"
echo "$rc" > "$out/status"
echo "pd-kernels: prove exited $rc after $(cut -d' ' -f1 /proc/uptime) s"
