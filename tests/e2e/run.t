#!/usr/bin/env python3
"""policyd run as an operator meets it: refusals with a sentence and exit 3
that leave nothing behind, pins of another instance never reused, SIGHUP
reloads that open connections obey, and a bad reload that changes nothing."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (POLICYD, Conn, Env, Policyd, Recorder, done, fail_now, free_port,  # noqa: E402
                    is_, kv_policy, ok, output, sendlines, slow, wait_port, wait_until)

env = Env("run")
port = free_port()


def pol(name, *words):
    return env.write(name, kv_policy(port, 100, "", *words))


a = pol("a.conf", "FLUSHALL")
b = pol("b.conf", "FLUSHALL")

rc, out = output([POLICYD, "run", "-c", a, "--cgroup", "/tmp", "--pin-dir", env.pin_dir])
is_(rc, 3, "a cgroup that is not cgroup v2: exit 3")
is_(out, "policyd: /tmp is not a cgroup v2 directory", "... with a sentence")
ok(not os.path.exists(env.pin_dir), "... and nothing pinned")
bad = env.write("bad.conf", 'version = 1;\nservices = ( { name = "x"; ports = [ 0 ]; rules = (); } );\n')
rc, out = output([POLICYD, "run", "-c", bad, "--cgroup", env.cgroup, "--pin-dir", env.pin_dir])
is_(rc, 1, "an invalid policy: exit 1, nothing loaded")
rc, out = output([POLICYD, "stats", "--pin-dir", env.pin_dir])
is_(rc, 3, "stats without a running instance: exit 3 (%s)" % out)

# a listener that keeps every connection's bytes, outside the cgroup
server = Recorder(port=port)
if not wait_port(port):
    fail_now("the test's server listens on 127.0.0.1:%d" % port)

pd = Policyd(env, a)
ok(pd.running(), "policyd runs")
rc, out = output([POLICYD, "run", "-c", a, "--cgroup", env.cgroup, "--pin-dir", env.pin_dir])
is_(rc, 3, "a second instance on the same pins: exit 3")
ok("holds the pins of another policyd" in out, "... saying why", out)

# a connection from the cgroup that stays open: one send per line, the
# result (bytes or -errno) of each
conn = Conn(env, port)
is_(conn.say("SET a 1"), 8, "open connection: an allowed line passes")
is_(conn.say("SHUTDOWN now"), 13, "open connection: SHUTDOWN passes under policy 1")

pol("a.conf", "FLUSHALL", "SHUTDOWN")
ok(re.search(r"reloaded: policy .* is generation 2", pd.reload() or ""),
   "SIGHUP reloads (generation 2)")
is_(conn.say("SHUTDOWN now"), -13, "the open connection obeys the new rule at its next message")

conn.close()
conn2 = Conn(env, port)
is_(conn2.say("GET a"), 6, "a new connection under policy 2")
env.write("a.conf", 'version = 1; services = ( { name = "kv"; ports = [ 1 ]; rules = '
          '( { id = 1; action = "nope"; contains = "x"; } ); } );\n')
line = pd.reload() or ""
ok("reload refused: %s is invalid; policy generation 2 keeps enforcing" % a in line,
   "a bad reload is refused with a log line", line)
ok(pd.lines(re.escape(a + ":1: ")), "... which logs the error with file:line")
ok(pd.p.poll() is None, "... and policyd stays up")
is_(conn2.say("FLUSHALL"), -13, "... and policy 2 keeps enforcing")

is_(pd.stop(), 0, "SIGTERM: exit 0")

# log_rate: at most N event lines a second, the rest counted and reported
with open(b) as f:
    rest = f.read().split("\n", 1)[1]
c = env.write("c.conf", "version = 1; daemon = { log_rate = 3; };\n" + rest)
pd = Policyd(env, c)
ok(pd.running(), "policyd runs with log_rate = 3")
# one client process, twelve connections at once: a slow machine still
# sends them within a second or two
t0 = time.time()
sendlines(env, port, 12, "FLUSHALL")
# the summary comes at the next second's start: wait for it (10 s at most)
pd.wait_log("^policyd: suppressed ")
time.sleep(slow(1.5))
n = len(pd.own_lines("^policyd: deny rule=100"))
# the daemon's windows are its clock's seconds: the denies it read since
# t0 fall in at most this many of them, 3 lines each (a burst shorter
# than a second still spans two when it crosses a second's start)
windows = int(time.time() - t0) + 2
ok(3 <= n <= 3 * windows and n < 12,
   "12 denies: %d lines logged, in at most %d one-second windows" % (n, windows))
sup = sum(int(x) for x in re.findall(
    r"(?m)^policyd: suppressed (\d+) deny lines over log_rate=3 per second "
    r"instance=policyd-test-run-\d+$", pd.own_text()))
ok(sup > 0, "the suppressed lines are counted by kind and reported (%d)" % sup,
   "\n".join(pd.own_lines("suppressed")))
is_(n + sup, 12, "... every deny is either logged or counted")
is_(pd.rule_count(100), 12, "... while the counter has every one")
is_(pd.stop(), 0, "SIGTERM: exit 0")
ok(not os.path.exists(env.pin_dir), "pins removed")
rc, out = output(["bpftool", "cgroup", "show", env.cgroup])
is_(out, "", "nothing attached to the cgroup")
done()
