#!/usr/bin/env bash
# on_exit = "keep": the pinned programs and maps go on enforcing after the
# daemon stops or is SIGKILLed; a new policyd takes the kept state over
# without a gap and applies its policy file; pins of an older layout, a
# policy too big for the kept maps and a second live instance are refused
# and leave the kept enforcement as it was.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
env_setup keep || skip_all "cannot make a cgroup"

port=$(free_port)
layout=$("$PD" --version | sed -n 's/.*map layout \([0-9]*\).*/\1/p')
pol() { local f=$1 e=$2; shift 2; kv_policy "$f" 1 "on_exit = \"$e\";" "$@"; }

# a listener that keeps every byte it receives, outside the cgroup
start_recorder "$port" "$TMP/server.out"
wait_port "$port" || fail_now "the test's server listens on 127.0.0.1:$port"
# a connection from the cgroup that stays open across the restarts
coproc CONN { in_cgroup python3 -u -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
for line in sys.stdin:
    try:
        print(s.send(line.encode()))
    except OSError as e:
        print(-e.errno)
' "$port"; }
PIDS+=($CONN_PID)
say() { echo "$1" >&"${CONN[1]}"; read -r -t 10 r <&"${CONN[0]}"; echo "$r"; }
# attacker: FLUSHALL on a new connection every few ms until told to stop;
# prints how many sends went through
attack() {
	in_cgroup python3 -c '
import os, socket, sys, time
passed = 0
while not os.path.exists(sys.argv[2]):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    try:
        s.send(b"FLUSHALL attack\n"); passed += 1
    except OSError:
        pass
    s.close(); time.sleep(0.003)
print(passed)' "$port" "$TMP/stop-attack" > "$TMP/attack.out" &
	ATTACK=$!
	PIDS+=($ATTACK)
}
stop_attack() { touch "$TMP/stop-attack"; wait "$ATTACK"; rm -f "$TMP/stop-attack"; }
config() {  # a field of the pinned pd_config
	bpftool -j map lookup pinned "$PIN/pd_config" key 0 0 0 0 |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["formatted"]["value"][sys.argv[1]])' "$1"
}

pol "$TMP/p.conf" keep FLUSHALL
start_policyd "$TMP/p.conf"; ok $? "policyd runs with on_exit = keep"
grep -q 'on_exit keep' "$TMP/policyd.log"; ok $? "... and says so"
is "$(say 'SET a 1')" 8 "an open connection passes an allowed line"
is "$(sendline FLUSHALL)" 13 "FLUSHALL is denied"

attack
reaper=$(pgrep -P "$PDPID" | head -1)
kill -KILL "$PDPID"; wait "$PDPID" 2>/dev/null
sleep 0.5
[ -e "$PIN/pd_config" ] && [ -e "$PIN/link_sockops" ]; ok $? "SIGKILL: the pins stay"
bpftool cgroup show "$CG" | grep -q sock_ops; ok $? "SIGKILL: sock_ops stays attached to the cgroup"
st=$(ps -o stat= -p "$reaper"); case $st in ""|Z*) ok 0 "the reaper left, keeping the pins";;
	*) ok 1 "the reaper left, keeping the pins: $st";; esac
is "$(sendline FLUSHALL)" 13 "with no daemon, FLUSHALL on a new connection is still denied"
is "$(say 'SET b 2')" 8 "with no daemon, the open connection still passes allowed lines"

pol "$TMP/p.conf" keep FLUSHALL SHUTDOWN
: > "$TMP/policyd.log"
start_policyd "$TMP/p.conf"; ok $? "a restarted policyd runs over the kept pins"
grep -q "took over the enforcement kept under $PIN (policy generation 1, layout $layout) without a gap; this policy is generation 2" "$TMP/policyd.log"
ok $? "... and says it took them over"
sleep 0.3
stop_attack
is "$(cat "$TMP/attack.out")" 0 "not one FLUSHALL got through across SIGKILL and restart"
grep -c 'FLUSHALL' "$TMP/server.out" | grep -qx 0; ok $? "... the server received none"
is "$(config generation)" 2 "the kept state runs policy generation 2"
is "$(sendline SHUTDOWN)" 13 "the changed policy file applies: SHUTDOWN is denied"
n=$("$PD" stats --pin-dir "$PIN" | awk '$1 == 1 { print $4 }')
ok $(( n >= 2 ? 0 : 1 )) "rule 1's counter carried over the restart ($n denies)"
is "$(say 'SET c 3')" 8 "the open connection still passes allowed lines"
for _ in $(seq 50); do [ "$(grep -c '^SET [abc] [123]$' "$TMP/server.out")" = 3 ] && break; sleep 0.05; done
grep -c '^SET [abc] [123]$' "$TMP/server.out" | grep -qx 3; ok $? "... and the server has all three"

out=$("$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN" 2>&1); rc=$?
is "$rc" 3 "a second live instance on the same pins: exit 3"
case $out in *"still running"*) ok 0 "... saying why";; *) ok 1 "... saying why: $out";; esac

stop_policyd; is $? 0 "SIGTERM with on_exit = keep: exit 0"
grep -q "stopped: the pins under $PIN keep enforcing policy generation 2" "$TMP/policyd.log"
ok $? "... saying the pins keep enforcing"
is "$(sendline SHUTDOWN)" 13 "after SIGTERM the kept policy enforces"

# pins of another layout are never run over
hex=$(bpftool -j map lookup pinned "$PIN/pd_config" key 0 0 0 0 |
	python3 -c 'import json, sys; v = json.load(sys.stdin)["value"]; v[16:20] = ["0x00"] * 4; print(" ".join(v))')
# shellcheck disable=SC2086
bpftool map update pinned "$PIN/pd_config" key 0 0 0 0 value hex $(echo $hex | sed 's/0x//g')
is "$(config layout)" 0 "the pins now claim layout 0"
out=$("$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN" 2>&1); rc=$?
is "$rc" 3 "pins of an older layout: exit 3"
case $out in *"have layout 0, this policyd reads layout $layout"*) ok 0 "... saying why";;
	*) ok 1 "... saying why: $out";; esac
[ -e "$PIN/pd_config" ]; ok $? "... the pins are left"
is "$(sendline FLUSHALL)" 13 "... and still enforce"
# shellcheck disable=SC2086
bpftool map update pinned "$PIN/pd_config" key 0 0 0 0 value hex \
	$(echo $hex | sed 's/0x//g' | awk -v l="$(printf %02x "$layout")" '{ $17 = l; print }')

# a policy larger than the kept maps is refused; the kept one goes on
big=$(python3 -c 'import random; r = random.Random(7); print(",".join("{ id = %d; action = \"deny\"; contains = \"%s\"; }" % (i + 3, "".join(r.choice("abcdefghij") for _ in range(200))) for i in range(4)))')
sed "s/); } );\$/, $big ); } );/" "$TMP/p.conf" > "$TMP/big.conf"
"$PD" check -c "$TMP/big.conf" >/dev/null; ok $? "the larger policy is valid"
out=$("$PD" run -c "$TMP/big.conf" --cgroup "$CG" --pin-dir "$PIN" 2>&1); rc=$?
is "$rc" 3 "a policy too big for the kept maps: exit 3"
case $out in *"the kept policy keeps enforcing"*) ok 0 "... saying the kept policy goes on";;
	*) ok 1 "... saying why: $out";; esac
is "$(config generation)" 2 "... which it does (generation 2)"
is "$(sendline SHUTDOWN)" 13 "... and enforces"

# taking over with on_exit = detach, then stopping, ends everything
pol "$TMP/d.conf" detach FLUSHALL
start_policyd "$TMP/d.conf"; ok $? "policyd with on_exit = detach takes the kept state over"
is "$(sendline SHUTDOWN)" 0 "its policy applies: SHUTDOWN passes"
stop_policyd; is $? 0 "SIGTERM: exit 0"
[ ! -e "$PIN" ]; ok $? "the pins are removed"
is "$(bpftool cgroup show "$CG")" "" "nothing attached to the cgroup"
is "$(sendline FLUSHALL)" 0 "nothing policed any more"

# a reload that changes on_exit also changes what a SIGKILL leaves behind
pol "$TMP/p.conf" keep FLUSHALL
start_policyd "$TMP/p.conf"; ok $? "policyd runs with on_exit = keep"
pol "$TMP/p.conf" detach FLUSHALL
kill -HUP "$PDPID"
wait_for 10 grep -q 'reloaded:' "$TMP/policyd.log"; ok $? "reloaded to on_exit = detach"
kill -KILL "$PDPID"; wait "$PDPID" 2>/dev/null
for _ in $(seq 50); do [ -e "$PIN" ] || break; sleep 0.1; done
[ ! -e "$PIN" ]; ok $? "SIGKILL after that reload: the reaper removed the pins"
sleep 0.3
is "$(sendline FLUSHALL)" 0 "... and nothing is policed"
done_testing
