#!/usr/bin/env bash
# Where log lines go and what holds them up. policyd runs in mount
# namespaces of its own (a private /dev and /run, so the host's logging is
# not touched) with: no syslog at all (a warning, then stderr); a syslog
# reader that stops reading (aborts and sink records go on, the lines that
# do not fit are counted); the real systemd-journald (structured fields).
# And log_rate under a flood: a bound for every kind of line, one summary a
# second, every deny logged or counted.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups, namespaces)"
env_setup logs || skip_all "cannot make a cgroup"
PD=$(realpath "$PD")

port=$(free_port)
# pol RATE [DAEMON-EXTRA]: deny FLUSHALL (7), audit KEYS (8), divert DEBUG (9)
pol() {
	cat > "$TMP/p.conf" <<EOF
version = 1;
daemon = { log_rate = $1; ${2:-} };
sinks = ( { name = "q"; file = "$TMP/sink.log"; } );
services = ( { name = "kv"; ports = [ $port ]; framing = "line"; rules = (
  { id = 7; action = "deny"; contains = "FLUSHALL"; },
  { id = 8; action = "audit"; prefix = "KEYS"; },
  { id = 9; action = "redirect"; prefix = "DEBUG"; sink = "q"; } ); } );
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

# The namespace's first steps: /run and /dev private and empty but for
# the device nodes the programs use. Then what the caller appends.
NS_PRELUDE='
set -e
mount -t tmpfs -o mode=0755 policyd-test-run /run
mkdir -p "$TMP/dev"
mount -t tmpfs -o mode=0755 policyd-test-dev "$TMP/dev"
for n in null zero random urandom; do : > "$TMP/dev/$n"; mount --bind "/dev/$n" "$TMP/dev/$n"; done
mount --bind "$TMP/dev" /dev
'
export TMP PD CG PIN
wait_for() {   # wait_for FILE REGEX [SECONDS]
	local i
	for i in $(seq $(( ${3:-10} * 20 * SLOW ))); do
		grep -Eq "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}
stop_pd() { kill -TERM "$PDPID" 2>/dev/null; wait "$PDPID"; }

# ---- no journal, no /dev/log: a warning, then every line on stderr ----
pol 100
unshare -m --propagation private bash -c "$NS_PRELUDE"'
	exec "$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN"' >"$TMP/err" 2>&1 &
PDPID=$!; PIDS+=($PDPID)
wait_for "$TMP/err" 'started:'; ok $? "without --foreground and without syslog, the start line is on stderr" ||
	sed 's/^/# /' "$TMP/err"
is "$(head -1 "$TMP/err")" "policyd: warning: no journal and no syslog at /dev/log (No such file or directory): log lines go to stderr" \
	"... after a warning that says why"
is "$(sendline 'FLUSHALL now')" 13 "FLUSHALL is denied"
wait_for "$TMP/err" '^policyd: deny rule=7 service=kv .* excerpt="FLUSHALL now\\n" instance=policyd-logs-[0-9]+$' 5
ok $? "... and the deny line is on stderr, with the instance (the pin directory's last part)"
stop_pd; is $? 0 "SIGTERM: exit 0"
grep -q '^policyd: stopped: nothing attached, pins removed instance=' "$TMP/err"; ok $? "the stop line too"

# ---- a syslog reader that stops reading ----
cat > "$TMP/reader.py" <<'EOF'
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log"); os.chmod("/dev/log", 0o666)
out = open(sys.argv[1], "ab", buffering=0)
while True:
    out.write(s.recv(65536).rstrip(b"\0") + b"\n")
EOF
pol 0 'name = "edge-7";'
: > "$TMP/sink.log"
unshare -m --propagation private bash -c "$NS_PRELUDE"'
	python3 "$TMP/reader.py" "$TMP/reader.out" & echo $! > "$TMP/reader.pid"
	for _ in $(seq 100); do [ -S /dev/log ] && break; sleep 0.05; done
	exec "$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN"' >"$TMP/err2" 2>&1 &
PDPID=$!; PIDS+=($PDPID)
wait_for "$TMP/reader.out" 'started:'; ok $? "policyd logs to the reader on /dev/log" || sed 's/^/# /' "$TMP/err2"
rpid=$(cat "$TMP/reader.pid"); PIDS+=("$rpid")
grep -Eq '^<29>.* policyd\[[0-9]+\]: started: .* instance=edge-7$' "$TMP/reader.out"
ok $? "... facility daemon, ident policyd, and daemon.name as the instance"
kill -STOP "$rpid"
# 12,000 audited lines (log_rate = 0: each one a log line) fill what the
# stopped reader's socket and policyd's queue hold (in sends of 200 lines,
# which the event ring buffer keeps up with); then a deny and a redirect,
# whose follow-up must not wait for the log
out=$(in_cgroup python3 -c '
import socket, sys, time
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port))
for _ in range(60):
    a.sendall(b"KEYS x\n" * 200); time.sleep(0.02)
time.sleep(1)
c = socket.create_connection(("127.0.0.1", port))
c.sendall(b"DEBUG while the log is stuck\n")
b = socket.create_connection(("127.0.0.1", port))
t0 = time.time()
try:
    b.send(b"FLUSHALL\n")
except OSError:
    pass
b.settimeout(30)
try:
    what = "eof" if not b.recv(1) else "data"
except socket.timeout:
    what = "timeout"
except OSError as e:
    what = "errno%d" % e.errno
print(what, int((time.time() - t0) * 1000))' "$port")
read -r what ms <<< "$out"
case $what in errno103|errno104|eof) ok 0 "the denied connection is aborted while the reader is stopped ($what)";;
	*) ok 1 "the denied connection is aborted while the reader is stopped: $out";; esac
ok $(( ms < 2000 * SLOW ? 0 : 1 )) "... within 2 s: $ms ms"
wait_for "$TMP/sink.log" 'data="DEBUG while the log is stuck\\n"' 2
ok $? "the diverted line is in the sink file while the reader is stopped"
kill -CONT "$rpid"
wait_for "$TMP/reader.out" 'policyd\[[0-9]+\]: [0-9]+ log lines lost: the log reader did not keep up and the queue of 4096 lines was full instance=edge-7$' 10
ok $? "once the reader reads again: how many lines were lost, counted"
lost=$(sed -En 's/.* ([0-9]+) log lines lost: .*/\1/p' "$TMP/reader.out" | awk '{ s += $1 } END { print s + 0 }')
audits=$(grep -c 'audit rule=8 ' "$TMP/reader.out")
events=$(sed -En 's/.*: ([0-9]+) events lost: the ring buffer was full.*/\1/p' "$TMP/reader.out" |
	awk '{ s += $1 } END { print s + 0 }')
ok $(( audits + lost + events >= 12000 && lost > 0 ? 0 : 1 )) \
	"... $audits audit lines arrived, $lost were counted lost (and $events events): none vanished"
stop_pd; is $? 0 "SIGTERM: exit 0"

# ---- log_rate under a flood: a bound for every kind of line ----
pol 100
"$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN" --foreground >"$TMP/flood" 2>&1 &
PDPID=$!; PIDS+=($PDPID)
wait_for "$TMP/flood" 'started:'; ok $? "policyd runs with log_rate = 100"
t0=$(date +%s.%N)
# for 3 s: 300 audited lines every 0.1 s on one connection, a denied line
# on a new connection every 0.02 s
denies=$(in_cgroup python3 -c '
import socket, sys, time
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port))
end = time.time() + 3; n = 0; nxt = 0
while time.time() < end:
    if time.time() >= nxt:
        a.sendall(b"KEYS y\n" * 300); nxt = time.time() + 0.1
    b = socket.create_connection(("127.0.0.1", port))
    try:
        b.send(b"FLUSHALL\n")
    except OSError:
        n += 1
    b.close(); time.sleep(0.02)
print(n)' "$port")
sleep 2.5
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%d", b - a + 1 }')
ev=$(grep -Ec '^policyd: (deny|audit) rule=' "$TMP/flood")
ok $(( ev <= 100 * secs ? 0 : 1 )) "at most log_rate event lines a second: $ev in $secs s"
sup=$(grep -c '^policyd: suppressed ' "$TMP/flood")
ok $(( sup >= 2 && sup <= secs ? 0 : 1 )) "one summary a second at most: $sup in $secs s" ||
	grep suppressed "$TMP/flood" | head -5 | sed 's/^/# /'
grep -Eq '^policyd: suppressed [0-9]+ audit, [0-9]+ deny lines over log_rate=100 per second instance=|^policyd: suppressed [0-9]+ deny, [0-9]+ audit lines over log_rate=100 per second instance=' "$TMP/flood"
ok $? "... counted by kind"
logged=$(grep -c '^policyd: deny rule=7 ' "$TMP/flood")
counted=$(grep '^policyd: suppressed ' "$TMP/flood" | grep -Eo '[0-9]+ deny' | awk '{ s += $1 } END { print s + 0 }')
is "$(( logged + counted ))" "$denies" "every deny ($denies) is logged ($logged) or counted ($counted)"
is "$(grep -c 'events lost' "$TMP/flood")" 0 "no event was lost to the ring buffer (else the count above could not add up)"
stop_pd; is $? 0 "SIGTERM: exit 0"

# ---- the journal: structured fields ----
jd=$(command -v systemd-journald || echo /lib/systemd/systemd-journald)
if [ -x "$jd" ] && command -v journalctl >/dev/null; then
	pol 100 'name = "edge-7";'
	unshare -m --propagation private bash -c "$NS_PRELUDE"'
		mkdir -p /run/systemd/journal /run/log/journal
		[ ! -d /var/log/journal ] || mount -t tmpfs policyd-test-journal /var/log/journal
		'"$jd"' >"$TMP/journald.out" 2>&1 & echo $! > "$TMP/journald.pid"
		for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
		"$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN" &
		echo $! > "$TMP/pd.pid"
		while [ ! -e "$TMP/stop" ]; do sleep 0.1; done
		kill -TERM $(cat "$TMP/pd.pid"); wait $(cat "$TMP/pd.pid") || true
		journalctl -D /run/log/journal -o json --no-pager > "$TMP/journal.json"
		kill $(cat "$TMP/journald.pid")' >"$TMP/err3" 2>&1 &
	NSPID=$!; PIDS+=($NSPID)
	for _ in $(seq $((100 * SLOW))); do [ -e "$PIN/pd_config" ] && break; sleep 0.1; done
	sleep 0.5
	is "$(sendline 'FLUSHALL from the journal test')" 13 "with journald there: FLUSHALL is denied"
	is "$(sendline 'KEYS *')" 0 "... KEYS passes, audited"
	sleep 1
	touch "$TMP/stop"; wait "$NSPID"
	python3 - "$TMP/journal.json" <<'EOF' | sed 's/^/# /'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("SYSLOG_IDENTIFIER") == "policyd":
        print({k: v for k, v in e.items() if not k.startswith("_")})
EOF
	check() { python3 - "$TMP/journal.json" "$@" <<'EOF'
import json, sys
want = dict(a.split("=", 1) for a in sys.argv[2:])
for line in open(sys.argv[1]):
    e = json.loads(line)
    if all(e.get(k) == v or (v.endswith("*") and str(e.get(k, "")).startswith(v[:-1]))
           for k, v in want.items()):
        sys.exit(0)
sys.exit(1)
EOF
	}
	check SYSLOG_IDENTIFIER=policyd POLICYD_ACTION=deny POLICYD_RULE=7 POLICYD_SERVICE=kv \
		POLICYD_COMM=python3 POLICYD_UID=0 POLICYD_DST="127.0.0.1:$port" POLICYD_LEN=31 \
		POLICYD_INSTANCE=edge-7 PRIORITY=4 SYSLOG_FACILITY=3 'MESSAGE=deny rule=7 service=kv *'
	ok $? "the deny is a journal entry with POLICYD_ACTION, _RULE, _SERVICE ... fields"
	check POLICYD_ACTION=audit POLICYD_RULE=8 'POLICYD_EXCERPT=KEYS *\n' PRIORITY=6
	ok $? "the audit entry: POLICYD_EXCERPT, priority info"
	check SYSLOG_IDENTIFIER=policyd 'MESSAGE=started: *' POLICYD_INSTANCE=edge-7
	ok $? "the start line is in the journal, with the instance"
else
	ok 0 "# SKIP systemd-journald is not installed"
fi
done_testing
