#!/usr/bin/env bash
# The Redis profile with the real redis-cli against a real redis-server:
# allowed commands work, wiping and reconfiguring are refused in any case,
# the data survives, and log lines and counters say what happened.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
command -v redis-server >/dev/null || skip_all "redis-server is not installed"
env_setup redis || skip_all "cannot make a cgroup"

port=$(free_port)
sed "s/\b6379\b/$port/" policy-examples/redis.conf > "$TMP/redis.conf"
start_redis "$port"; ok $? "redis-server on 127.0.0.1:$port"
start_policyd "$TMP/redis.conf"; ok $? "policyd run with the Redis profile"

rc() { in_cgroup redis-cli -p "$port" "$@" 2>&1; }
is "$(rc SET k v)" "OK" "SET works"
is "$(rc GET k)" "v" "GET works"
is "$(rc INCR n)" "1" "INCR works"
is "$(rc LPUSH l a b c)" "3" "LPUSH works"
is "$(rc HSET h f v)" "1" "HSET works"
for c in FLUSHALL flushall FlushAll FLUSHDB "CONFIG SET dir /tmp" "config rewrite" \
	"SLAVEOF 127.0.0.1 1" "REPLICAOF 127.0.0.1 1" "DEBUG SLEEP 0" \
	"MODULE LOAD /tmp/x.so" "EVAL return 1 0"; do
	# shellcheck disable=SC2086
	is "$(rc $c)" "Error: Permission denied" "refused: $c"
done
# redis-cli takes a failed SHUTDOWN for success and prints nothing: ask the server
rc SHUTDOWN NOSAVE >/dev/null
is "$(redis-cli -p "$port" PING)" "PONG" "refused: SHUTDOWN NOSAVE (the server still answers)"
# commands read from a pipe, the refused one behind an allowed one
out=$(printf 'PING\nflushall\n' | in_cgroup redis-cli -p "$port" 2>&1)
is "$(redis-cli -p "$port" DBSIZE)" "4" "the data survived every attempt ($out)"
is "$(redis-cli -p "$port" GET k)" "v" "GET outside the cgroup sees the key"
sleep 0.5
n=$(grep -c '^policyd: deny rule=' "$TMP/policyd.log")
ok $(( n >= 12 ? 0 : 1 )) "a deny line per refused command ($n)"
grep -qE '^policyd: deny rule=100 service=redis pid=[0-9]+ comm=redis-cli uid=0 src=127\.0\.0\.1:[0-9]+ dst=127\.0\.0\.1:'"$port"' len=18 excerpt="\*1\\r\\n\$8\\r\\nFLUSHALL\\r\\n" instance=[^ ]+$' "$TMP/policyd.log"
ok $? "the FLUSHALL deny line, in full"
# the whole default redis-benchmark test set, from inside the cgroup
in_cgroup redis-benchmark -p "$port" -q -n 2000 -c 20 >"$TMP/bench.out" 2>"$TMP/bench.err"
is $? 0 "redis-benchmark (default test set) exits 0"
tests="PING_INLINE PING_MBULK SET GET INCR LPUSH RPUSH LPOP RPOP SADD HSET SPOP ZADD ZPOPMIN LRANGE_100 LRANGE_300 LRANGE_500 LRANGE_600 MSET"
missing=""
for t in $tests; do
	tr '\r' '\n' < "$TMP/bench.out" | grep -Eq "^$t( \(.*\))?: [0-9.]+ requests per second" || missing="$missing $t"
done
is "$missing" "" "redis-benchmark: every test ran to its requests-per-second line"
# it first asks for CONFIG GET save/appendonly, which the profile audits
# (a profile that denies it makes redis-benchmark warn and go on);
# nothing may fail
is "$(grep -v '^WARNING: Could not fetch server CONFIG$' "$TMP/bench.err" | grep -ci 'error')" 0 \
	"redis-benchmark reports no error (only its warning that CONFIG is refused)"
is "$(tr '\r' '\n' < "$TMP/bench.out" | grep -ci 'error')" 0 "... none in its results either"
c=$("$PD" stats --pin-dir "$PIN" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print([r["messages"] for r in d["rules"] if r["rule"]==100][0])')
is "$c" "4" "stats: rule 100 counted the four FLUSHALLs"
stop_policyd; ok $? "policyd stops cleanly"
[ ! -e "$PIN" ]; ok $? "pins removed"
is "$(rc FLUSHALL)" "OK" "after policyd stopped nothing is refused"
done_testing
