#!/usr/bin/env bash
# A short libFuzzer run over parse + compile (make fuzz runs longer).
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp policy-examples/*.conf tests/policies/bad/*.conf tests/fuzz/*.conf "$corpus"/
secs=${FUZZ_SMOKE_SECONDS:-20}
ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp:print_suppressions=0 \
	"$O/fuzz_policy" -max_total_time="$secs" -timeout=10 -dict=tests/fuzz/policy.dict \
	-artifact_prefix="$corpus/" "$corpus" > "$corpus/log" 2>&1
st=$?
ok $st "fuzzing parse + compile for ${secs}s finds no crash, leak or hang"
[ $st -eq 0 ] || { tail -30 "$corpus/log" | sed 's/^/# /'; ls "$corpus" | grep -E '^(crash|leak|timeout)' | sed 's/^/# /'; }
grep -E '^Done [0-9]+ runs' "$corpus/log" | sed 's/^/# /'
done_testing
