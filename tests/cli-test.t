#!/usr/bin/env bash
# policyd test: offline verdicts for sample byte streams, line by line
# (verdict, rule, the rule's FILE:LINE, offset, length, excerpt), with
# send boundaries, --service and --port, --monitor, --json, several inputs
# and standard input; and its errors. That its verdicts are the kernel's
# is tests/e2e/judge.t.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/kv.conf" <<EOF
version = 1;
sinks = ( { name = "quarantine"; file = "$tmp/q.log"; } );
services = (
  { name = "kv"; ports = [ 7000 ]; framing = "line";
    rules = (
      { id = 1; action = "deny"; contains = "FLUSHALL"; nocase = true; },
      { id = 2; action = "audit"; prefix = "KEYS"; },
      { id = 3; action = "redirect"; prefix = "DEBUG"; sink = "quarantine"; }
    ); },
  { name = "web"; ports = [ 8080 ]; direction = "from"; default = "deny";
    rules = ( { id = 10; action = "allow"; prefix = "HTTP/1.1 200"; } ); }
);
EOF
root=$PWD
case $PD in /*) ;; *) PD=$root/$PD ;; esac
cd "$tmp" || exit 1
printf 'GET a\nKEYS *\nDEBUG x\nSET a 1\nflushall\nGET a\n' > s1

out=$("$PD" test -c kv.conf --service kv s1); st=$?
is "$st" 0 "test: exit 0"
is "$out" 'pass rule=default at=kv.conf:4 offset=0 len=6 excerpt="GET a\n"
audit rule=2 at=kv.conf:7 offset=6 len=7 excerpt="KEYS *\n"
redirect rule=3 at=kv.conf:8 offset=13 len=8 sink=quarantine excerpt="DEBUG x\n"
pass rule=default at=kv.conf:4 offset=21 len=8 excerpt="SET a 1\n"
deny rule=1 at=kv.conf:6 offset=29 len=9 excerpt="flushall\n"
refused offset=38 len=6 (dropped with the deny; later sends fail)' \
	"one line per message of a line-framed stream: verdict, rule, FILE:LINE, offset, length, excerpt"

out=$(printf 'GET a\n|KEYS *\nDEB|UG x\n|flushall\n|GET a\n' |
	"$PD" test -c kv.conf --port 7000 --split '|' -)
is "$out" 'pass rule=default at=kv.conf:4 offset=0 len=6 excerpt="GET a\n"
audit rule=2 at=kv.conf:7 offset=6 len=7 excerpt="KEYS *\n"
redirect rule=3 at=kv.conf:8 offset=13 len=8 sink=quarantine excerpt="DEBUG x\n"
deny rule=1 at=kv.conf:6 offset=21 len=9 excerpt="flushall\n"
refused offset=30 len=6 (dropped with the deny; later sends fail)' \
	"--split cuts sends (the mark is no byte of the stream); --port finds the service; - is standard input"

out=$(printf 'GET a\nKEY' | "$PD" test -c kv.conf --port 7000 -)
is "$out" 'pass rule=default at=kv.conf:4 offset=0 len=6 excerpt="GET a\n"
held rule=2 at=kv.conf:7 offset=6 len=3 excerpt="KEY"' \
	"an unfinished line that a prefix rule may still match is held, and says which rule"

out=$("$PD" test -c kv.conf --service kv --monitor s1 | sed -n '3p;5,6p')
is "$out" 'would-redirect rule=3 at=kv.conf:8 offset=13 len=8 sink=quarantine excerpt="DEBUG x\n"
would-deny rule=1 at=kv.conf:6 offset=29 len=9 excerpt="flushall\n"
pass rule=default at=kv.conf:4 offset=38 len=6 excerpt="GET a\n"' \
	"--monitor: would-deny and would-redirect, and the connection goes on"

printf 'HTTP/1.1 200 OK\r\n' > w1
printf 'HTTP/1.1 500 Oops\r\n' > w2
out=$("$PD" test -c kv.conf --port 8080 w1 w2)
is "$out" 'w1: pass rule=10 at=kv.conf:11 offset=0 len=17 excerpt="HTTP/1.1 200 OK\r\n"
w2: deny rule=default at=kv.conf:10 offset=0 len=19 excerpt="HTTP/1.1 500 Oops\r\n"' \
	"several inputs, each a connection, named; --port of a \"from\" service; a default names its service's line"

out=$("$PD" test -c kv.conf --port 8080 --json w1 w2 | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["service"], [(m["input"], m["verdict"], m["rule"], m["at"], m["offset"], m["len"], m["logged"], m["excerpt"]) for m in d["messages"]])')
is "$out" "web [('w1', 'pass', 10, 'kv.conf:11', 0, 17, False, 'HTTP/1.1 200 OK\\\\r\\\\n'), ('w2', 'deny', None, 'kv.conf:10', 0, 19, True, 'HTTP/1.1 500 Oops\\\\r\\\\n')]" \
	"--json: the same, and whether the kernel logs it"

# framing none: each send a message; a prefix anchors at each send
cat > bytes.conf <<EOF
version = 1;
services = ( { name = "redis"; ports = [ 6379 ];
  rules = ( { id = 200; action = "deny"; prefix = "FLUSHALL"; nocase = true; } ); } );
EOF
printf 'PING\r\n#FLUSHALL\r\n#SET a FLUSHALL\r\n' > r1
out=$("$PD" test -c bytes.conf --split '#' r1 | sed 's/ at=[^ ]*//; s/ excerpt=.*//')
is "$out" "pass rule=default offset=0 len=6
deny rule=200 offset=6 len=10
refused offset=16 len=16 (dropped with the deny; later sends fail)" \
	"a byte profile: a send is a message, FLUSHALL at its start is denied"
out=$("$PD" test -c bytes.conf --split '\x23' r1 | cut -d' ' -f1,2)
is "$(echo "$out" | head -1)" "pass rule=default" "--split takes \\xHH"
# protocol framings: a message is one parsed request, walked by the
# kernel's parsers; pipelined requests in one send each get a line
printf 'SET k v\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\t"FLUSH\\x41LL"\r\nPING\r\n' > r2
out=$("$PD" test -c "$root/policy-examples/redis.conf" r2 | sed 's/ at=[^ ]*//'); st=$?
is "$st" 0 "a RESP profile: exit 0"
is "$out" 'pass rule=default offset=0 len=9 excerpt="SET k v\r\n"
pass rule=default offset=9 len=20 excerpt="*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
deny rule=100 offset=29 len=16 excerpt="\t\"FLUSH\\x41LL\"\r\n"
refused offset=45 len=6 (dropped with the deny; later sends fail)' \
	"... each pipelined command a message, an inline command in quotes and escapes read as Redis reads it"
printf '*1\r\n$8\rXFLUSHALL\r\n' > r3
out=$("$PD" test -c "$root/policy-examples/redis.conf" --json r3); st=$?
is "$st" 0 "malformed RESP: exit 0"
case $out in *'"verdict": "deny", "rule": "malformed", "at": "'*'redis.conf:'*'"offset": 0, "len": 8, "logged": true'*) ok 0 "... denied as rule \"malformed\" (--json)";;
	*) ok 1 "... denied as rule \"malformed\" (--json): $out";; esac
out=$("$PD" test -c "$root/policy-examples/redis.conf" r3 | head -1 | cut -d' ' -f1,2)
is "$out" "deny rule=malformed" "... and rule=malformed in text, as the daemon logs it"
printf '*1\r\n$8\r\nFLUSH#ALL\r\n' > r4
out=$("$PD" test -c "$root/policy-examples/redis.conf" --split '#' r4 | cut -d' ' -f1,2,4,5)
is "$out" "deny rule=100 offset=0 len=18" "a command split across two sends is held, then denied whole"
printf 'FLUSH' > r5
out=$("$PD" test -c "$root/policy-examples/redis.conf" r5 | cut -d' ' -f1,2,4,5)
is "$out" "held rule=100 offset=0 len=5" "a command that may still become FLUSHALL is held at the end"
printf 'get k\r\nflush_all\0\r\n' > m1
out=$("$PD" test -c "$root/policy-examples/memcached.conf" m1 | cut -d' ' -f1,2,4,5)
is "$out" "pass rule=default offset=0 len=7
deny rule=100 offset=7 len=12" "memcache: flush_all cut at a NUL is denied"
printf 'GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /%%2eenv HTTP/1.1\r\nHost: a\r\n\r\n' > h1
out=$("$PD" test -c "$root/policy-examples/http-strict.conf" h1 | cut -d' ' -f1,4,5)
is "$out" "pass offset=0 len=28
deny offset=28 len=33" "http: a percent-encoded dot path is denied"
out=$("$PD" test -c "$root/policy-examples/redis.conf" --monitor r2 | cut -d' ' -f1,2)
is "$(echo "$out" | sed -n 3,4p)" "would-deny rule=100
pass rule=default" "--monitor under a protocol framing: would-deny, and the next command is read"

# errors
err=$("$PD" test -c kv.conf --service kb s1 2>&1); st=$?
is "$st" 2 "an unknown service is a usage error (2)"
is "$err" "policyd: kv.conf has no service 'kb' (did you mean 'kv'?); its services: kv web" \
	"... naming the services"
err=$("$PD" test -c kv.conf s1 2>&1); st=$?
is "$st" 2 "no service named in a policy of two: exit 2"
is "$err" "policyd: kv.conf has 2 services: say which with --service NAME or --port N" "... saying so"
err=$("$PD" test -c kv.conf --port 9 s1 2>&1); st=$?
is "$st" 2 "a port no service polices: exit 2"
is "$err" "policyd: no service of kv.conf polices port 9" "... saying so"
err=$("$PD" test -c kv.conf --service kv nosuch 2>&1); st=$?
is "$st" 2 "a missing input: exit 2"
is "$err" "policyd: cannot read nosuch: No such file or directory" "... naming it"
"$PD" test -c kv.conf --service kv --port 7000 s1 >/dev/null 2>&1
is $? 2 "--service and --port together: exit 2"
err=$("$PD" test -c kv.conf --service kv --split '\q' s1 2>&1); st=$?
is "$st" 2 "a bad --split escape: exit 2"
is "$(echo "$err" | head -1)" "policyd: --split takes bytes, with \\n, \\r, \\t, \\\\ and \\xHH escapes, at most 256: not '\\q'" \
	"... saying what it takes"
"$PD" test -c kv.conf --service kv --port 0 s1 >/dev/null 2>&1
is $? 2 "--port 0: exit 2"
err=$("$PD" test -c kv.conf --service kv --pin-dir /x s1 2>&1)
is "$err" "policyd: --pin-dir does not apply to 'test', which takes -c FILE, --service, --port, --split, --monitor, --json, input files" \
	"an option that does not apply is named"
"$PD" test -c - --service kv s1 < kv.conf >/dev/null 2>&1
is $? 2 "-c -: exit 2 (standard input is for the inputs)"
"$PD" test -c kv.conf --service kv - - < s1 >/dev/null 2>&1
is $? 2 "standard input twice: exit 2"
printf 'version = 1;\nservices = ( { name = "s"; ports = [ 1 ];\n rules = ( { id = 1; action = "deny"; contains = 5; } ); } );\n' > bad.conf
err=$("$PD" test -c bad.conf s1 2>&1); st=$?
is "$st" 1 "an invalid policy: exit 1"
case $err in "bad.conf:3: "*) ok 0 "... with FILE:LINE";; *) ok 1 "... with FILE:LINE: $err";; esac
out=$("$PD" test -c kv.conf --service kv s1 2>&1 >/dev/null)
is "$out" "" "nothing on standard error when all is well"

# framing http's header and body rules, walked by the kernel's parser
cat > web.conf <<'EOF'
version = 1;
services = ( { name = "web"; ports = [ 80 ]; framing = "http";
  rules = ( { id = 1; action = "deny"; header = "Transfer-Encoding: chunked"; },
            { id = 2; action = "deny"; contains = "${jndi:"; nocase = true; },
            { id = 3; action = "audit"; header = "X-Debug"; } ); } );
EOF
printf 'GET /x-debug HTTP/1.1\r\nX-Api: ${jndi:a}\r\nX-Debugger: 1\r\n\r\n|POST / HTTP/1.1\r\nX-DEBUG:1\r\n\r\n|POST / HTTP/1.1\r\nX-Debug: 1\r\nContent-Length: 9\r\n\r\nab${J|NDI:' > h1
printf 'POST / HTTP/1.1\r\ntransfer-encoding:\tCHUNKED \r\n\r\n0\r\n\r\n' > h2
is "$("$PD" test -c web.conf --split '|' h1 h2 | cut -d' ' -f1-3)" "h1: pass rule=default
h1: audit rule=3
h1: deny rule=2
h2: deny rule=1" "test: header and body rules (not in the path or another header; a name in any case; a body split across sends; a value in any case with a tab before and a space after)"
done_testing
