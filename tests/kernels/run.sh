#!/usr/bin/env bash
# The kernel matrix: boot each of Debian's kernels in a throwaway qemu
# guest whose root file system is this machine's (9p, read-only, under a
# tmpfs overlay), run the end-to-end tests in it, power it off, and end
# with one line per kernel: "RELEASE: PASS|FAIL (N tests, M failed)".
#
#   KERNELS  names of fetch.sh: 6.1 (Debian 12), 6.12 (Debian 13), bpo
#            (trixie-backports, 7.x); default all three
#   SMOKE=1  only tests/kernels/smoke.t (start, a deny with a real client,
#            reload, keep and take over, stop), else tests/e2e/*.t
#   TESTS    the test files to run instead
#   ACCEL    qemu's accelerator; default kvm where /dev/kvm can boot a
#            stock kernel, else tcg,thread=multi (about 10-30x slower)
#   MEM, SMP guest memory (MiB, default 4096) and CPUs (default 2)
#   PD_SLOW  slowness factor the tests scale their timeouts by (default
#            10 under TCG, 1 under KVM)
#   LIMIT    seconds a test file may take (default 1800 x PD_SLOW / 10:
#            package.t builds the package, compiler and lintian, which
#            under TCG takes longer than 900 s)
#
# The guest has no network device: the tests use its loopback. Every qemu
# started here is stopped on any exit, by its PID.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
O=${O:-build}
kdir=$(realpath -m "$O/kernels")
top=$PWD
KERNELS=${KERNELS:-6.1 6.12 bpo}
MEM=${MEM:-4096}
SMP=${SMP:-2}
qpid=
tpid=

stop_guest() {
	[ -n "$tpid" ] && kill "$tpid" 2>/dev/null
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$qpid" 2>/dev/null
	fi
	[ -n "$qpid" ] && wait "$qpid" 2>/dev/null
	qpid= tpid=
}
trap stop_guest EXIT
trap 'echo "check-kernels: interrupted; the guest is stopped" >&2; exit 130' INT TERM HUP

command -v qemu-system-x86_64 >/dev/null ||
	{ echo "check-kernels: qemu-system-x86_64 is missing (tests/deps.sh kernels)" >&2; exit 1; }

# PVM's /dev/kvm runs only kernels built for it: a stock kernel needs TCG
if [ -z "${ACCEL:-}" ]; then
	if [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ]; then
		ACCEL=kvm
	else
		ACCEL=tcg,thread=multi
	fi
fi
case $ACCEL in kvm*) cpu=host; slow=1 ;; *) cpu=max; slow=10 ;; esac
PD_SLOW=${PD_SLOW:-$slow}
LIMIT=${LIMIT:-$((1800 * PD_SLOW / 10 > 120 ? 1800 * PD_SLOW / 10 : 120))}
if [ -n "${TESTS:-}" ]; then
	tests=$TESTS
elif [ -n "${SMOKE:-}" ]; then
	tests=tests/kernels/smoke.t
else
	tests=$(echo tests/e2e/*.t)
fi
ntests=$(echo "$tests" | wc -w)
# the whole guest: boot, the files' limits, power off
guest_limit=$((300 + ntests * LIMIT))

# initramfs KERNEL RELEASE ROOT: busybox, init, and the modules the root
# file system needs, and those policyd's aborter needs (sock_diag for TCP:
# the root file system is this machine's, without the guest's modules),
# uncompressed, with their load order in modules.list
initramfs() {
	local k=$1 rel=$2 root=$3 img=$kdir/$1/initrd.img stage=$kdir/$1/initrd m
	local mods=(virtio_pci 9pnet_virtio 9p overlay virtio_rng inet_diag tcp_diag)
	if [ -e "$img" ] && [ "$img" -nt tests/kernels/init ] && [ "$img" -nt tests/kernels/cpio.py ] &&
	   [ "$img" -nt tests/kernels/run.sh ]; then
		return 0
	fi
	rm -rf "$stage"
	mkdir -p "$stage/bin" "$stage/modules" "$stage/proc" "$stage/sys"
	cp "$kdir/busybox/bin/busybox" "$stage/bin/busybox"
	cp tests/kernels/init "$stage/init"
	chmod 755 "$stage/init"
	: > "$stage/modules.list"
	modprobe -d "$root" -S "$rel" --show-depends -a "${mods[@]}" 2>/dev/null |
		awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r m; do
			case $m in
			*.xz) xz -dc "$m" > "$stage/modules/$(basename "$m" .xz)" ;;
			*.zst) zstd -qdc "$m" > "$stage/modules/$(basename "$m" .zst)" ;;
			*) cp "$m" "$stage/modules/" ;;
			esac
			basename "${m%.xz}" | sed 's/\.zst$//' >> "$stage/modules.list"
		done
	python3 tests/kernels/cpio.py "$stage" "$img.new" && mv "$img.new" "$img"
}

# counts PROVE_LOG: "N M", tests run and failed; a file that died or
# broke its plan without a failed test counts as one failure
counts() {
	awk '
	/^Files=[0-9]+, Tests=[0-9]+/ { split($2, a, "="); n = a[2] + 0 }
	/\(Wstat: [0-9]+.* Tests: [0-9]+ Failed: [0-9]+\)$/ {
		f = $NF; sub(/\)/, "", f)
		m += (f > 0 ? f : 1)
	}
	END { printf "%d %d\n", n, m }' "$1" 2>/dev/null || echo "0 0"
}

# boot KERNEL: one guest; sets release, verdict, n, m, why
boot() {
	local k=$1 rel root vmlinuz moddir res t0 rc
	verdict=FAIL n=0 m=0 why= release=$k
	if ! rel=$(tests/kernels/fetch.sh "$k" "$kdir"); then
		why="cannot fetch or unpack Debian's kernel package for $k"
		return
	fi
	release=$rel
	root=$kdir/$k/root
	moddir=$(realpath "$root/lib/modules/$rel")
	vmlinuz=$root/boot/vmlinuz-$rel
	[ -e "$vmlinuz" ] || vmlinuz=$moddir/vmlinuz
	if ! initramfs "$k" "$rel" "$root"; then
		why="cannot make the initramfs"
		return
	fi
	res=$kdir/results/$k
	rm -rf "$res"
	mkdir -p "$res"
	cat > "$res/env" <<-EOF
	PD_GUEST=$top/tests/kernels/guest.sh
	PD_WORKTREE=$top
	PD_O=$O
	PD_MODULES=$moddir
	PD_SLOW=$PD_SLOW
	PD_LIMIT=$LIMIT
	PD_TESTS="$tests"
	EOF
	echo "check-kernels: $rel ($k): booting ($ACCEL, ${MEM} MiB, $SMP CPUs); $ntests test files"
	t0=$(date +%s)
	: > "$res/console.log"
	qemu-system-x86_64 -nodefaults -no-user-config -display none -monitor none \
		-accel "$ACCEL" -cpu "$cpu" -smp "$SMP" -m "$MEM" -no-reboot \
		-kernel "$vmlinuz" -initrd "$kdir/$k/initrd.img" \
		-append "console=ttyS0 rdinit=/init panic=-1 loglevel=4 random.trust_cpu=on" \
		-serial "file:$res/console.log" -nic none \
		-device virtio-rng-pci \
		-virtfs local,path=/,mount_tag=pdroot,security_model=none,readonly=on,multidevs=remap \
		-virtfs "local,path=$res,mount_tag=pdout,security_model=none" \
		</dev/null >"$res/qemu.log" 2>&1 &
	qpid=$!
	tail -n +1 -f --pid="$qpid" "$res/console.log" 2>/dev/null | grep --line-buffered -v '^\[' &
	tpid=$!
	while kill -0 "$qpid" 2>/dev/null; do
		if [ $(($(date +%s) - t0)) -ge "$guest_limit" ]; then
			why="the guest did not power off within $guest_limit s; stopped"
			break
		fi
		sleep 1
	done
	stop_guest
	elapsed=$(($(date +%s) - t0))
	rc=$(cat "$res/status" 2>/dev/null)
	read -r n m < <(counts "$res/prove.log")
	if [ -z "$rc" ] && [ -z "$why" ]; then
		why="the guest stopped before the tests ended (see $res/console.log, $res/qemu.log)"
	fi
	if [ "$rc" = 0 ] && [ "$n" -gt 0 ] && [ -z "$why" ]; then
		verdict=PASS
	fi
	if grep -qE 'WARNING:|BUG:|refcount_t:|use-after-free|general protection' "$res/dmesg" 2>/dev/null; then
		verdict=FAIL
		why="the kernel logged a warning (see $res/dmesg): $(grep -m1 -E 'WARNING:|BUG:|refcount_t:|use-after-free|general protection' "$res/dmesg")"
	fi
	echo "check-kernels: $rel ($k): $elapsed s, LSMs $(cat "$res/lsm" 2>/dev/null || echo '?')${why:+; $why}"
}

summary=()
fail=0
for k in $KERNELS; do
	boot "$k"
	# A kernel that crashed while it booted, before the guest script ran
	# (it writes release first: nothing of policyd was loaded yet), is
	# booted once more, its console kept and the crash said. Under TCG
	# an early boot has been seen to die of an int3 in code being
	# patched (6.12, sched_clock_cpu), once in many boots.
	res=$kdir/results/$k
	if [ "$verdict" != PASS ] && [ ! -e "$res/release" ] &&
		grep -q 'Kernel panic' "$res/console.log" 2>/dev/null; then
		cp "$res/console.log" "$kdir/results/$k.boot-crash.log"
		echo "check-kernels: $release ($k): the kernel crashed while booting, before the" \
			"tests ($(grep -m1 -E 'Oops|BUG|Kernel panic' "$res/console.log" |
			sed 's/^\[[^]]*\] //'); console in $kdir/results/$k.boot-crash.log)," \
			"booting it once more"
		boot "$k"
	fi
	summary+=("$release: $verdict ($n tests, $m failed)")
	[ "$verdict" = PASS ] || fail=1
done
for line in "${summary[@]}"; do echo "$line"; done
exit "$fail"
