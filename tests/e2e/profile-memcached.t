#!/usr/bin/env bash
# policy-examples/memcached.conf against a real memcached: a client's
# normal text-protocol workload passes untouched; the administrative
# commands, in the forms memcached accepts, are refused and the cache
# survives them.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
command -v memcached >/dev/null || skip_all "memcached is not installed (make deps)"
env_setup memcached || skip_all "cannot make a cgroup"

port=$(free_port)
sed "s/ports = \[ 11211 \]/ports = [ $port ]/" policy-examples/memcached.conf > "$TMP/p.conf"
grep -q "ports = \[ $port \]" "$TMP/p.conf"; ok $? "the profile's port is adapted to $port"
memcached -B ascii -l 127.0.0.1 -p "$port" -U 0 -u nobody -m 16 >"$TMP/memcached.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null && break; sleep 0.1; done
start_policyd "$TMP/p.conf"; ok $? "policyd runs the memcached profile"

# mc [in|out] SCRIPT: run a text-protocol session (one send per element)
# from inside or outside the cgroup; prints each reply, or -errno
mc() {
	local where=$1; shift
	local run=(python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(3)
for req in sys.argv[2:]:
    req = req.encode().decode("unicode_escape").encode("latin-1")
    try:
        s.sendall(req)
    except OSError as e:
        print(-e.errno); break
    time.sleep(0.05)
    try:
        print(repr(s.recv(65536))[2:-1])
    except socket.timeout:
        print("(no reply)")
' "$port" "$@")
	if [ "$where" = in ]; then in_cgroup "${run[@]}"; else "${run[@]}"; fi
}

out=$(mc in 'set watchlist 0 0 5\r\nhello\r\n' 'get watchlist\r\n' \
	'add user:shutdown_at 0 0 2\r\n42\r\n' 'replace watchlist 0 0 3\r\nbye\r\n' \
	'append watchlist 0 0 1\r\n!\r\n' 'prepend watchlist 0 0 1\r\n<\r\n' \
	'set n 0 0 1\r\n5\r\n' 'incr n 10\r\n' 'decr n 3\r\n' 'touch n 100\r\n' \
	'gat 100 n\r\n' 'set lru_cache 0 0 12\r\n12 slabs, ok\r\n' 'get lru_cache stats_key\r\n' \
	'ms meta 2\r\nhi\r\n' 'mg meta v\r\n' 'md meta\r\n' 'mn\r\n' 'delete n\r\n' \
	'stats\r\n' 'version\r\n')
want="STORED\r\n
VALUE watchlist 0 5\r\nhello\r\nEND\r\n
STORED\r\n
STORED\r\n
STORED\r\n
STORED\r\n
STORED\r\n
15\r\n
12\r\n
TOUCHED\r\n
VALUE n 0 2\r\n12\r\nEND\r\n
STORED\r\n
VALUE lru_cache 0 12\r\n12 slabs, ok\r\nEND\r\n
HD\r\n
VA 2\r\nhi\r\n
HD\r\n
MN\r\n
DELETED\r\n"
is "$(echo "$out" | head -18)" "$want" "a normal workload (set, get, add, replace, append, prepend, incr, decr, touch, gat, meta, delete) passes with memcached's own replies"
echo "$out" | sed -n 19p | grep -q '^STAT pid '; ok $? "plain stats passes (audited)"
echo "$out" | sed -n 20p | grep -q '^VERSION '; ok $? "version passes"
grep -Eq 'audit rule=40[0-5] service=memcached' "$TMP/policyd.log"; ok $? "... and stats is audited in the log"
is "$(mc in 'get watchlist\r\n' 'set gets 0 0 1\r\nx\r\n' 'gets watchlist gets\r\n' | sed -n 1p)" \
	'VALUE watchlist 0 5\r\n<bye!\r\nEND\r\n' "keys named like commands' prefixes pass on a second connection"

for attack in 'flush_all\r\n' 'flush_all 0\r\n' 'flush_all noreply\r\n' '  flush_all\r\n' \
	'flush_all\n' 'shutdown\r\n' 'shutdown graceful\r\n' 'verbosity 1\r\n' \
	'lru_crawler metadump all\r\n' 'lru mode segmented\r\n' 'watch fetchers mutations\r\n' \
	'stats cachedump 1 0\r\n' 'stats detail on\r\n' 'stats reset\r\n' \
	'slabs automove 2\r\n' 'cache_memlimit 1\r\n' 'misbehave\r\n' 'debugtime 100\r\n' \
	'   verbosity 0\r\n'; do
	is "$(mc in "$attack")" -13 "'$attack' is refused (EACCES)"
done
is "$(mc in 'get watchlist\r\n' 'flush_all\r\n' | tr '\n' '|')" \
	'VALUE watchlist 0 5\r\n<bye!\r\nEND\r\n|-13|' "pipelined after a get, flush_all is refused"
n=$(grep -c 'deny rule=' "$TMP/policyd.log"); is "$n" 20 "each refusal is logged"

is "$(mc out 'get watchlist user:shutdown_at\r\n')" \
	'VALUE watchlist 0 5\r\n<bye!\r\nVALUE user:shutdown_at 0 2\r\n42\r\nEND\r\n' \
	"the cache survived every attack (read from outside the cgroup)"
mc out 'stats settings\r\n' | grep -q 'STAT verbosity 0'; ok $? "verbosity unchanged"
mc out 'stats settings\r\n' | grep -q 'STAT lru_segmented yes'; ok $? "LRU mode unchanged"
out=$(mc out 'flush_all\r\n'); is "$out" 'OK\r\n' "outside the cgroup nothing is policed (the same flush_all works)"
stop_policyd; is $? 0 "policyd stops"
done_testing
