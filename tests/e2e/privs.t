#!/usr/bin/env bash
# After setup policyd runs as an unprivileged user with no capabilities and
# no_new_privs, and still enforces and reloads; its reaper keeps uid 0 but
# no capability; its aborter runs as the same user with CAP_NET_ADMIN alone
# (tests/e2e/abort.t: what it does); a SIGKILLed daemon still ends up
# detached (on_exit detach), and its aborter ends with it.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
env_setup privs || skip_all "cannot make a cgroup"

port=$(free_port)
python3 -c '
import socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(64)
while True:
    c, _ = ls.accept(); c.close()' "$port" >"$TMP/server.log" 2>&1 &
PIDS+=($!)
wait_port "$port" || fail_now "the test's server listens on 127.0.0.1:$port"
pol() {
	printf 'version = 1;\nservices = ( { name = "kv"; ports = [ %s ]; framing = "line"; rules = (\n  { id = 1; action = "deny"; contains = "%s"; } ); } );\n' "$port" "$1" > "$TMP/p.conf"
}
status() { awk -v k="$2:" '$1 == k { $1 = ""; sub(/^ /, ""); print }' "/proc/$1/status"; }

pol FLUSHALL
start_policyd "$TMP/p.conf"; ok $? "policyd runs"
grep -q 'running as nobody (uid [1-9][0-9]*, gid [1-9][0-9]*), no capabilities' "$TMP/policyd.log"
ok $? "it says it runs as nobody"
uids=$(status "$PDPID" Uid); gids=$(status "$PDPID" Gid)
nobody=$(id -u nobody); nogroup=$(id -g nobody)
is "$uids" "$nobody $nobody $nobody $nobody" "real, effective, saved and fs uid are nobody's"
is "$gids" "$nogroup $nogroup $nogroup $nogroup" "every gid is nobody's"
is "$(status "$PDPID" Groups)" "" "no supplementary groups"
for c in CapInh CapPrm CapEff CapAmb; do
	is "$(status "$PDPID" $c)" "0000000000000000" "$c is empty"
done
is "$(status "$PDPID" NoNewPrivs)" "1" "NoNewPrivs: 1"
reaper=$(pgrep -P "$PDPID" -x policyd-reaper)
ok $? "the reaper is policyd's child"
is "$(status "$reaper" CapEff)" "0000000000000000" "the reaper has no capability"
is "$(status "$reaper" NoNewPrivs)" "1" "the reaper has NoNewPrivs: 1"
n=$(ls -l "/proc/$reaper/fd" | grep -c 'anon_inode:bpf')
is "$n" "0" "the reaper holds no BPF object"

aborter=$(pgrep -P "$PDPID" -x policyd-abort)
ok $? "the aborter is policyd's child"
is "$(status "$aborter" Uid)" "$nobody $nobody $nobody $nobody" "the aborter's uids are nobody's"
is "$(status "$aborter" Gid)" "$nogroup $nogroup $nogroup $nogroup" "... and its gids"
is "$(status "$aborter" Groups)" "" "... no supplementary groups"
# CAP_NET_ADMIN is capability 12
for c in CapPrm CapEff CapBnd; do
	is "$(status "$aborter" $c)" "0000000000001000" "the aborter's $c is CAP_NET_ADMIN alone"
done
for c in CapInh CapAmb; do
	is "$(status "$aborter" $c)" "0000000000000000" "the aborter's $c is empty"
done
is "$(status "$aborter" NoNewPrivs)" "1" "the aborter has NoNewPrivs: 1"
n=$(ls -l "/proc/$aborter/fd" | grep -c 'anon_inode:bpf')
is "$n" "0" "the aborter holds no BPF object"

is "$(sendline FLUSHALL)" 13 "enforcement works after the drop (EACCES)"
is "$(sendline SHUTDOWN)" 0 "SHUTDOWN passes under policy 1"
pol SHUTDOWN
kill -HUP "$PDPID"
wait_for 10 grep -q 'reloaded: .* generation 2' "$TMP/policyd.log"; ok $? "SIGHUP reload works unprivileged"
is "$(sendline SHUTDOWN)" 13 "the new rule enforces"
is "$(sendline FLUSHALL)" 0 "the old rule is gone"

kill -KILL "$PDPID"; wait "$PDPID" 2>/dev/null
for _ in $(seq 50); do [ -e "$PIN" ] || break; sleep 0.1; done
[ ! -e "$PIN" ]; ok $? "SIGKILL: the reaper removed the pins (on_exit detach)"
sleep 0.3
is "$(bpftool cgroup show "$CG")" "" "SIGKILL: nothing attached to the cgroup"
is "$(sendline SHUTDOWN)" 0 "SIGKILL: nothing policed any more"
for who in reaper aborter; do
	st=$(ps -o stat= -p "${!who}")
	case $st in ''|Z*) ok 0 "the $who exited (a zombie at most, until init reaps it)";;
	*) ok 1 "the $who exited: it is still running ($st)";; esac
done
done_testing
