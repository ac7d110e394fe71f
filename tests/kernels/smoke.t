#!/usr/bin/env bash
# The essentials on the running kernel, the kernel matrix's short run
# (make check-kernels SMOKE=1): policyd starts and names what this kernel
# lacks; the real redis-cli's FLUSHALL is refused and logged with its
# sender; a denied connection is aborted where sock_diag can destroy it
# and stays open with its sends failing where not, as the start line
# says; a reload takes effect; on_exit = "keep" enforces with no daemon,
# and a new policyd takes over; a stop detaches everything. Waits scale
# with PD_SLOW (an emulated guest is 5-35x slower).
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
command -v redis-server >/dev/null || skip_all "redis-server is not installed"
env_setup kernels-smoke || skip_all "cannot make a cgroup"
slow=${PD_SLOW:-1}

port=$(free_port)
# conf FILE ON_EXIT [RULE]: the Redis profile on $port, with RULE added
conf() {
	sed -e "s/\b6379\b/$port/" -e "s/^daemon = {/daemon = { on_exit = \"$2\";/" \
		-e "s/^    rules = (/    rules = ( ${3:-}/" policy-examples/redis.conf > "$1"
}
# wait_log PATTERN: until the log has a line matching PATTERN (ERE)
wait_log() {
	local i
	for i in $(seq $((100 * slow))); do
		grep -qE "$1" "$TMP/policyd.log" && return 0
		sleep 0.1
	done
	return 1
}
# start_pd CONF: policyd run --foreground, until it says started
start_pd() {
	"$PD" run -c "$1" --cgroup "$CG" --pin-dir "$PIN" --foreground >"$TMP/policyd.log" 2>&1 &
	PDPID=$!
	PIDS+=($PDPID)
	for _ in $(seq $((300 * slow))); do
		grep -q 'started:' "$TMP/policyd.log" && return 0
		kill -0 "$PDPID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
diag() { sed 's/^/#   /' "$TMP/policyd.log"; }
rc() { in_cgroup redis-cli -p "$port" "$@" 2>&1; }

start_redis "$port"; ok $? "redis-server on 127.0.0.1:$port"
conf "$TMP/keep.conf" keep
if ! start_pd "$TMP/keep.conf"; then
	ok 1 "policyd starts on $(uname -r)"
	diag
	echo "Bail out! policyd did not start: nothing else can be tested"
	exit 1
fi
ok 0 "policyd starts on $(uname -r)"

# aborts go through sock_diag (CONFIG_INET_DIAG_DESTROY, tcp_diag): where
# the kernel lacks them, the start says what is lost
lacks='warning: kernel .* cannot destroy a TCP socket through sock_diag .* a denied connection is not aborted'
old=0
grep -qE "^policyd: $lacks" "$TMP/policyd.log" && old=1
grep -q 'warning: .*lacks' "$TMP/policyd.log"
ok $((! $?)) "the start names no missing kernel feature" || diag

is "$(rc SET k v)" "OK" "SET passes"
is "$(rc FLUSHALL)" "Error: Permission denied" "FLUSHALL from redis-cli is refused"
is "$(redis-cli -p "$port" DBSIZE)" "1" "... and the data is still there"
wait_log '^policyd: deny rule=100 service=redis pid=[0-9]+ comm=redis-cli uid=0 '
ok $? "the deny line names rule, sender and its comm" || diag

# a denied connection: the send fails with EACCES; then it is aborted
# (ECONNABORTED) or, where the kernel cannot destroy a socket, stays open
got=$(in_cgroup python3 -c '
import errno, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
try:
    s.send(b"*1\r\n$8\r\nFLUSHALL\r\n"); print("sent")
except OSError as e:
    print(errno.errorcode[e.errno])
s.settimeout(float(sys.argv[2]))
try:
    print("read", s.recv(100))
except socket.timeout:
    print("open")
except OSError as e:
    print(errno.errorcode[e.errno])
' "$port" "$((5 * slow))" | tr '\n' ' ')
if [ "$old" = 1 ]; then
	is "$got" "EACCES open " "a denied send fails with EACCES and, without SOCK_DESTROY, the connection stays open"
else
	is "$got" "EACCES ECONNABORTED " "a denied send fails with EACCES, then the connection is aborted"
fi

conf "$TMP/keep.conf" keep '{ id = 900; action = "deny"; command = "GET"; },'
kill -HUP "$PDPID"
wait_log 'reloaded: policy .* is generation 2'; ok $? "SIGHUP reloads (generation 2)" || diag
is "$(rc GET k)" "Error: Permission denied" "... and the new rule refuses GET"
is "$(rc SET k w)" "OK" "... while SET still passes"

kill -TERM "$PDPID"; wait "$PDPID"; is $? 0 "SIGTERM with on_exit = keep: exit 0"
grep -q "stopped: the pins under $PIN keep enforcing policy generation 2" "$TMP/policyd.log"
ok $? "... saying the pins keep enforcing" || diag
is "$(rc FLUSHALL)" "Error: Permission denied" "with no daemon, FLUSHALL is still refused"
is "$(rc GET k)" "Error: Permission denied" "... and GET, by the kept policy"

conf "$TMP/detach.conf" detach
start_pd "$TMP/detach.conf"; ok $? "a new policyd starts over the kept pins" || diag
grep -q "took over the enforcement kept under $PIN (policy generation 2" "$TMP/policyd.log"
ok $? "... and takes over the kept enforcement" || diag
is "$(rc GET k)" "w" "its policy applies: GET passes again"
is "$(rc FLUSHALL)" "Error: Permission denied" "... and FLUSHALL is still refused"

kill -TERM "$PDPID"; wait "$PDPID"; is $? 0 "SIGTERM with on_exit = detach: exit 0"
[ ! -e "$PIN" ]; ok $? "pins removed"
is "$(bpftool cgroup show "$CG")" "" "nothing attached to the cgroup"
is "$(rc FLUSHALL)" "OK" "after the stop nothing is refused"
done_testing
