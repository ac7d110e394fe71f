#!/usr/bin/env bash
# The systemd unit and what it relies on: systemd-analyze verify and
# security --offline; sd_notify (READY=1, RELOADING=1 with MONOTONIC_USEC,
# STATUS=, STOPPING=1) and `policyd reload` failing on a refused policy;
# every system call the daemon makes is in the unit's SystemCallFilter
# (strace over start with adoption, denies and aborts, reloads, stop);
# the daemon works with the kernel tunables and the cgroup file systems
# read-only (ProtectKernelTunables, ProtectControlGroups); where systemd
# is PID 1, the daemon runs under the unit's sandbox through systemd-run.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
command -v systemd-analyze >/dev/null || skip_all "systemd-analyze is not installed"
env_setup unit || skip_all "cannot make a cgroup"
unit_in=policyd/policyd.service.in
port=$(free_port)
pol() { kv_policy "$TMP/p.conf" 100 "" "$@"; }
wait_listen() { for _ in $(seq 400); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }
pol FLUSHALL

# --- the unit file ---
make -s install DESTDIR="$TMP/root" PREFIX=/usr >/dev/null 2>&1; ok $? "make install PREFIX=/usr"
unit="$TMP/root/usr/lib/systemd/system/policyd.service"
grep -qx 'ExecStart=/usr/sbin/policyd run -c /etc/policyd/policy.conf' "$unit" &&
	grep -qx 'ExecReload=/usr/sbin/policyd reload --pid $MAINPID -c /etc/policyd/policy.conf' "$unit"
ok $? "the installed unit names the installed binary"
# verify checks that the commands exist: the same unit over this build
sed -e "s|@SBINDIR@|$PWD/$O|g" -e 's|@SYSCONFDIR@|/etc|g' "$unit_in" > "$TMP/policyd.service"
MANPATH="$TMP/root/usr/share/man" systemd-analyze verify "$TMP/policyd.service" > "$TMP/verify.out" 2>&1
ok $? "systemd-analyze verify" || sed 's/^/# /' "$TMP/verify.out"
systemd-analyze security --offline=yes --no-pager "$TMP/policyd.service" > "$TMP/security.out" 2>&1
score=$(sed -n 's/.*Overall exposure level for policyd.service: \([0-9.]*\).*/\1/p' "$TMP/security.out")
echo "# systemd-analyze security: exposure $score"
awk -v s="${score:-99}" 'BEGIN { exit !(s <= 4.0) }'; ok $? "systemd-analyze security --offline=yes: exposure $score (at most 4.0)"
for k in 'SystemCallFilter=~@obsolete' 'SystemCallFilter=~@module' 'ProtectControlGroups=' 'ProtectKernelTunables=' 'UMask='; do
	grep -q "✓ $k " "$TMP/security.out"; ok $? "security: $k is met"
done

# --- sd_notify and policyd reload ---
python3 - "$TMP/notify" "$TMP/notify.log" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777)   # the daemon sends after its drop
out = open(sys.argv[2], "a", buffering=1)
while True:
    out.write(s.recv(4096).decode() + "\n--\n")
PY
PIDS+=($!)
for _ in $(seq 50); do [ -S "$TMP/notify" ] && break; sleep 0.05; done
notified() { grep -c -- "$1" "$TMP/notify.log" 2>/dev/null; }
NOTIFY_SOCKET="$TMP/notify" start_policyd "$TMP/p.conf"; ok $? "policyd runs with NOTIFY_SOCKET"
sleep 0.2
is "$(notified '^READY=1$')" 1 "READY=1 once started"
grep -qx 'STATUS=policy generation 1 enforcing, mode enforce' "$TMP/notify.log"; ok $? "STATUS= says what enforces"
pol FLUSHALL SHUTDOWN
out=$("$PD" reload --pid "$PDPID" --pin-dir "$PIN" -c "$TMP/p.conf" 2>&1); st=$?
is "$st" 0 "policyd reload: exit 0"
is "$out" "policyd reload: policy generation 2 enforces (mode enforce)" "... and says what enforces"
sleep 0.2
grep -qx 'RELOADING=1' "$TMP/notify.log" && grep -qE '^MONOTONIC_USEC=[0-9]+$' "$TMP/notify.log"
ok $? "RELOADING=1 with MONOTONIC_USEC"
is "$(notified '^READY=1$')" 2 "READY=1 after the reload"
grep -qx 'STATUS=reloaded; policy generation 2 enforcing, mode enforce' "$TMP/notify.log"; ok $? "STATUS= after the reload"
echo 'version = 1; services = ( { name = "kv"; ports = [ 0 ]; } );' > "$TMP/p.conf"
out=$("$PD" reload --pid "$PDPID" --pin-dir "$PIN" -c "$TMP/p.conf" 2>&1); st=$?
is "$st" 1 "policyd reload of an invalid policy: exit 1 (the reload job fails)"
case $out in *"refused; policy generation 2 keeps enforcing"*"$TMP/p.conf:1: ports are from 1 to 65535"*) ok 0 "... saying why";;
	*) ok 1 "... saying why: $out";; esac
sleep 0.2
grep -qx 'STATUS=reload refused (see the log); policy generation 2 enforcing, mode enforce' "$TMP/notify.log"
ok $? "STATUS= says the reload was refused"
out=$("$PD" reload --pid 1 --pin-dir "$PIN" 2>&1); st=$?
is "$st" 3 "policyd reload --pid of another process: exit 3 ($out)"
stop_policyd; ok $? "policyd stops"
is "$(notified '^STOPPING=1$')" 1 "STOPPING=1"

# --- SystemCallFilter: every system call made is allowed ---
pol FLUSHALL
# a connection open before the start, to be adopted (pidfd_getfd)
start_recorder "$port" "$TMP/server.out"
wait_listen "$port" || ok 1 "the recording server listens"
in_cgroup python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
time.sleep(30)' "$port" &
PIDS+=($!)
for _ in $(seq 100); do
	[ "$(ss -Htn state established "( dport = :$port )" | wc -l)" -gt 0 ] && break
	sleep 0.05
done
strace -f -qq -o "$TMP/strace" "$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN" --foreground \
	>"$TMP/policyd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1200); do grep -q 'started:' "$TMP/policyd.log" && break; sleep 0.05; done
for _ in $(seq 100); do PDPID=$(pgrep -P "${PIDS[-1]}" -x policyd) && break; sleep 0.05; done
grep -q " 1 open connections adopted" "$TMP/policyd.log"; ok $? "under strace: started, one connection adopted" || sed "s/^/# /" "$TMP/policyd.log"
is "$(sendline 'FLUSHALL')" 13 "under strace: a denied send fails"
pol FLUSHALL SHUTDOWN
kill -HUP "$PDPID"; sleep 0.5
is "$(sendline 'SHUTDOWN')" 13 "under strace: reloaded"
kill -TERM "$PDPID"; wait "${PIDS[-1]}"
used=$(grep -oE '^[0-9]+ +[a-z_0-9]+\(' "$TMP/strace" | awk '{ print $2 }' | tr -d '(' | sort -u)
allowed=$(sed -n 's/^SystemCallFilter=//p' "$unit_in" | tr ' ' '\n')
expand() {   # the system calls of a set, recursively
	local x
	for x in "$@"; do
		case $x in
		@*) expand $(systemd-analyze syscall-filter --no-pager "$x" | grep -E '^ +[-@a-z_0-9]+$') ;;
		*) echo "$x" ;;
		esac
	done
}
expand $allowed | sort -u > "$TMP/allowed"
missing=$(comm -23 <(echo "$used") "$TMP/allowed" | grep -v '^execve$' | tr '\n' ' ')
echo "# system calls made: $(echo $used | wc -w); allowed by the unit: $(wc -l < "$TMP/allowed")"
is "$missing" "" "every system call the daemon made is in the unit's SystemCallFilter"
echo "$used" | grep -qx bpf && echo "$used" | grep -qx pidfd_getfd
ok $? "... bpf and pidfd_getfd among them (the unit allows them by name)"

# --- ProtectKernelTunables, ProtectControlGroups: read-only /sys, /proc/sys, cgroups ---
pol FLUSHALL
cat > "$TMP/ro.sh" <<'SH'
set -e
# as systemd does: the kernel's tunables and the cgroup file systems
# read-only; /sys/fs/bpf (ReadWritePaths) stays writable
mount --make-rprivate /
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
awk '$2 == "/sys" || ($2 ~ "^/sys/" && $2 != "/sys/fs/bpf") { print $2 }' /proc/mounts | while read -r m; do
	mount -o remount,bind,ro "$m" 2>/dev/null || { mount --bind "$m" "$m" && mount -o remount,bind,ro "$m"; }
done
touch /proc/sys/kernel/x 2>/dev/null && exit 90
mkdir "$CG/x" 2>/dev/null && exit 91
exec "$@"
SH
CG="$CG" unshare -m bash "$TMP/ro.sh" "$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN" --foreground \
	>"$TMP/policyd.log" 2>&1 &
PDPID=$!
PIDS+=($PDPID)
for _ in $(seq 1200); do grep -q 'started:' "$TMP/policyd.log" && break; kill -0 $PDPID 2>/dev/null || break; sleep 0.05; done
grep -q 'started:' "$TMP/policyd.log"; ok $? "with /sys, /proc/sys and the cgroup file systems read-only: policyd starts" ||
	{ sed 's/^/# /' "$TMP/policyd.log"; wait $PDPID; echo "# exit $?"; }
is "$(sendline 'FLUSHALL')" 13 "... enforces"
pol FLUSHALL SHUTDOWN
kill -HUP $PDPID; sleep 0.5
is "$(sendline 'SHUTDOWN')" 13 "... reloads"
kill -TERM $PDPID; wait $PDPID; ok $? "... stops cleanly"
[ ! -e "$PIN" ]; ok $? "... and removes its pins"

# --- under systemd itself ---
if [ ! -d /run/systemd/system ]; then
	echo "# systemd is not PID 1 here ($(cat /proc/1/comm)): systemd-run cannot start units; the unit's sandbox is checked piecewise above"
else
	props=()
	while IFS= read -r l; do props+=(-p "$l"); done < <(sed -n '/^\[Service\]/,/^\[/p' "$unit_in" |
		grep -E '^[A-Z][A-Za-z]+=' | grep -vE '^(Exec|Restart|Type|NotifyAccess)')
	systemd-run --unit="policyd-unit-test-$$" -p Type=notify -p NotifyAccess=main "${props[@]}" \
		"$PWD/$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN" >/dev/null 2>&1
	ok $? "systemd-run with the unit's sandbox: started (READY=1)"
	is "$(sendline 'FLUSHALL')" 13 "... enforces"
	systemctl stop "policyd-unit-test-$$"; ok $? "... stops"
fi
done_testing
