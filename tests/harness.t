#!/usr/bin/env bash
# The test harness itself. The kernel log check finds the warnings of a
# recorded log (the ones of issue 23) and only those after its mark, in
# the shell harness, in tests/pdtest.py and in tests/run-test, and
# prints them. run-test ends a file that runs past its time limit (its
# traps still clean up) and one that leaves a process holding its output,
# each as a named failure. A policyd that does not start (a kernel that
# refuses the program, simulated by a PD that exits 3) ends an end-to-end
# test at once, in both harnesses, with policyd's log, and the test's
# cgroup is removed. Recorded logs are fed through PD_KMSG: nothing is
# ever written to the kernel's log.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
repo=$PWD
tmp=$(mktemp -d /tmp/policyd-harness.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
rec=tests/harness/kmsg-refcount.txt
clean=tests/harness/kmsg-clean.txt
# the recorded warnings as the kernel would log them after the clean log
awk -F, -v OFS=, '{ $2 += 1000; print }' "$rec" > "$tmp/later"

# ---- tests/kmsg.py over recorded logs
out=$(PD_KMSG=$rec python3 tests/kmsg.py check 901); st=$?
is "$st" 1 "kmsg.py: the recorded refcount warnings fail the check"
is "$(printf '%s\n' "$out" | grep -c .)" 6 "... each of the six bad lines is printed" || diag "$out"
printf '%s\n' "$out" | grep -qx 'kernel log #903: refcount_t: addition on 0; use-after-free\.'
ok $? "... in full, with its sequence number"
out=$(PD_KMSG=$rec python3 tests/kmsg.py check 922); st=$?
is "$st/$out" "0/" "... and nothing is found after a mark taken after them"
is "$(PD_KMSG=$rec python3 tests/kmsg.py mark)" 922 "the mark is the newest record's sequence number"
out=$(PD_KMSG=$clean python3 tests/kmsg.py check 120); st=$?
is "$st/$out" "0/" "benign lines and continuation records after the mark pass"
PD_KMSG=$clean python3 tests/kmsg.py check 119 >/dev/null
is $? 1 "a WARNING: line just after the mark is found (the boot-time one, before the mark, is not)"

# ---- the check inside each harness, with the log growing during the test
cat > "$tmp/shell.t" <<EOF
#!/usr/bin/env bash
cd "$repo" || exit 1
. tests/lib.sh
kernel_log_mark
ok 0 "a check that passes"
[ -z "\${APPEND:-}" ] || cat "\$APPEND" >> "\$PD_KMSG"
done_testing
EOF
cat > "$tmp/python.t" <<EOF
#!/usr/bin/env python3
import os, sys
sys.path.insert(0, "$repo/tests")
from pdtest import done, kernel_log_mark, ok
kernel_log_mark()
ok(True, "a check that passes")
if os.environ.get("APPEND"):
    with open(os.environ["PD_KMSG"], "a") as f, open(os.environ["APPEND"]) as g:
        f.write(g.read())
done()
EOF
chmod +x "$tmp/shell.t" "$tmp/python.t"
for h in shell python; do
	cp "$clean" "$tmp/kmsg"
	out=$(PD_KMSG=$tmp/kmsg APPEND=$tmp/later "$tmp/$h.t" 2>"$tmp/err"); st=$?
	is "$st" 1 "$h harness: a warning logged during the test fails it"
	printf '%s\n' "$out" | grep -qx 'not ok 2 - the kernel logged no warning while the test ran'
	ok $? "... as a check of its own" || diag "$out"
	printf '%s\n' "$out" | grep -qx '#   kernel log #1903: refcount_t: addition on 0; use-after-free\.'
	ok $? "... printing the line in the test's output" || diag "$out"
	grep -q 'kernel log #1920: refcount_t: underflow; use-after-free\.' "$tmp/err"
	ok $? "... and on stderr (seen without prove -v)"
	cp "$clean" "$tmp/kmsg"
	out=$(PD_KMSG=$tmp/kmsg "$tmp/$h.t" 2>&1); st=$?
	is "$st" 0 "$h harness: a test during which nothing bad was logged passes" || diag "$out"
done

# ---- tests/run-test
printf '#!/usr/bin/env bash\necho "ok 1 - fine"\necho 1..1\n' > "$tmp/pass.t"
printf '#!/usr/bin/env bash\ntrap "touch %s/trapped; exit 143" TERM\necho "ok 1 - started"\nsleep 600 & wait\n' \
	"$tmp" > "$tmp/hang.t"
printf '#!/usr/bin/env bash\nsleep 600 &\necho $! > %s/stray.pid\necho "ok 1 - fine"\necho 1..1\n' \
	"$tmp" > "$tmp/stray.t"
printf '#!/usr/bin/env bash\ncat %s/later >> "$PD_KMSG"\necho "ok 1 - fine"\necho 1..1\n' \
	"$tmp" > "$tmp/warn.t"
chmod +x "$tmp"/*.t
cp "$clean" "$tmp/kmsg"
out=$(PD_KMSG=$tmp/kmsg tests/run-test "$tmp/pass.t" 2>&1); st=$?
is "$st" 0 "run-test: a passing file passes" || diag "$out"

t0=$(date +%s)
out=$(PD_KMSG=$tmp/kmsg PD_TEST_LIMIT=2 PD_SLOW=1 tests/run-test "$tmp/hang.t" 2>/dev/null); st=$?
t=$(( $(date +%s) - t0 ))
ok $(( st != 0 && t < $(slow 30) ? 0 : 1 )) "run-test: a file that hangs fails after its limit (2 s: status $st after $t s)"
printf '%s\n' "$out" | grep -q '^not ok - .*hang\.t: it ran into the time limit of 2 s$'
ok $? "... with a failure that says so" || diag "$out"
[ -e "$tmp/trapped" ]; ok $? "... and SIGTERM first, so that its traps clean up"

t0=$(date +%s)
out=$(PD_KMSG=$tmp/kmsg tests/run-test "$tmp/stray.t" 2>/dev/null); st=$?
t=$(( $(date +%s) - t0 ))
ok $(( st != 0 && t < $(slow 20) ? 0 : 1 )) "run-test: a file that leaves a process holding its output ends ($t s) and fails"
spid=$(cat "$tmp/stray.pid")
printf '%s\n' "$out" | grep -q "^not ok - .*stray\.t: it left processes running: $spid (sleep)$"
ok $? "... naming the process" || diag "$out"
sleep 0.2
state=$(awk '{ print $3 }' "/proc/$spid/stat" 2>/dev/null)
[ -z "$state" ] || [ "$state" = Z ]; ok $? "... which is killed (${state:-gone})"

cp "$clean" "$tmp/kmsg"
out=$(PD_KMSG=$tmp/kmsg tests/run-test "$tmp/warn.t" 2>/dev/null); st=$?
is "$st" 1 "run-test: a kernel warning while a file ran fails the file, even one with no harness"
printf '%s\n' "$out" | grep -q '^# kernel log #1904: WARNING: CPU: 1 PID: 48213 at lib/refcount.c:25 refcount_warn_saturate$'
ok $? "... printing the lines" || diag "$out"

# ---- a policyd that does not start ends the test at once, with its log
if [ "$(id -u)" != 0 ]; then
	skip 8 "needs root (cgroups)"
	done_testing; exit
fi
printf '#!/bin/sh\necho "policyd: the kernel refused the BPF program: Invalid argument (simulated)" >&2\nexit 3\n' \
	> "$tmp/refuse"
chmod +x "$tmp/refuse"
cat > "$tmp/start.t" <<EOF
#!/usr/bin/env bash
cd "$repo" || exit 1
. tests/lib.sh
. tests/e2e/env.sh
env_setup harness || exit 1
echo "\$CG" > "$tmp/cgroup"
printf 'version = 1;\nservices = ( );\n' > "\$TMP/p.conf"
start_policyd "\$TMP/p.conf"; ok \$? "policyd runs"
ok 0 "the test went on"
done_testing
EOF
cat > "$tmp/start-py.t" <<EOF
#!/usr/bin/env python3
import sys
sys.path.insert(0, "$repo/tests")
from pdtest import Env, Policyd, done, ok
env = Env("harness")
open("$tmp/cgroup", "w").write(env.cgroup)
pd = Policyd(env, env.write("p.conf", "version = 1;\nservices = ( );\n"))
ok(pd.running(), "policyd runs")
ok(True, "the test went on")
done()
EOF
chmod +x "$tmp/start.t" "$tmp/start-py.t"
for t in start start-py; do
	t0=$(date +%s)
	out=$(PD=$tmp/refuse "$tmp/$t.t" 2>/dev/null); st=$?
	secs=$(( $(date +%s) - t0 ))
	is "$st" 1 "$t.t: a policyd that exits 3 at start fails the test"
	printf '%s\n' "$out" | grep -q '^not ok 1 - policyd starts (it exited with status 3; its log:)$'
	ok $? "... at once, saying so ($secs s)" || diag "$out"
	printf '%s\n' "$out" | grep -q '^#   policyd: the kernel refused the BPF program: Invalid argument (simulated)$'
	ok $? "... with policyd's log" || diag "$out"
	! printf '%s\n' "$out" | grep -q 'the test went on'; ok $? "... and nothing after it runs"
	[ ! -e "$(cat "$tmp/cgroup")" ]; ok $? "... and its cgroup is removed"
done
done_testing
