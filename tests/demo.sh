#!/usr/bin/env bash
# make demo: policyd enforcing policy-examples/redis.conf on real Redis
# traffic. Everything runs in a cgroup of its own against a throwaway
# redis-server on 127.0.0.1, and is removed at the end (also on Ctrl-C).
set -u
cd "$(dirname "$0")/.." || exit 1
O=${O:-build}
PD=$O/policyd
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || { echo "make demo needs root (BPF programs, cgroups)" >&2; exit 1; }
env_setup demo || exit 1

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
cli() { printf '$ redis-cli %s\n' "$*"; in_cgroup redis-cli -p "$port" "$@" 2>&1 | sed 's/^/  /'; }

port=$(free_port)
sed "s/\b6379\b/$port/" policy-examples/redis.conf > "$TMP/redis.conf"
say "a throwaway redis-server on 127.0.0.1:$port"
start_redis "$port" || { echo "redis-server did not start" >&2; exit 1; }
say "the policy: policy-examples/redis.conf (port $port)"
run "$PD" check -c "$TMP/redis.conf" || exit 1
say "policyd run, policing cgroup $CG"
start_policyd "$TMP/redis.conf" || { cat "$TMP/policyd.log"; exit 1; }
sed 's/^/  /' "$TMP/policyd.log"

say "allowed commands from redis-cli inside the cgroup"
cli SET greeting "hello from the demo"
cli GET greeting
cli PING
cli KEYS '*'
say "refused: wipe and reconfigure, in any case (the sender sees EACCES)"
cli FLUSHALL
cli flushall
cli FlushDB
cli CONFIG SET dir /tmp
cli config set dbfilename x.so
say "the data is still there"
cli GET greeting
say "outside the cgroup nothing is policed (the host's other processes)"
printf '$ redis-cli PING   # not in the cgroup\n'
redis-cli -p "$port" PING | sed 's/^/  /'

sleep 0.5
say "what policyd logged (syslog, and stderr with --foreground)"
grep -E '^policyd: (deny|audit|redirect) ' "$TMP/policyd.log" | sed 's/^/  /'
say "policyd stats (rules that counted something)"
"$PD" stats --pin-dir "$PIN" | awk 'NR <= 2 || $4 != 0' | sed 's/^/  /'

say "stop: policyd detaches and removes its pins"
stop_policyd
tail -n 2 "$TMP/policyd.log" | sed 's/^/  /'
echo
echo "demo done: cgroup, pins, redis-server and policyd are cleaned up on exit"
