#!/usr/bin/env bash
# Log lines reach a real syslog daemon: Debian's rsyslogd and policyd run in
# a mount namespace of their own whose /dev holds a private /dev/log, so the
# host's logging is not touched. Checked: facility daemon, ident policyd,
# the severities, the event line format, the rate limit's summary, and a
# reload's refusal, all as rsyslog wrote them.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups, namespaces)"
command -v rsyslogd >/dev/null || skip_all "rsyslogd is not installed (make deps)"
env_setup syslog || skip_all "cannot make a cgroup"
PD=$(realpath "$PD")

port=$(free_port)
pol() {
	printf 'version = 1;\ndaemon = { log_rate = %s; };\nservices = ( { name = "kv"; ports = [ %s ]; framing = "line"; rules = (\n  { id = 7; action = "deny"; contains = "FLUSHALL"; },\n  { id = 8; action = "audit"; prefix = "KEYS"; } ); } );\n' "$1" "$port" > "$TMP/p.conf"
}
pol 3
python3 -c '
import socket, sys, threading
threading.excepthook = lambda a: None if a.exc_type is ConnectionResetError else sys.__excepthook__(a.exc_type, a.exc_value, a.exc_traceback)  # a denied client is reset
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(64)
def serve(c):
    while c.recv(65536): pass
while True:
    c, _ = ls.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()' "$port" >"$TMP/server.log" 2>&1 &
PIDS+=($!)
wait_port "$port" || fail_now "the test's server listens on 127.0.0.1:$port"

cat > "$TMP/rsyslog.conf" <<EOF
global(workDirectory="$TMP")
module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0")
template(name="pd" type="string"
	string="%syslogfacility-text%.%syslogseverity-text% %programname%[%procid%]:%msg:::sp-if-no-1st-sp%%msg%\n")
*.* action(type="omfile" file="$TMP/syslog.out" template="pd")
EOF
rsyslogd -N1 -f "$TMP/rsyslog.conf" >/dev/null 2>&1; ok $? "rsyslogd accepts the test configuration"

export TMP PD CG PIN
# the namespace: a tmpfs /dev with the few nodes the programs use, then
# rsyslogd on its /dev/log, then policyd (in the foreground of the shell)
unshare -m --propagation private bash -c '
	set -e
	mkdir "$TMP/dev"
	mount -t tmpfs -o mode=0755 policyd-test-dev "$TMP/dev"
	for n in null zero random urandom; do
		: > "$TMP/dev/$n"; mount --bind "/dev/$n" "$TMP/dev/$n"
	done
	mount --bind "$TMP/dev" /dev
	# a journal would take the lines before syslog: none in here
	[ ! -d /run/systemd/journal ] || mount -t tmpfs policyd-test-nojournal /run/systemd/journal
	rsyslogd -n -f "$TMP/rsyslog.conf" -i "$TMP/rsyslog.pid" >"$TMP/rsyslog.log" 2>&1 &
	echo $! > "$TMP/rsyslog.pid.own"
	for _ in $(seq 100); do [ -S /dev/log ] && break; sleep 0.05; done
	[ -S /dev/log ]
	exec "$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN"
' >"$TMP/policyd.err" 2>&1 &
PDPID=$!
PIDS+=($PDPID)
for _ in $(seq 200); do grep -q 'started:' "$TMP/syslog.out" 2>/dev/null && break; sleep 0.05; done
rpid=$(cat "$TMP/rsyslog.pid.own" 2>/dev/null)
[ -n "$rpid" ] && PIDS+=("$rpid")
grep -q 'started:' "$TMP/syslog.out" 2>/dev/null; ok $? "policyd's start line reached rsyslogd" ||
	sed 's/^/# /' "$TMP/policyd.err"
[ ! -e /dev/log ] || [ -S /dev/log ]; ok $? "the host's /dev is untouched"

is "$(sendline 'FLUSHALL now')" 13 "FLUSHALL is denied"
is "$(sendline 'KEYS *')" 0 "KEYS passes, audited"
sleep 1.5
inst="policyd-syslog-[0-9]+"   # the pin directory's last part
re='^daemon\.warning policyd\[[0-9]+\]: deny rule=7 service=kv pid=[0-9]+ comm=python3 uid=0 src=127\.0\.0\.1:[0-9]+ dst=127\.0\.0\.1:'$port' len=13 excerpt="FLUSHALL now\\n" instance='$inst'$'
grep -Eq "$re" "$TMP/syslog.out"; ok $? "the deny line: facility daemon, severity warning, ident policyd, key=value" ||
	sed 's/^/# /' "$TMP/syslog.out"
grep -Eq '^daemon\.info policyd\[[0-9]+\]: audit rule=8 service=kv .* excerpt="KEYS \*\\n" instance='$inst'$' "$TMP/syslog.out"
ok $? "the audit line, severity info"
grep -Eq '^daemon\.notice policyd\[[0-9]+\]: running as nobody' "$TMP/syslog.out"
ok $? "the privilege drop is logged"

# rate limit: 12 denies in a burst (one client process: a slow machine
# still sends them within a second or two), at most 3 lines a second, and
# a summary that counts the rest by kind
sendlines 12 FLUSHALL >/dev/null
# the summary comes at the next second's start: wait for it (10 s at most)
for _ in $(seq 100); do grep -q ': suppressed ' "$TMP/syslog.out" && break; sleep 0.1; done
sleep 1.5
n=$(grep -c 'deny rule=7' "$TMP/syslog.out")
ok $(( n >= 4 && n < 13 ? 0 : 1 )) "13 denies under log_rate = 3: $n deny lines in syslog"
sup=$(sed -En 's/^daemon\.warning policyd\[[0-9]+\]: suppressed ([0-9]+) deny lines over log_rate=3 per second instance=policyd-syslog-[0-9]+$/\1/p' "$TMP/syslog.out" |
	awk '{ s += $1 } END { print s + 0 }')
ok $(( sup > 0 ? 0 : 1 )) "the suppressed denies are summarised in syslog ($sup)"
is "$(( n + sup ))" 13 "... every deny is either logged or counted"

echo 'version = 1; services = ( );; oops' > "$TMP/p.conf"
kill -HUP "$PDPID"
sleep 1
grep -Eq "^daemon\.err policyd\[[0-9]+\]: reload refused: $TMP/p.conf is invalid; policy generation 1 keeps enforcing instance=$inst$" "$TMP/syslog.out"
ok $? "a refused reload is an error line in syslog"
grep -Eq "^daemon\.err policyd\[[0-9]+\]: $TMP/p.conf:1: " "$TMP/syslog.out"
ok $? "... after the error with file:line"

kill -TERM "$PDPID"; wait "$PDPID"; is $? 0 "SIGTERM: exit 0"
sleep 0.3
grep -Eq '^daemon\.notice policyd\[[0-9]+\]: stopped: nothing attached, pins removed instance='$inst'$' "$TMP/syslog.out"
ok $? "the stop line reached rsyslogd"
[ -n "$rpid" ] && kill "$rpid" 2>/dev/null
done_testing
