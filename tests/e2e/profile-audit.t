#!/usr/bin/env bash
# policy-examples/audit-all.conf: the other profiles' rules, audited. With a
# real redis-server and nginx, what the hardening profiles would refuse
# passes here, and each is one audit line naming the rule it would have
# hit; normal traffic is not logged. The file is what tests/gen-audit-all.py
# makes of the current profiles.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
command -v redis-server >/dev/null && command -v nginx >/dev/null && command -v curl >/dev/null ||
	skip_all "redis-server, nginx or curl is not installed (make deps)"
env_setup audit || skip_all "cannot make a cgroup"

python3 tests/gen-audit-all.py "$PD" "$TMP/regen.conf"
cmp -s "$TMP/regen.conf" policy-examples/audit-all.conf
ok $? "audit-all.conf is up to date with the other profiles (tests/gen-audit-all.py)"
is "$(grep -cE 'action = "(deny|redirect)"' policy-examples/audit-all.conf)" 0 "it denies and diverts nothing"
want=$(for f in redis memcached http-client smtp postgres secrets-egress; do
	"$PD" dump --json -c "policy-examples/$f.conf"; done |
	python3 -c 'import json, sys
n = 0
for doc in sys.stdin.read().replace("}\n{", "}\x00{").split("\x00"):
    n += sum(r["action"] != "allow" for s in json.loads(doc)["services"] for r in s["rules"])
print(n)')
got=$("$PD" dump --json -c policy-examples/audit-all.conf |
	python3 -c 'import json, sys; print(sum(len(s["rules"]) for s in json.load(sys.stdin)["services"]))')
is "$got" "$want" "it holds every deny, redirect and audit rule of the six profiles ($want)"

rport=$(free_port); hport=$(free_port)
sed -e "s/ports = \[ 6379 \]/ports = [ $rport ]/" -e "s/ports = \[ 80, 8080 \]/ports = [ $hport ]/" \
	policy-examples/audit-all.conf > "$TMP/p.conf"
start_redis "$rport"; ok $? "redis-server on 127.0.0.1:$rport"
mkdir -p "$TMP/www"; echo home > "$TMP/www/index.html"
start_nginx "$hport" "$TMP/www"; ok $? "nginx on 127.0.0.1:$hport"
start_policyd "$TMP/p.conf"; ok $? "policyd runs audit-all"

rc() { in_cgroup redis-cli -p "$rport" "$@" 2>&1; }
is "$(rc SET k v)" "OK" "SET"
is "$(rc FLUSHALL)" "OK" "FLUSHALL passes (it would be refused by redis.conf)"
is "$(redis-cli -p "$rport" DBSIZE)" 0 "... and the server did flush"
is "$(in_cgroup curl -s -o /dev/null -w '%{http_code}' -X TRACE "http://127.0.0.1:$hport/")" 405 \
	"TRACE reaches nginx (it would be refused by http-client.conf), which answers 405"
is "$(in_cgroup curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hport/")" 200 "GET /"
sleep 0.5
grep -qE '^policyd: audit rule=1100 service=redis .* excerpt="\*1\\r\\n\$8\\r\\nFLUSHALL\\r\\n" instance=[^ ]+$' "$TMP/policyd.log"
ok $? "FLUSHALL is logged as audit rule=1100 (redis.conf's rule 100)"
grep -qE '^policyd: audit rule=3100 service=http-client .* excerpt="TRACE / HTTP/1.1\\r\\n" instance=[^ ]+$' "$TMP/policyd.log"
ok $? "TRACE is logged as audit rule=3100 (http-client.conf's rule 100)" || grep audit "$TMP/policyd.log" | sed "s/^/# /"
is "$(grep -c '^policyd: audit ' "$TMP/policyd.log")" 2 "nothing else is logged"
is "$(grep -c '^policyd: deny ' "$TMP/policyd.log")" 0 "nothing is denied"
c=$("$PD" stats --pin-dir "$PIN" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(r["messages"] for r in d["rules"] if r["rule"] in (1100, 3100)))')
is "$c" 2 "stats counts both"
stop_policyd; is $? 0 "policyd stops"
done_testing
