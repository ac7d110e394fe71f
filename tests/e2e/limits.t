#!/usr/bin/env bash
# Bad input is refused quickly, in bounded memory, and changes nothing:
# policies far past the compiler's limits (check and a reload, whose
# memory is given back), a FIFO where the policy file should be (check,
# dump, run, reload), and run without privilege.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
env_setup limits || skip_all "cannot make a cgroup"
port=$(free_port)
python3 -c '
import socket, sys, threading
threading.excepthook = lambda a: None if a.exc_type is ConnectionResetError else sys.__excepthook__(a.exc_type, a.exc_value, a.exc_traceback)  # a denied client is reset
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(64)
def serve(c):
    while c.recv(65536): pass
while True:
    c, _ = ls.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()' "$port" &
PIDS+=($!)

# 5,000 patterns of 1 KiB (5 million trie nodes: past the state limit),
# and 45,000 short ones, prefix and contains, half of them nocase (past the
# image's 256 MiB)
python3 - "$TMP" "$port" <<'EOF'
import random, sys
tmp, port = sys.argv[1], int(sys.argv[2])
r = random.Random(3)
head = 'version = 1;\nservices = ({ name = "big"; ports = [ %d ]; framing = "line"; rules = (\n' % port
long = ",\n".join('{ id = %d; action = "deny"; contains = "%s"; }'
                  % (i + 1, "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(1024)))
                  for i in range(5000))
open(tmp + "/long.conf", "w").write(head + long + "\n); });\n")
al = "abcdefghijklmnopqrstuvwxyz0123456789_-/.ABCDEFGH"
mix = ",\n".join('{ id = %d; action = "deny"; %s = "%s"; nocase = %s; }'
                 % (i + 1, r.choice(["contains", "prefix"]),
                    "".join(r.choice(al) for _ in range(r.randint(8, 16))), r.choice(["true", "false"]))
                 for i in range(45000))
open(tmp + "/mix.conf", "w").write(head + mix + "\n); });\n")
EOF
chmod 644 "$TMP"/*.conf
# measure CMD...: "EXIT SECONDS MAXRSS-MIB" of CMD, its stderr in $TMP/err
measure() {
	python3 -c '
import resource, subprocess, sys, time
t = time.time()
r = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[1], "w"))
print(r.returncode, "%.1f" % (time.time() - t),
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' "$TMP/err" "$@"
}
for p in long mix; do
	read -r rc secs mib < <(measure "$PD" check -c "$TMP/$p.conf")
	is "$rc" 1 "check refuses $p.conf"
	grep -Eq "^$TMP/$p.conf:[0-9]+: .*(past the limit of [0-9]+ states|more than [0-9]+ automaton states|past 256 MiB)" "$TMP/err"
	ok $? "... with FILE:LINE and the limit: $(head -c 200 "$TMP/err")"
	ok "$(awk -v s="$secs" -v k="$SLOW" 'BEGIN { print (s < 10 * k) ? 0 : 1 }')" "... in $secs s (< 10 s)"
	ok $(( mib < 1024 ? 0 : 1 )) "... in $mib MiB at most (< 1 GiB)"
done

# a reload of such a policy is refused, and the memory given back
kv_policy "$TMP/p.conf" 100 "" FLUSHALL
chmod 644 "$TMP/p.conf"
start_policyd "$TMP/p.conf"; ok $? "policyd runs a small policy"
rss() { awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$PDPID/status"; }
before=$(rss)
for p in long mix; do
	cp "$TMP/$p.conf" "$TMP/p.conf"
	n=$(grep -c 'reload refused' "$TMP/policyd.log")
	kill -HUP "$PDPID"
	for _ in $(seq $((300 * SLOW))); do
		[ "$(grep -c 'reload refused' "$TMP/policyd.log")" -gt "$n" ] && break
		sleep 0.1
	done
	grep -q "reload refused: $TMP/p.conf is invalid; policy generation 1 keeps enforcing" "$TMP/policyd.log"
	ok $? "a reload of $p.conf is refused"
	peak=$(awk '/^VmHWM:/ { print int($2 / 1024) }' "/proc/$PDPID/status")
	after=$(rss)
	ok $(( peak < 1024 && after < before + 16 ? 0 : 1 )) \
		"... RSS $before MiB before, $after MiB after (peak $peak MiB): given back"
done
is "$(sendline FLUSHALL)" 13 "policy 1 keeps enforcing"

# a FIFO instead of the policy file: refused at once, nothing waits on it
mkfifo "$TMP/fifo"
for cmd in check dump; do
	out=$(timeout $((5 * SLOW)) "$PD" "$cmd" -c "$TMP/fifo" 2>&1); rc=$?
	is "$rc" 1 "$cmd -c FIFO: exit 1, not a hang"
	is "$out" "$TMP/fifo: not a regular file (a FIFO): a policy is read from a file" "... saying why"
done
out=$(timeout $((5 * SLOW)) "$PD" run -c "$TMP/fifo" --cgroup "$CG" --pin-dir "$PIN.x" 2>&1); rc=$?
is "$rc" 1 "run -c FIFO: exit 1 ($out)"
rm "$TMP/p.conf"; mkfifo "$TMP/p.conf"
n=$(grep -c 'reload refused' "$TMP/policyd.log")
kill -HUP "$PDPID"
for _ in $(seq $((50 * SLOW))); do
	[ "$(grep -c 'reload refused' "$TMP/policyd.log")" -gt "$n" ] && break
	sleep 0.1
done
grep -q "$TMP/p.conf: not a regular file (a FIFO): a policy is read from a file" "$TMP/policyd.log"
ok $? "a reload with a FIFO as the policy file is refused" || tail -3 "$TMP/policyd.log" | sed 's/^/# /'
is "$(sendline FLUSHALL)" 13 "... and the daemon goes on (FLUSHALL denied)"
stop_policyd; is $? 0 "SIGTERM: exit 0"

# run without privilege: the capabilities it lacks, not a missing feature
kv_policy "$TMP/q.conf" 100 "" FLUSHALL
chmod 644 "$TMP/q.conf"
out=$(setpriv --reuid nobody --regid nogroup --clear-groups "$PD" run -c "$TMP/q.conf" \
	--cgroup "$CG" --pin-dir "$PIN.y" 2>&1); rc=$?
is "$rc" 3 "run as nobody: exit 3"
case $out in
*"lacks CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID"*"start it as root") ok 0 "... naming the capabilities it lacks";;
*) ok 1 "... naming the capabilities it lacks: $out";;
esac
[ ! -e "$PIN.y" ]; ok $? "... and nothing pinned"
done_testing
