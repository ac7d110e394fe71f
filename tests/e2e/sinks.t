#!/usr/bin/env bash
# Sink files as an operator meets them: records that keep their own bytes
# when events are lost (the daemon stopped under a flood of diversions),
# log rotation (SIGHUP opens a moved or removed file anew), reloads that
# name a file policyd made earlier, a reload refused on a sink, and a full
# disk (a small tmpfs in a mount namespace of our own).
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups, namespaces)"
env_setup sinks || skip_all "cannot make a cgroup"
PD=$(realpath "$PD")

port=$(free_port)
# pol FILE SINK-NAME SINK-FILE [DENY-WORD]: divert DEBUG (rule 9) to the sink
pol() {
	cat > "$1" <<EOF
version = 1;
daemon = { log_rate = 0; };
sinks = ( { name = "$2"; file = "$3"; } );
services = ( { name = "kv"; ports = [ $port ]; framing = "line"; rules = (
  { id = 7; action = "deny"; contains = "${4:-FLUSHALL}"; },
  { id = 9; action = "redirect"; prefix = "DEBUG"; sink = "$2"; } ); } );
EOF
}
python3 -c '
import socket, sys, threading
threading.excepthook = lambda a: None if a.exc_type is ConnectionResetError else sys.__excepthook__(a.exc_type, a.exc_value, a.exc_traceback)  # a denied client is reset
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(256)
def serve(c):
    while c.recv(65536): pass
while True:
    c, _ = ls.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()' "$port" &
PIDS+=($!)
# divert WORD...: one connection from the cgroup sends "DEBUG WORD\n" for each
divert() {
	in_cgroup python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
for w in sys.argv[2:]:
    s.sendall(b"DEBUG " + w.encode() + b"\n")
s.close()' "$port" "$@"
}
wait_for() {   # wait_for FILE REGEX [SECONDS]
	local i
	for i in $(seq $(( ${3:-10} * 20 * SLOW ))); do
		grep -Eq "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}
reload() {     # reload: SIGHUP, and wait for its reloaded or refused line
	local n
	n=$(grep -Ec 'reloaded:|reload refused:' "$TMP/policyd.log")
	kill -HUP "$PDPID"
	for _ in $(seq $((100 * SLOW))); do
		[ "$(grep -Ec 'reloaded:|reload refused:' "$TMP/policyd.log")" -gt "$n" ] && return 0
		sleep 0.05
	done
	return 1
}

# ---- records keep their own bytes when events are lost ----
pol "$TMP/a.conf" q "$TMP/flood.log"
start_policyd "$TMP/a.conf"; ok $? "policyd runs"
kill -STOP "$PDPID"
# two processes at once, 40 connections each, 60 diverted lines per
# connection: 4,800 redirect events for a ring buffer that holds ~2,600
for k in 1 2; do
	in_cgroup python3 -c '
import socket, sys
port = int(sys.argv[1]); n = 0
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
for i in range(60):
    for s in conns:
        me = s.getsockname()[1]
        s.sendall(b"DEBUG from=%d seq=%d %s\n" % (me, i, b"x" * (i % 50)))
        n += 1
print(n)' "$port" > "$TMP/flood.$k" &
	PIDS+=($!)
done
wait "${PIDS[-1]}" "${PIDS[-2]}"
sent=$(( $(cat "$TMP/flood.1") + $(cat "$TMP/flood.2") ))
sleep 1
kill -CONT "$PDPID"
sleep $((4 * SLOW))
# and after it, diversions one by one: each must still get its own bytes
in_cgroup python3 -c '
import socket, sys, time
for i in range(20):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"DEBUG from=%d seq=%d after\n" % (s.getsockname()[1], i)); s.close(); time.sleep(0.02)' "$port"
sent=$((sent + 20))
sleep $((3 * SLOW))
python3 - "$TMP/flood.log" <<'EOF' > "$TMP/flood.check"
import re, sys
good = unknown = wrong = 0
for line in open(sys.argv[1], "rb"):
    m = re.search(rb' data="(.*)"$', line.rstrip(b"\n"))
    data = m.group(1) if m else b""
    if b" origin=unknown " in line:
        unknown += 1
        continue
    src = re.search(rb" src=127\.0\.0\.1:(\d+) ", line)
    one = re.fullmatch(rb"DEBUG from=(\d+) seq=\d+ (x*|after)\\n", data)
    if src and one and one.group(1) == src.group(1):
        good += 1
    else:
        wrong += 1
        print("#   wrong: " + line.decode(errors="replace")[:300])
print(good, unknown, wrong)
EOF
read -r good unknown wrong < <(tail -1 "$TMP/flood.check")
grep '^#' "$TMP/flood.check" | head -5
is "$wrong" 0 "no record carries another connection's bytes ($good own, $unknown of unknown origin)"
lost=$(sed -En 's/^policyd: ([0-9]+) events lost: the ring buffer was full.*/\1/p' "$TMP/policyd.log" |
	awk '{ s += $1 } END { print s + 0 }')
ok $(( lost > 0 && unknown > 0 ? 0 : 1 )) "the flood did lose events ($lost): their bytes are recorded as of unknown origin"
ok $(( good + unknown == sent ? 0 : 1 )) "each of the $sent diverted lines is in one record ($good + $unknown)"
stop_policyd; is $? 0 "SIGTERM: exit 0"

# ---- rotation: SIGHUP opens a moved or removed sink file anew ----
mkdir "$TMP/rot"; chown nobody "$TMP/rot"   # where logrotate lets policyd's user create files
pol "$TMP/b.conf" q "$TMP/rot/q.log"
: > "$TMP/policyd.log"
start_policyd "$TMP/b.conf"; ok $? "policyd runs with a sink in a directory its user may write"
divert one
wait_for "$TMP/rot/q.log" 'data="DEBUG one\\n"'; ok $? "a record in the sink file"
is "$(stat -c '%U %a' "$TMP/rot/q.log")" "nobody 600" "the file policyd made is its user's, mode 0600"
mv "$TMP/rot/q.log" "$TMP/rot/q.log.1"
reload; divert two
wait_for "$TMP/rot/q.log" 'data="DEBUG two\\n"'; ok $? "SIGHUP after a rename: a new file takes the next record"
! grep -q 'DEBUG two' "$TMP/rot/q.log.1"; ok $? "... and the renamed one has only the earlier"
grep -q "^policyd: sink file $TMP/rot/q.log opened again (it had been moved or removed) instance=" "$TMP/policyd.log"
ok $? "... logged"
rm "$TMP/rot/q.log"
reload; divert three
wait_for "$TMP/rot/q.log" 'data="DEBUG three\\n"'; ok $? "SIGHUP after a removal: the file is made anew"
stop_policyd

# ---- reloads: a sink file policyd made earlier; a sink that fails ----
pol "$TMP/c.conf" q "$TMP/made.log"
: > "$TMP/policyd.log"
rm -f "$TMP/made.log"
start_policyd "$TMP/c.conf"; ok $? "policyd runs; it makes $TMP/made.log"
pol "$TMP/c.conf" q "$TMP/rot/other.log"
reload; grep -q 'reloaded: .* is generation 2' "$TMP/policyd.log"; ok $? "a reload to another sink file"
pol "$TMP/c.conf" quarantine "$TMP/made.log"
reload; grep -q 'reloaded: .* is generation 3' "$TMP/policyd.log"
ok $? "a reload back to the file policyd made earlier (as root), under another sink name" ||
	grep 'refused' "$TMP/policyd.log" | sed 's/^/# /'
divert four
wait_for "$TMP/made.log" 'sink=quarantine .*data="DEBUG four\\n"'; ok $? "... which takes the records again"
pol "$TMP/c.conf" q "$TMP/no/such/dir/q.log" SHUTDOWN
reload
grep -q "^policyd: reload refused: sink q: cannot open $TMP/no/such/dir/q.log: No such file or directory; policy generation 3 keeps enforcing instance=" "$TMP/policyd.log"
ok $? "a reload whose sink cannot be opened is refused, saying so" ||
	tail -3 "$TMP/policyd.log" | sed 's/^/# /'
is "$(sendline 'FLUSHALL')" 13 "... policy 3 keeps enforcing (FLUSHALL denied)"
is "$(sendline 'SHUTDOWN')" 0 "... and the refused one's rule does not apply"
divert five
wait_for "$TMP/made.log" 'data="DEBUG five\\n"'; ok $? "... and its sink takes the records"
stop_policyd

# ---- a full disk: one line a second, with the cause ----
pol "$TMP/d.conf" q "$TMP/full/q.log"
export TMP PD CG PIN
mkdir "$TMP/full"
unshare -m --propagation private bash -c '
	set -e
	mount -t tmpfs -o size=64k,mode=0755 policyd-test-full "$TMP/full"
	exec "$PD" run -c "$TMP/d.conf" --cgroup "$CG" --pin-dir "$PIN" --foreground' \
	>"$TMP/full.log" 2>&1 &
PDPID=$!; PIDS+=($PDPID)
wait_for "$TMP/full.log" 'started:'; ok $? "policyd runs with its sink on a 64 KiB tmpfs"
t0=$(date +%s)
# 3 s of diversions, 1 KiB each, 100 a second: 300 KiB for 64 KiB
in_cgroup python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
for i in range(300):
    s.sendall(b"DEBUG %04d " % i + b"y" * 1000 + b"\n"); time.sleep(0.01)' "$port"
sleep 2
secs=$(( $(date +%s) - t0 + 1 ))
n=$(grep -c "^policyd: sink file $TMP/full/q.log: [0-9]* records not written: No space left on device instance=" "$TMP/full.log")
ok $(( n >= 1 && n <= secs ? 0 : 1 )) "the full disk: $n lines in $secs s, naming the cause" ||
	grep -v 'redirect rule' "$TMP/full.log" | tail -5 | sed 's/^/# /'
other=$(grep -E '(^policyd: | )sink( file|=| [a-z]+:)' "$TMP/full.log" | grep -v '^policyd: redirect rule=9 ' |
	grep -v ': [0-9]* records not written: No space left on device ')
is "$other" "" "... and no other line about the sink"
kill -TERM "$PDPID"; wait "$PDPID"; is $? 0 "SIGTERM: exit 0"
done_testing
