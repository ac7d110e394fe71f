#!/usr/bin/env bash
# Monitor mode: nothing is dropped, diverted or aborted; every deny and
# redirect that would have happened is logged as would-deny/would-redirect
# with the same keys and counted apart (stats, --json, OpenMetrics); a
# SIGHUP switches modes both ways; `run --monitor` overrides the policy.
# With a real redis-server (framing none) and a line-framed recording
# server (splits, pipelining).
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
command -v redis-server >/dev/null || skip_all "redis-server is not installed"
env_setup monitor || skip_all "cannot make a cgroup"

rport=$(free_port)
port=$(free_port)
policy() {   # policy MODE: the test policy in $TMP/p.conf
	cat > "$TMP/p.conf" <<EOF
version = 1;
daemon = { mode = "$1"; };
sinks = ( { name = "q"; file = "$TMP/q.log"; } );
services = (
  { name = "redis"; ports = [ $rport ];
    rules = ( { id = 100; action = "deny"; contains = "FLUSHALL"; nocase = true; } ); },
  { name = "kv"; ports = [ $port ]; framing = "line";
    rules = ( { id = 200; action = "deny"; prefix = "KILL"; },
              { id = 201; action = "redirect"; prefix = "DEBUG"; sink = "q"; },
              { id = 202; action = "audit"; contains = "KEYS"; } ); }
);
EOF
}
policy monitor

# a recording server outside the cgroup: every byte of every connection
start_recorder "$port" "$TMP/server.out"
for _ in $(seq 400); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.05; done
start_redis "$rport"; ok $? "redis-server on 127.0.0.1:$rport"

# sends CHUNK...: one connection from the cgroup, one send per argument
# (Python escapes), 50 ms apart; prints each send's result (bytes or
# -errno), then whether the connection was still open (a read sees no reset)
sends() { in_cgroup python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
res = []
for a in sys.argv[2:]:
    try:
        res.append(str(s.send(a.encode().decode("unicode_escape").encode("latin-1"))))
    except OSError as e:
        res.append(str(-e.errno))
    time.sleep(0.05)
s.settimeout(0.2)
try:
    s.recv(1); res.append("closed")
except socket.timeout:
    res.append("open")
except OSError as e:
    res.append("reset")
print(" ".join(res))' "$port" "$@"; }
rc() { in_cgroup redis-cli -p "$rport" "$@" 2>&1; }
received() { cat "$TMP/server.out" 2>/dev/null; }

start_policyd "$TMP/p.conf"; ok $? "policyd runs with mode = \"monitor\""
grep -q 'started: .* mode monitor (nothing is dropped' "$TMP/policyd.log"; ok $? "... and says so at start"

# framing none, a real server: the command runs, the log says it would not have
is "$(rc SET k v)" "OK" "SET works"
is "$(rc FLUSHALL)" "OK" "FLUSHALL runs in monitor mode"
is "$(redis-cli -p "$rport" DBSIZE)" "0" "... the server really flushed"
sleep 0.3
grep -qE '^policyd: would-deny rule=100 service=redis pid=[0-9]+ comm=redis-cli uid=0 src=127\.0\.0\.1:[0-9]+ dst=127\.0\.0\.1:'"$rport"' len=18 excerpt="\*1\\r\\n\$8\\r\\nFLUSHALL\\r\\n" instance=[^ ]+$' "$TMP/policyd.log"
ok $? "a would-deny line with the keys of a deny line"
! grep -q '^policyd: deny ' "$TMP/policyd.log"; ok $? "no deny line"

# line framing: a denied line, a diverted one, one split across sends,
# and a denied line between allowed ones in one send
is "$(sends 'KILL -9\n' 'DEBUG x\n' 'KI' 'LL split\n' 'a\nKILL y\nKEYS b\n' 'after\n')" \
	"8 8 2 9 16 6 open" "every send succeeds, the connection stays open"
sleep 0.3
is "$(received)" "$(printf 'KILL -9\nDEBUG x\nKILL split\na\nKILL y\nKEYS b\nafter\n')" \
	"the server received every byte, in order"
is "$(grep -c '^policyd: would-deny rule=200 service=kv ' "$TMP/policyd.log")" 3 \
	"a would-deny line per denied line (one for the line split across sends)"
grep -qE '^policyd: would-deny rule=200 service=kv .* len=11 excerpt="LL split\\n" instance=[^ ]+$' "$TMP/policyd.log"
ok $? "... the split line judged once at its end (len=11)"
grep -qE '^policyd: would-redirect rule=201 service=kv .* len=8 sink=q excerpt="DEBUG x\\n" instance=[^ ]+$' "$TMP/policyd.log"
ok $? "a would-redirect line naming the sink"
grep -qE '^policyd: audit rule=202 service=kv .* excerpt="KEYS b\\n"' "$TMP/policyd.log"
ok $? "audit lines as in enforce mode"
[ ! -s "$TMP/q.log" ]; ok $? "nothing reached the sink"

# counted apart
json=$("$PD" stats --pin-dir "$PIN" --json)
get() { echo "$json" | python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }
is "$(get 'print(d["mode"])')" monitor "stats --json: mode monitor"
is "$(get 'r=[r for r in d["rules"] if r["rule"]==200][0]; print(r["messages"], r["would_messages"], r["would_bytes"])')" \
	"0 3 26" "rule 200: 0 messages denied, 3 would-be (26 bytes)"
is "$(get 'r=[r for r in d["rules"] if r["rule"]==201][0]; print(r["messages"], r["would_messages"])')" \
	"0 1" "rule 201: 1 would-be redirect"
is "$(get 'r=[r for r in d["rules"] if r["rule"]==100][0]; print(r["messages"], r["would_messages"])')" \
	"0 1" "rule 100: 1 would-be deny"
is "$(get 'print(" ".join(r["action"] for r in d["defaults"]))')" "allow allow" \
	"defaults with their action"
"$PD" stats --pin-dir "$PIN" > "$TMP/stats.txt"
grep -qE '^200 +deny +kv +0 +0 +3 +26$' "$TMP/stats.txt"; ok $? "stats: would-msgs and would-bytes columns"
grep -qE '^policy generation 1, mode monitor, started [0-9T:-]+Z, 0 reloads' "$TMP/stats.txt"
ok $? "stats: the mode and the start in the first line" || sed 's/^/# /' "$TMP/stats.txt"

# the OpenMetrics exposition, read by a parser
om() { "$PD" stats --pin-dir "$PIN" --format openmetrics; }
om > "$TMP/om.txt"
is "$(tail -1 "$TMP/om.txt")" "# EOF" "openmetrics ends with # EOF"
grep -qx 'policyd_rule_would_messages_total{service="kv",rule="200",action="deny"} 3' "$TMP/om.txt"
ok $? "openmetrics: would-be denies per rule"
grep -qx 'policyd_monitor_mode 1' "$TMP/om.txt"; ok $? "openmetrics: monitor mode 1"
grep -qx 'policyd_troubles_total{cause="events_lost"} 0' "$TMP/om.txt"; ok $? "openmetrics: trouble counters also at 0"
grep -qx 'policyd_rule_messages_total{service="kv",rule="default",action="allow"} [1-9][0-9]*' "$TMP/om.txt"
ok $? "openmetrics: the service default with its action"
# a strict parser: prometheus_client's OpenMetrics parser (Debian's python3)
if /usr/bin/python3 -c 'import prometheus_client' 2>/dev/null; then
	out=$(/usr/bin/python3 - "$TMP/om.txt" <<'PY' 2>&1
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
def val(fam, **labels):
    return [s.value for s in fams[fam].samples
            if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items())][0]
print(fams["policyd_rule_would_messages"].type, fams["policyd_rule_bytes"].unit,
      *map(int, (val("policyd_rule_would_messages", rule="200"), val("policyd_rule_would_bytes", rule="200"),
      val("policyd_rule_messages", rule="200"))), len(fams["policyd_troubles"].samples),
      fams["policyd_start_time_seconds"].samples[0].value > 1.7e9)
PY
)
	causes=$(grep -c '^trouble ' "$TMP/stats.txt")
	is "$out" "counter bytes 3 26 0 $causes True" "the OpenMetrics parser reads it: types, units, values, the $causes trouble causes"
else
	ok 0 "# SKIP python3-prometheus-client is not installed (make deps)"
fi
"$PD" stats --pin-dir "$PIN" --format prometheus > "$TMP/prom.txt"
if /usr/bin/python3 -c 'import prometheus_client' 2>/dev/null; then
	out=$(/usr/bin/python3 - "$TMP/prom.txt" <<'PY' 2>&1
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
print(fams["policyd_rule_would_messages"].type, fams["policyd_reloads"].type,
      fams["policyd_policed_connections"].type)
PY
)
	is "$out" "counter counter gauge" "--format prometheus: the text format 0.0.4 parser reads it with its types"
fi
if command -v prometheus-node-exporter >/dev/null; then
	mkdir "$TMP/textfile"
	"$PD" stats --pin-dir "$PIN" --format prometheus > "$TMP/textfile/policyd.prom.$$" &&
		mv "$TMP/textfile/policyd.prom.$$" "$TMP/textfile/policyd.prom"
	neport=$(free_port)
	prometheus-node-exporter --collector.disable-defaults --collector.textfile \
		--collector.textfile.directory="$TMP/textfile" --web.listen-address="127.0.0.1:$neport" \
		>"$TMP/ne.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do curl -s -o "$TMP/scrape.txt" "http://127.0.0.1:$neport/metrics" && break; sleep 0.1; done
	grep -qx 'node_textfile_scrape_error 0' "$TMP/scrape.txt" &&
		grep -qx '# TYPE policyd_rule_would_messages_total counter' "$TMP/scrape.txt" &&
		grep -qx 'policyd_rule_would_messages_total{action="deny",rule="200",service="kv"} 3' "$TMP/scrape.txt"
	ok $? "node_exporter's textfile collector serves the metrics, typed, without error"
fi
err=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$PD" stats --pin-dir "$PIN" 2>&1); st=$?
is "$st" 3 "stats as nobody: exit 3"
case $err in *"permission denied reading the pins in $PIN"*"CAP_BPF or CAP_SYS_ADMIN; run as root"*) ok 0 "... saying which permission it lacks";;
	*) ok 1 "... saying which permission it lacks: $err";; esac

# SIGHUP to enforce: the same rules now act
policy enforce
kill -HUP "$PDPID"; sleep 0.5
grep -q 'reloaded: .* generation 2 .* mode enforce' "$TMP/policyd.log"; ok $? "SIGHUP: mode enforce"
: > "$TMP/server.out"
# (the connection is then aborted: abort.t, dataplane.t and boundary.t
# check that)
r=$(sends 'ok\n' 'KILL -9\n')
is "${r% *}" "3 -13" "enforce: the denied line fails with EACCES"
is "$(rc FLUSHALL)" "Error: Permission denied" "enforce: FLUSHALL refused"
sleep 0.3
is "$(received)" "ok" "the server got only the allowed line"
grep -qE '^policyd: deny rule=200 service=kv ' "$TMP/policyd.log"; ok $? "a deny line"
is "$("$PD" stats --pin-dir "$PIN" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["mode"], d["reloads"], d["last_reload"], [(r["messages"], r["would_messages"]) for r in d["rules"] if r["rule"]==200][0])')" \
	"enforce 1 ok (1, 3)" "stats: enforce, one reload, ok; real and would-be counted apart"

# a refused reload is counted and keeps the mode
echo 'version = 1; daemon = { mode = "nope"; };' > "$TMP/p.conf"
kill -HUP "$PDPID"; sleep 0.5
om > "$TMP/om.txt"
grep -qx 'policyd_reloads_total 2' "$TMP/om.txt" && grep -qx 'policyd_reloads_refused_total 1' "$TMP/om.txt" &&
	grep -qx 'policyd_last_reload_success 0' "$TMP/om.txt"
ok $? "openmetrics: 2 reloads, 1 refused, the last one failed"

# and back to monitor
policy monitor
kill -HUP "$PDPID"; sleep 0.5
is "$(sends 'KILL -9\n' 'more\n')" "8 5 open" "SIGHUP back to monitor: the denied line passes again"
stop_policyd; ok $? "policyd stops"

# run --monitor over a policy that says enforce
policy enforce
start_policyd "$TMP/p.conf" --monitor; ok $? "policyd run --monitor"
is "$(sends 'KILL -9\n')" "8 open" "--monitor: the denied line passes"
sleep 0.3
grep -q '^policyd: would-deny rule=200' "$TMP/policyd.log"; ok $? "... logged as would-deny"
kill -HUP "$PDPID"; sleep 0.5
is "$(sends 'KILL -9\n')" "8 open" "--monitor holds across a reload of a policy that says enforce"
stop_policyd; ok $? "policyd stops"
done_testing
