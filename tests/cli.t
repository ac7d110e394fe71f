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
"$PD" check --json -c policy-examples/redis.conf >/dev/null 2>&1; is $? 2 "--json does not apply to check"
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
