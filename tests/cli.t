#!/usr/bin/env bash
# The command line: check and dump over the example profiles and malformed
# policies, exit codes, golden dumps, and that a dump re-reads as the same
# policy.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for f in policy-examples/*.conf; do
	out=$("$PD" check -c "$f" 2>&1); st=$?
	ok $st "check accepts $f"
	echo "$out" | grep -Eq "^$f: ok: [0-9]+ services, [0-9]+ rules, [0-9]+ automaton states, [0-9]+ image bytes" ||
		ok 1 "check summary line for $f: $out"
	name=$(basename "$f" .conf)
	"$PD" dump -c "$f" > "$tmp/$name.dump"
	diff -u "tests/golden/$name.dump" "$tmp/$name.dump" > "$tmp/diff" 2>&1
	ok $? "dump of $f matches tests/golden/$name.dump" || sed 's/^/# /' "$tmp/diff" | head -20
	"$PD" dump --json -c "$f" > "$tmp/$name.json"
	python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/$name.json"
	ok $? "dump --json of $f parses"
	diff -u "tests/golden/$name.json" "$tmp/$name.json" > /dev/null
	ok $? "dump --json of $f matches tests/golden/$name.json"
	# the dump is itself a policy that dumps the same (up to its file name)
	"$PD" dump -c "$tmp/$name.dump" > "$tmp/$name.again"
	diff <(sed 1d "$tmp/$name.dump") <(sed 1d "$tmp/$name.again") > /dev/null
	ok $? "dump of $f re-reads as the same policy"
done

for f in tests/policies/bad/*.conf; do
	err=$("$PD" check -c "$f" 2>&1 >/dev/null); st=$?
	is "$st" 1 "check refuses $f with exit 1"
	is "$err" "$(cat "${f%.conf}.err")" "check names the error in $f"
	"$PD" dump -c "$f" > /dev/null 2>&1
	is $? 1 "dump refuses $f with exit 1"
done

err=$("$PD" check -c "$tmp/none.conf" 2>&1); st=$?
is "$st" 1 "a missing file is exit 1"
is "$err" "$tmp/none.conf: cannot open: No such file or directory" "and says so"

"$PD" >/dev/null 2>&1; is $? 2 "no command is a usage error (2)"
"$PD" frobnicate >/dev/null 2>&1; is $? 2 "an unknown command is a usage error (2)"
"$PD" check --bogus >/dev/null 2>&1; is $? 2 "an unknown option is a usage error (2)"
"$PD" check -c policy-examples/redis.conf extra >/dev/null 2>&1; is $? 2 "a stray argument is a usage error (2)"
err=$("$PD" check --cgroup /x -c policy-examples/redis.conf 2>&1); st=$?
is "$st" 2 "an option that does not apply is a usage error (2)"
is "$err" "policyd: --cgroup does not apply to 'check', which takes -c FILE (or FILE), --json" \
	"... naming the option and what the command takes"
err=$("$PD" stats --monitor 2>&1)
is "$err" "policyd: --monitor does not apply to 'stats', which takes --pin-dir, --json, --format" \
	"... also for stats"
"$PD" stats --format yaml >/dev/null 2>&1; is $? 2 "stats --format yaml is a usage error"
"$PD" stats --json --format openmetrics >/dev/null 2>&1
is $? 2 "--json and --format openmetrics together are a usage error"
err=$("$PD" run -c - 2>&1)
is "$err" "policyd: run re-reads its policy file on SIGHUP: give a file, not -
Try 'policyd --help'." "run -c - is refused with the reason"
"$PD" check -c policy-examples/redis.conf policy-examples/smtp.conf >/dev/null 2>&1
is $? 2 "check -c FILE FILE: the file given twice is a usage error"

# check FILE, -c - (standard input), --json
out=$("$PD" check policy-examples/redis.conf); ok $? "check FILE is accepted"
case $out in "policy-examples/redis.conf: ok: "*) ok 0 "... and names the file";; *) ok 1 "... and names the file: $out";; esac
out=$("$PD" check -c - < policy-examples/smtp.conf); ok $? "check -c - reads standard input"
case $out in "<stdin>: ok: "*) ok 0 "... named <stdin>";; *) ok 1 "... named <stdin>: $out";; esac
err=$(printf 'version = 1;\nservices = ( { name = "s"; ports = [ 0 ]; } );\n' | "$PD" check -c - 2>&1)
is "$err" "<stdin>:2: ports are from 1 to 65535" "errors in standard input: <stdin>:LINE"
cmp -s <("$PD" dump - < policy-examples/redis.conf | sed 1d) <("$PD" dump policy-examples/redis.conf | sed 1d)
ok $? "dump - reads standard input"
"$PD" check --json policy-examples/redis.conf > "$tmp/check.json"; st=$?
is "$st" 0 "check --json: exit 0"
is "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["ok"], d["services"], d["rules"], d["errors"], d["warnings"], d["image_bytes"] > 0)' "$tmp/check.json")" \
	"True 1 25 [] [] True" "check --json: ok, services, rules, no errors or warnings"
"$PD" check --json tests/policies/bad/two-errors.conf > "$tmp/check.json"; st=$?
is "$st" 1 "check --json of an invalid policy: exit 1"
is "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["ok"], [(e["line"], e["message"][:14]) for e in d["errors"]])' "$tmp/check.json")" \
	"False [(3, 'rule has both '), (4, 'rule has no ma')]" "check --json: every error with its line"

# blanks between the bytes of a hex pattern
hexpol() { printf 'version = 1;\nservices = ( { name = "s"; ports = [ 1 ]; rules = ( { id = 1; action = "deny"; hex_contains = "%s"; } ); } );\n' "$1"; }
cmp -s <(hexpol "de ad be ef" | "$PD" dump - | sed 1d) <(hexpol "deadbeef" | "$PD" dump - | sed 1d)
ok $? 'hex_contains = "de ad be ef" compiles as "deadbeef"'

# warnings: exit 0, each with its line
mkdir -p "$tmp/sinks"
cat > "$tmp/warn.conf" <<WARN
version = 1;
daemon = { user = "root"; };
sinks = ( { name = "a"; file = "$tmp/sinks/a.log"; },
  { name = "b"; file = "$tmp/sinks/a.log"; },
  { name = "c"; file = "$tmp/nodir/c.log"; } );
services = ( { name = "s"; ports = [ 1 ]; rules = (
  { id = 1; action = "deny"; contains = "FLUSH"; nocase = true; },
  { id = 2; action = "allow"; prefix = "flush"; },
  { id = 3; action = "redirect"; contains = "x"; sink = "a"; },
  { id = 4; action = "allow"; contains = "FLUSHX"; } ); } );
WARN
err=$("$PD" check "$tmp/warn.conf" 2>&1 >/dev/null); st=$?
is "$st" 0 "warnings alone: exit 0"
is "$err" "$tmp/warn.conf:8: warning: rule 2 allows what rule 1 (line 7) denies: deny wins, this allow never takes effect
$tmp/warn.conf:4: warning: sink \"b\" writes to the same file as sink \"a\" (line 3): their records mix
$tmp/warn.conf:4: warning: no rule redirects to sink \"b\"
$tmp/warn.conf:5: warning: no rule redirects to sink \"c\"
$tmp/warn.conf:5: warning: the directory of sink \"c\" ($tmp/nodir) does not exist: run would fail to open $tmp/nodir/c.log
$tmp/warn.conf:2: warning: user \"root\" is uid or gid 0: run refuses to keep root's ids; name an unprivileged account" \
	"check warns: a dead allow, two sinks on one file, unused sinks, a missing sink directory, user root"
sed -i 's/user = "root"/user = "no-such-user-pd"/' "$tmp/warn.conf"
"$PD" check "$tmp/warn.conf" 2>&1 >/dev/null |
	grep -qx "$tmp/warn.conf:2: warning: user \"no-such-user-pd\" does not exist on this host: run would fail to drop to it"
ok $? "check warns about a user that does not exist"
is "$("$PD" check --json "$tmp/warn.conf" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["ok"], len(d["warnings"]), d["warnings"][0]["line"])')" \
	"True 6 8" "check --json lists the warnings with their lines"
is "$("$PD" check policy-examples/redis.conf 2>&1 >/dev/null)" "" "no warning for a clean profile"
"$PD" --help | grep -q '^Usage: policyd check'; ok $? "--help prints usage"
"$PD" --version | grep -Eq '^policyd [0-9]+\.[0-9]+\.[0-9]+ '; ok $? "--version prints the version"

# 10,000 nocase contains patterns of 8-16 bytes: under 1 s, under 64 MiB
tests/gen-patterns.py "$tmp/big.conf" 10000 7
out=$("$PD" check -c "$tmp/big.conf"); st=$?
ok $st "10,000 patterns compile"
echo "# $out"
bytes=$(echo "$out" | sed -E 's/.* ([0-9]+) image bytes.*/\1/')
ms=$(echo "$out" | sed -E 's/.*compiled in ([0-9.]+) ms/\1/')
[ "$bytes" -lt $((64 << 20)) ]; ok $? "image under 64 MiB ($bytes bytes)"
awk -v m="$ms" -v b="$(slow 1000)" 'BEGIN { exit !(m < b) }'
ok $? "compiled in under 1 s times PD_SLOW ($ms ms; bound $(slow 1000) ms)"

# without byte patterns a framing-none service reads no byte; under line
# framing the scan still looks for the ends of lines
cat > "$tmp/len.conf" <<'EOF'
version = 1;
services = (
  { name = "len"; ports = [ 7001 ]; direction = "to"; framing = "none";
    rules = ( { id = 1; action = "deny"; longer_than = 1000; } ); },
  { name = "lenline"; ports = [ 7002 ]; direction = "to"; framing = "line";
    rules = ( { id = 2; action = "deny"; longer_than = 1000; } ); }
);
EOF
is "$("$PD" dump -c "$tmp/len.conf" | grep -o '# scan: .*')" \
'# scan: none (no byte patterns: only the length of a message counts)
# scan: 8 bytes at a time, up to any of "\n"' "dump: no scan without byte patterns, unless lines are framed"
is "$("$PD" dump --json -c "$tmp/len.conf" | python3 -c '
import json, sys
print(" ".join(s["automaton"]["scan"] for s in json.load(sys.stdin)["services"]))')" \
	"none words" 'dump --json: "scan": "none", then "words"'

done_testing
