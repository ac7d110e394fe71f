#!/usr/bin/env bash
# policyd run as an operator meets it: refusals with a sentence and exit 3
# that leave nothing behind, pins of another instance never reused, SIGHUP
# reloads that open connections obey, and a bad reload that changes nothing.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
env_setup run || skip_all "cannot make a cgroup"

port=$(free_port)
pol() { local f=$1; shift; kv_policy "$f" 100 "" "$@"; }  # pol FILE WORD...
pol "$TMP/a.conf" FLUSHALL
cp "$TMP/a.conf" "$TMP/b.conf"

out=$("$PD" run -c "$TMP/a.conf" --cgroup /tmp --pin-dir "$PIN" 2>&1); rc=$?
is "$rc" 3 "a cgroup that is not cgroup v2: exit 3"
is "$out" "policyd: /tmp is not a cgroup v2 directory" "... with a sentence"
[ ! -e "$PIN" ]; ok $? "... and nothing pinned"
printf 'version = 1;\nservices = ( { name = "x"; ports = [ 0 ]; rules = (); } );\n' > "$TMP/bad.conf"
"$PD" run -c "$TMP/bad.conf" --cgroup "$CG" --pin-dir "$PIN" >/dev/null 2>&1
is $? 1 "an invalid policy: exit 1, nothing loaded"
out=$("$PD" stats --pin-dir "$PIN" 2>&1); rc=$?
is "$rc" 3 "stats without a running instance: exit 3 ($out)"

# a listener that keeps every connection's bytes, outside the cgroup
start_recorder "$port" "$TMP/server.out"
wait_port "$port" || fail_now "the test's server listens on 127.0.0.1:$port"

start_policyd "$TMP/a.conf"; ok $? "policyd runs"
out=$("$PD" run -c "$TMP/a.conf" --cgroup "$CG" --pin-dir "$PIN" 2>&1); rc=$?
is "$rc" 3 "a second instance on the same pins: exit 3"
case $out in *"holds the pins of another policyd"*) ok 0 "... saying why";; *) ok 1 "... saying why: $out";; esac

# a connection from the cgroup that stays open: one send per input line,
# the result (bytes or -errno) per output line
conn() { in_cgroup python3 -u -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
for line in sys.stdin:
    try:
        print(s.send(line.encode()))
    except OSError as e:
        print(-e.errno)
' "$port"; }
coproc CONN { conn; }
PIDS+=($CONN_PID)
say() { echo "$1" >&"${CONN[1]}"; read -r -t 10 r <&"${CONN[0]}"; echo "$r"; }
is "$(say 'SET a 1')" 8 "open connection: an allowed line passes"
is "$(say 'SHUTDOWN now')" 13 "open connection: SHUTDOWN passes under policy 1"

pol "$TMP/a.conf" FLUSHALL SHUTDOWN
kill -HUP "$PDPID"
wait_for 10 grep -q 'reloaded: policy .* is generation 2' "$TMP/policyd.log"; ok $? "SIGHUP reloads (generation 2)"
is "$(say 'SHUTDOWN now')" -13 "the open connection obeys the new rule at its next message"

kill "$CONN_PID"; wait "$CONN_PID" 2>/dev/null
coproc CONN2 { conn; }
PIDS+=($CONN2_PID)
say2() { echo "$1" >&"${CONN2[1]}"; read -r -t 10 r <&"${CONN2[0]}"; echo "$r"; }
is "$(say2 'GET a')" 6 "a new connection under policy 2"
echo 'version = 1; services = ( { name = "kv"; ports = [ 1 ]; rules = ( { id = 1; action = "nope"; contains = "x"; } ); } );' > "$TMP/a.conf"
kill -HUP "$PDPID"
wait_for 10 grep -q "reload refused: $TMP/a.conf is invalid; policy generation 2 keeps enforcing" "$TMP/policyd.log"
ok $? "a bad reload is refused with a log line"
grep -q "$TMP/a.conf:1: " "$TMP/policyd.log"; ok $? "... which logs the error with file:line"
kill -0 "$PDPID"; ok $? "... and policyd stays up"
is "$(say2 'FLUSHALL')" -13 "... and policy 2 keeps enforcing"

stop_policyd; is $? 0 "SIGTERM: exit 0"

# log_rate: at most N event lines a second, the rest counted and reported
{ echo "version = 1; daemon = { log_rate = 3; };"; tail -n +2 "$TMP/b.conf"; } > "$TMP/c.conf"
start_policyd "$TMP/c.conf"; ok $? "policyd runs with log_rate = 3"
# one client process, twelve connections at once: a slow machine still
# sends them within a second or two
t0=$(date +%s)
sendlines 12 FLUSHALL >/dev/null
secs=$(( $(date +%s) - t0 + 1 ))
# the summary comes at the next second's start: wait for it (10 s at most)
for _ in $(seq 100); do grep -q '^policyd: suppressed ' "$TMP/policyd.log" && break; sleep 0.1; done
sleep 1.5
n=$(grep -c '^policyd: deny rule=100' "$TMP/policyd.log")
ok $(( n >= 3 && n <= 3 * secs && n < 12 ? 0 : 1 )) "12 denies over $secs s: $n lines logged"
sup=$(sed -n 's/^policyd: suppressed \([0-9]*\) deny lines over log_rate=3 per second instance=policyd-run-[0-9]*$/\1/p' "$TMP/policyd.log" |
	awk '{ s += $1 } END { print s + 0 }')
ok $(( sup > 0 ? 0 : 1 )) "the suppressed lines are counted by kind and reported ($sup)" ||
	grep suppressed "$TMP/policyd.log" | sed 's/^/# /'
is "$(( n + sup ))" 12 "... every deny is either logged or counted"
c=$("$PD" stats --pin-dir "$PIN" | awk '$1 == 100 { print $4 }')
is "$c" 12 "... while the counter has every one"
stop_policyd; is $? 0 "SIGTERM: exit 0"
[ ! -e "$PIN" ]; ok $? "pins removed"
is "$(bpftool cgroup show "$CG")" "" "nothing attached to the cgroup"
done_testing
