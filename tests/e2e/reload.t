#!/usr/bin/env python3
# Reload under load: 100 SIGHUP reloads, alternating between two policies,
# while four clients stream allowed lines and an attacker keeps sending a
# line both policies deny. Checked: every allowed byte arrives, in order,
# with no connection error; no denied byte ever arrives; every reload is
# logged. Then the switch time of a 10,000-rule policy, from the reload
# log line, against the 10 ms bound.
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import Env, Policyd, Recorder, done, is_, ok, slow, ROOT

env = Env("reload")
srv = Recorder()
port = srv.port
RELOADS = int(os.environ.get("PD_RELOADS", "100"))

rng = random.Random(11)
alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_-/."
# policy B: 500 more patterns (a reload rewrites a few thousand states);
# lines the clients send are digits, 'y' and spaces, which none matches
extra = ",\n".join('{ id = %d; action = "deny"; contains = "%s"; nocase = true; }'
                   % (i + 10, "".join(rng.choice(alphabet) for _ in range(rng.randint(8, 16))))
                   for i in range(500))
head = 'version = 1;\ndaemon = { log_rate = 0; };\nservices = ({ name = "kv"; ports = [ %d ]; ' \
       'framing = "line"; rules = (\n{ id = 1; action = "deny"; contains = "FLUSHALL"; },\n' % port
pol_a = head + '{ id = 2; action = "audit"; prefix = "PING"; }\n); });\n'
pol_b = head + extra + "\n); });\n"
conf = env.write("policy.conf", pol_b)
pd = Policyd(env, conf)
ok(pd.running(), "policyd runs (policy B, %d rules)" % 501)

STREAM = r'''
import os, random, socket, sys, time
n, port, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
r = random.Random(n); seq = 0; sent = 0; err = ""
while not os.path.exists(stop):
    k = r.randint(1, 24)
    buf = b"".join(b"c%d %08d %s\n" % (n, seq + i, b"y" * r.randint(0, 300)) for i in range(k))
    try:
        s.sendall(buf)
    except OSError as e:
        err = str(e); break
    seq += k; sent += len(buf)
    time.sleep(r.random() * 0.004)
s.shutdown(socket.SHUT_WR)
print(s.getsockname()[1], seq, sent, err or "-")
'''
ATTACK = r'''
import os, socket, sys, time
port, stop = int(sys.argv[1]), sys.argv[2]
tried = passed = 0
while not os.path.exists(stop):
    s = socket.create_connection(("127.0.0.1", port))
    tried += 1
    try:
        s.send(b"SET k 1\nFLUSHALL\n")
        passed += s.send(b"GET k\n") > 0
    except OSError:
        pass
    s.close(); time.sleep(0.002)
print(tried, passed)
'''
stop = os.path.join(env.tmp, "stop")


def in_cgroup(code, *args):
    return env.start(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', env.cgroup,
                      sys.executable, "-c", code] + [str(a) for a in args],
                     stdout=subprocess.PIPE, text=True)


streams = [in_cgroup(STREAM, n, port, stop) for n in range(4)]
attacker = in_cgroup(ATTACK, port, stop)
time.sleep(slow(0.5))

t0 = time.time()
for i in range(RELOADS):
    env.write("policy.conf", pol_a if i % 2 == 0 else pol_b)
    want = i + 2
    pd.signal(signal.SIGHUP)
    deadline = time.time() + slow(10)
    while time.time() < deadline:
        if re.search(r"reloaded: .* is generation %d " % want, pd.text()):
            break
        time.sleep(0.005)
    else:
        break
elapsed = time.time() - t0
reloads = re.findall(r"reloaded: .* is generation (\d+) ", pd.text())
is_(len(reloads), RELOADS, "%d reloads done and logged, under load (%.1f s)" % (RELOADS, elapsed))
ok(not pd.lines(r"reload refused"), "no reload was refused",
   "\n".join(pd.lines(r"reload refused|error|cannot")[:5]))

open(stop, "w").close()
results = [p.communicate(timeout=slow(30))[0].split() for p in streams]
tried, passed = map(int, attacker.communicate(timeout=slow(30))[0].split())
total = 0
for n, (cport, lines, sent, err) in enumerate(results):
    is_(err, "-", "client %d: no connection error across the reloads" % n)
    got = srv.got(int(cport), timeout=10)
    r = random.Random(n)
    want = b""
    seq = 0
    while seq < int(lines):
        k = r.randint(1, 24)
        want += b"".join(b"c%d %08d %s\n" % (n, seq + i, b"y" * r.randint(0, 300))
                         for i in range(k))
        seq += k
        r.random()
    ok(got == want, "client %d: all %s bytes (%s lines) arrived, in order" % (n, sent, lines),
       "got %d bytes, want %d; the connection %s" % (
           len(got), len(want),
           "ended with errno %d" % srv.errors[int(cport)] if int(cport) in srv.errors else
           "ended cleanly" if srv.done.get(int(cport)) and srv.done[int(cport)].is_set() else
           "had not ended"))
    total += len(got)
ok(total > 200000, "%d allowed bytes streamed during the reloads" % total)
ok(tried > 50 and passed == 0,
   "attacker: %d connections sent FLUSHALL during the reloads, none got past it" % tried)
with srv.lock:
    leaked = [p for p, b in srv.data.items() if b"FLUSHALL" in b]
is_(leaked, [], "the server never received FLUSHALL")
ok(not pd.lines(r"^policyd: deny rule=(?!1 )"), "no allowed line was denied by another rule")
is_(pd.stop(), 0, "policyd stops cleanly")

# the switch of a 10,000-rule policy
big = os.path.join(env.tmp, "big.conf")
subprocess.run([sys.executable, os.path.join(ROOT, "tests", "gen-patterns.py"), big, "10000"],
               check=True)
open(pd.log, "w").close()
pd = Policyd(env, big)
ok(pd.running(), "policyd runs a 10,000-rule policy")
for i in range(5):
    n = len(re.findall("reloaded:", pd.text()))
    pd.signal(signal.SIGHUP)
    deadline = time.time() + slow(30)
    while time.time() < deadline and len(re.findall("reloaded:", pd.text())) == n:
        time.sleep(0.02)
times = [tuple(map(float, m)) for m in re.findall(
    r"reloaded: .*\(1 services, 10000 rules, \d+ states\), mode \w+; compiled in ([\d.]+) ms, "
    r"written in ([\d.]+) ms, switched in ([\d.]+) ms", pd.text())]
ok(len(times) == 5, "5 reloads of the 10,000-rule policy",
   "%d; the log:\n%s" % (len(times), pd.text()[-2000:]))
if times:
    sw = [t[2] for t in times]
    ok(max(sw) < slow(10), "switch of a 10,000-rule policy: median %.3f ms, max %.3f ms "
       "(< 10 ms times PD_SLOW: %g ms); before it, compile median %.0f ms and write median "
       "%.0f ms while the old policy enforced"
       % (statistics.median(sw), max(sw), slow(10), statistics.median(t[0] for t in times),
          statistics.median(t[1] for t in times)))
is_(pd.stop(), 0, "policyd stops cleanly")
done()
