#!/usr/bin/env python3
"""Where log lines go and what holds them up. policyd runs in mount
namespaces of its own (inside the test's; a private /dev and /run, so the
host's logging is not touched) with: no syslog at all (a warning, then
stderr); a syslog reader that stops reading (aborts and sink records go
on, the lines that do not fit are counted); the real systemd-journald
(structured fields). And log_rate under a flood: a bound for every kind
of line, one summary a second, every deny logged or counted."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (POLICYD, Env, Recorder, done, free_port, grep, is_, ok, sendline,  # noqa: E402
                    skip, slow, tail, wait_file, wait_until)

env = Env("logs")
TMP = env.tmp
port = free_port()
server = Recorder(port=port)


def path(name):
    return os.path.join(TMP, name)


def pol(rate, extra=""):
    """deny FLUSHALL (7), audit KEYS (8), divert DEBUG (9)"""
    return env.write("p.conf", """version = 1;
daemon = { log_rate = %s; %s };
sinks = ( { name = "q"; file = "%s"; } );
services = ( { name = "kv"; ports = [ %d ]; framing = "line"; rules = (
  { id = 7; action = "deny"; contains = "FLUSHALL"; },
  { id = 8; action = "audit"; prefix = "KEYS"; },
  { id = 9; action = "redirect"; prefix = "DEBUG"; sink = "q"; } ); } );
""" % (rate, extra, path("sink.log"), port))


# The namespace's first steps: /run and /dev private and empty but for
# the device nodes the programs use. Then what the caller appends.
NS_PRELUDE = r'''
set -e
mount -t tmpfs -o mode=0755 policyd-test-run /run
mkdir -p "$TMP/dev"
mount -t tmpfs -o mode=0755 policyd-test-dev "$TMP/dev"
for n in null zero random urandom; do : > "$TMP/dev/$n"; mount --bind "/dev/$n" "$TMP/dev/$n"; done
mount --bind "$TMP/dev" /dev
'''
NS_ENV = dict(os.environ, TMP=TMP, PD=POLICYD, CG=env.cgroup, PIN=env.pin_dir, PY=sys.executable)


def in_ns(script, log):
    """bash running NS_PRELUDE and script in a mount namespace of its own,
    its output in the file log."""
    return env.start(["unshare", "-m", "--propagation", "private", "bash", "-c", NS_PRELUDE + script],
                     stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=NS_ENV)


# ---- no journal, no /dev/log: a warning, then every line on stderr ----
pol(100)
err = path("err")
pd = in_ns('exec "$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN"', err)
ok(wait_file(err, "started:"), "without --foreground and without syslog, the start line is on stderr",
   tail(err))
is_((grep(err, "") or [""])[0], "policyd: warning: no journal and no syslog at /dev/log (No such file or "
    "directory): log lines go to stderr", "... after a warning that says why")
is_(sendline(env, port, "FLUSHALL now"), 13, "FLUSHALL is denied")
ok(wait_file(err, r'^policyd: deny rule=7 service=kv .* excerpt="FLUSHALL now\\n" '
             r'instance=policyd-test-logs-[0-9]+$', 5),
   "... and the deny line is on stderr, with the instance (the pin directory's last part)")
is_(env.stop(pd), 0, "SIGTERM: exit 0")
ok(grep(err, "^policyd: stopped: nothing attached, pins removed instance="), "the stop line too")

# ---- a syslog reader that stops reading ----
env.write("reader.py", """import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log"); os.chmod("/dev/log", 0o666)
out = open(sys.argv[1], "ab", buffering=0)
while True:
    out.write(s.recv(65536).rstrip(b"\\0") + b"\\n")
""")
pol(0, 'name = "edge-7";')
env.write("sink.log", "")
reader_out = path("reader.out")
err2 = path("err2")
pd = in_ns(r'''
	"$PY" "$TMP/reader.py" "$TMP/reader.out" & echo $! > "$TMP/reader.pid"
	for _ in $(seq 100); do [ -S /dev/log ] && break; sleep 0.05; done
	exec "$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN"''', err2)
ok(wait_file(reader_out, "started:"), "policyd logs to the reader on /dev/log", tail(err2))
rpid = int(open(path("reader.pid")).read())
env.pids.append(rpid)
ok(grep(reader_out, r"^<29>.* policyd\[[0-9]+\]: started: .* instance=edge-7$"),
   "... facility daemon, ident policyd, and daemon.name as the instance")
os.kill(rpid, signal.SIGSTOP)
# 12,000 audited lines (log_rate = 0: each one a log line) fill what the
# stopped reader's socket and policyd's queue hold (in sends of 200 lines,
# which the event ring buffer keeps up with); then a deny and a redirect,
# whose follow-up must not wait for the log
out = env.python("""
import socket, sys, time
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port))
for _ in range(60):
    a.sendall(b"KEYS x\\n" * 200); time.sleep(0.02)
time.sleep(1)
c = socket.create_connection(("127.0.0.1", port))
c.sendall(b"DEBUG while the log is stuck\\n")
b = socket.create_connection(("127.0.0.1", port))
t0 = time.time()
try:
    b.send(b"FLUSHALL\\n")
except OSError:
    pass
b.settimeout(30)
try:
    what = "eof" if not b.recv(1) else "data"
except socket.timeout:
    what = "timeout"
except OSError as e:
    what = "errno%d" % e.errno
print(what, int((time.time() - t0) * 1000))
""", port, timeout=120).split()
what, ms = out[0], int(out[1])
ok(what in ("errno103", "errno104", "eof"),
   "the denied connection is aborted while the reader is stopped (%s)" % what, " ".join(out))
ok(ms < slow(2000), "... within 2 s: %d ms" % ms)
ok(wait_file(path("sink.log"), r'data="DEBUG while the log is stuck\\n"', 2),
   "the diverted line is in the sink file while the reader is stopped")
os.kill(rpid, signal.SIGCONT)
ok(wait_file(reader_out, r"policyd\[[0-9]+\]: [0-9]+ log lines lost: the log reader did not keep up "
             r"and the queue of 4096 lines was full instance=edge-7$", 10),
   "once the reader reads again: how many lines were lost, counted")
lost = sum(int(re.search(r" ([0-9]+) log lines lost: ", l).group(1))
           for l in grep(reader_out, r" [0-9]+ log lines lost: "))
audits = len(grep(reader_out, "audit rule=8 "))
events = sum(int(re.search(r": ([0-9]+) events lost: the ring buffer was full", l).group(1))
             for l in grep(reader_out, r": [0-9]+ events lost: the ring buffer was full"))
ok(audits + lost + events >= 12000 and lost > 0,
   "... %d audit lines arrived, %d were counted lost (and %d events): none vanished"
   % (audits, lost, events))
is_(env.stop(pd), 0, "SIGTERM: exit 0")

# ---- log_rate under a flood: a bound for every kind of line ----
pol(100)
flood = path("flood")
pd = env.start([POLICYD, "run", "-c", path("p.conf"), "--cgroup", env.cgroup, "--pin-dir",
                env.pin_dir, "--foreground"], stdout=open(flood, "ab"), stderr=subprocess.STDOUT)
ok(wait_file(flood, "started:"), "policyd runs with log_rate = 100")
t0 = time.time()
# for 3 s: 300 audited lines every 0.1 s on one connection, a denied line
# on a new connection every 0.02 s
denies = int(env.python("""
import socket, sys, time
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port))
end = time.time() + 3; n = 0; nxt = 0
while time.time() < end:
    if time.time() >= nxt:
        a.sendall(b"KEYS y\\n" * 300); nxt = time.time() + 0.1
    b = socket.create_connection(("127.0.0.1", port))
    try:
        b.send(b"FLUSHALL\\n")
    except OSError:
        n += 1
    b.close(); time.sleep(0.02)
print(n)
""", port))
time.sleep(slow(2.5))
secs = int(time.time() - t0 + 1)
ev = len(grep(flood, r"^policyd: (deny|audit) rule="))
ok(ev <= 100 * secs, "at most log_rate event lines a second: %d in %d s" % (ev, secs))
sup = grep(flood, "^policyd: suppressed ")
ok(2 <= len(sup) <= secs, "one summary a second at most: %d in %d s" % (len(sup), secs),
   "\n".join(sup[:5]))
ok(grep(flood, r"^policyd: suppressed [0-9]+ audit, [0-9]+ deny lines over log_rate=100 per second "
        r"instance=|^policyd: suppressed [0-9]+ deny, [0-9]+ audit lines over log_rate=100 per second "
        r"instance="), "... counted by kind")
logged = len(grep(flood, "^policyd: deny rule=7 "))
counted = sum(int(x) for l in sup for x in re.findall(r"([0-9]+) deny", l))
is_(logged + counted, denies, "every deny (%d) is logged (%d) or counted (%d)" % (denies, logged, counted))
is_(len(grep(flood, "events lost")), 0,
    "no event was lost to the ring buffer (else the count above could not add up)")
is_(env.stop(pd), 0, "SIGTERM: exit 0")

# ---- the journal: structured fields ----
jd = shutil.which("systemd-journald") or "/lib/systemd/systemd-journald"
if os.access(jd, os.X_OK) and shutil.which("journalctl"):
    pol(100, 'name = "edge-7";')
    NS_ENV["JD"] = jd
    ns = in_ns(r'''
		mkdir -p /run/systemd/journal /run/log/journal
		[ ! -d /var/log/journal ] || mount -t tmpfs policyd-test-journal /var/log/journal
		"$JD" >"$TMP/journald.out" 2>&1 & echo $! > "$TMP/journald.pid"
		for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
		"$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN" &
		echo $! > "$TMP/pd.pid"
		while [ ! -e "$TMP/stop" ]; do sleep 0.1; done
		kill -TERM $(cat "$TMP/pd.pid"); wait $(cat "$TMP/pd.pid") || true
		journalctl -D /run/log/journal -o json --no-pager > "$TMP/journal.json"
		kill $(cat "$TMP/journald.pid")''', path("err3"))
    wait_until(lambda: os.path.exists(os.path.join(env.pin_dir, "pd_config")), 10, 0.1)
    time.sleep(slow(0.5))
    is_(sendline(env, port, "FLUSHALL from the journal test"), 13, "with journald there: FLUSHALL is denied")
    is_(sendline(env, port, "KEYS *"), 0, "... KEYS passes, audited")
    time.sleep(slow(1))
    env.write("stop", "")
    ns.wait(timeout=slow(60))
    entries = []
    try:
        with open(path("journal.json")) as f:
            entries = [json.loads(l) for l in f if l.strip()]
    except OSError:
        pass
    for e in entries:
        if e.get("SYSLOG_IDENTIFIER") == "policyd":
            print("# %s" % {k: v for k, v in e.items() if not k.startswith("_")}, flush=True)

    def check(**want):
        """An entry with each field as wanted (a value ending in * is a prefix)."""
        return any(all(e.get(k) == v or (v.endswith("*") and str(e.get(k, "")).startswith(v[:-1]))
                       for k, v in want.items()) for e in entries)

    ok(check(SYSLOG_IDENTIFIER="policyd", POLICYD_ACTION="deny", POLICYD_RULE="7",
             POLICYD_SERVICE="kv", POLICYD_COMM="python3", POLICYD_UID="0",
             POLICYD_DST="127.0.0.1:%d" % port, POLICYD_LEN="31", POLICYD_INSTANCE="edge-7",
             PRIORITY="4", SYSLOG_FACILITY="3", MESSAGE="deny rule=7 service=kv *"),
       "the deny is a journal entry with POLICYD_ACTION, _RULE, _SERVICE ... fields", tail(path("err3")))
    ok(check(POLICYD_ACTION="audit", POLICYD_RULE="8", POLICYD_EXCERPT="KEYS *\\n", PRIORITY="6"),
       "the audit entry: POLICYD_EXCERPT, priority info")
    ok(check(SYSLOG_IDENTIFIER="policyd", MESSAGE="started: *", POLICYD_INSTANCE="edge-7"),
       "the start line is in the journal, with the instance")
else:
    skip(1, "systemd-journald is not installed")
done()
