#!/usr/bin/env python3
# Aborts of denied connections while a listener takes a stream of new
# connections, so that request sockets (SYN_RECV) are being hashed all the
# time: the pattern under which a kernel's TCP iterator, before its fix,
# took a reference on a request socket that had none yet and logged
# "refcount_t: addition on 0; use-after-free" (issue 23). Where policyd
# runs its abort iterator, every denied connection is aborted (the client
# reads ECONNABORTED, the server sees a reset) and its bytes before the
# deny arrive; where the kernel's TCP iterator is not known to be fixed,
# policyd says so at start and never runs it, and the denied sends still
# fail. Either way the kernel logs no warning (the harness's check).
import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdtest import EACCES, Env, Policyd, Recorder, done, free_port, is_, ok, slow

DENIED = 40     # denied connections
env = Env("abort")
srv = Recorder()

# the listener under churn: accepts and closes, outside the cgroup
churn_port = free_port()
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", churn_port))
ls.listen(128)
accepted = [0]


def accept_loop():
    while True:
        try:
            c, _ = ls.accept()
        except OSError:
            return
        accepted[0] += 1
        c.close()


threading.Thread(target=accept_loop, daemon=True).start()
stop = os.path.join(env.tmp, "stop")
CHURN = r"""
import os, socket, sys
n = 0
while not os.path.exists(sys.argv[2]):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()
        n += 1
    except OSError:
        pass
print(n)
"""
churn = env.start([sys.executable, "-c", CHURN, str(churn_port), stop],
                  stdout=subprocess.PIPE, text=True)

conf = env.write("policy.conf", """
version = 1;
daemon = { log_rate = 1000; };
services = ( { name = "kv"; ports = [ %d ]; framing = "line";
  rules = ( { id = 1; action = "deny"; contains = "FLUSHALL"; } ); } );
""" % srv.port)
pd = Policyd(env, conf)
aborting = "a denied connection is not aborted" not in pd.text()


def links(pid):
    """The types of the BPF links process pid holds (its fdinfo)."""
    found = []
    d = "/proc/%d/fdinfo" % pid
    for fd in os.listdir(d):
        try:
            with open(os.path.join(d, fd)) as f:
                for line in f:
                    if line.startswith("link_type:"):
                        found.append(line.split()[1])
        except OSError:
            pass
    return sorted(found)


held = links(pd.p.pid)

# DENIED connections from the cgroup, eight at a time: each sends a line
# that passes and one that is denied, then reads; the result per
# connection: its local port, the second send's result, what the read got
CLIENTS = r"""
import json, os, socket, sys, threading
from concurrent.futures import ThreadPoolExecutor
with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
port, n, wait = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def one(_):
    s = socket.create_connection(("127.0.0.1", port))
    me = s.getsockname()[1]
    try:
        s.send(b"GET a\n")
        try:
            sent = s.send(b"FLUSHALL\n")
        except OSError as e:
            sent = -e.errno
        s.settimeout(wait)
        try:
            got = "data" if s.recv(10) else "eof"
        except socket.timeout:
            got = "timeout"
        except OSError as e:
            got = -e.errno
        return [me, sent, got]
    finally:
        s.close()
with ThreadPoolExecutor(8) as pool:
    print(json.dumps(list(pool.map(one, range(n)))))
"""
time.sleep(slow(0.5))   # the churn is on
t0 = time.time()
out = subprocess.run([sys.executable, "-c", CLIENTS, env.cgroup, str(srv.port), str(DENIED),
                      str(slow(10) if aborting else slow(1))],
                     capture_output=True, text=True, timeout=slow(120))
secs = time.time() - t0
open(stop, "w").close()
churned = int(churn.communicate(timeout=slow(30))[0] or 0)

try:
    results = json.loads(out.stdout)
except ValueError:
    results = []
is_(len(results), DENIED, "%d denied connections ran (%.1f s), while %d other connections "
    "were made to a listener (%d accepted)" % (DENIED, secs, churned, accepted[0]))
ok(churned >= 100, "the listener took a stream of new connections (%d)" % churned)
is_(sorted(set(r[1] for r in results)), [EACCES], "every denied send failed with EACCES")
if aborting:
    is_([r for r in results if r[2] != -errno.ECONNABORTED], [],
        "every denied connection was aborted: its read failed with ECONNABORTED")
    resets = [srv.errors.get(r[0]) for r in results]
    is_([x for x in resets if x != errno.ECONNRESET], [],
        "... and the server saw each one reset")
    ok("iter" in held, "policyd holds its abort iterator (links: %s)" % held)
else:
    ok("warning: kernel %s: its TCP iterator can take a reference on a listener's new "
       "request socket" % os.uname().release in pd.text(),
       "policyd says why it does not run its abort iterator on this kernel (%s)"
       % os.uname().release, pd.text())
    ok("iter" not in held, "... and holds no iterator (links: %s)" % held)
    is_([r for r in results if r[2] != "timeout"], [],
        "... and no denied connection was aborted: each read waited for a reply")
got = [srv.got(r[0]) for r in results]
is_([g for g in got if g != b"GET a\n"], [],
    "the server got each connection's line before the deny, and nothing of the denied one")
is_(pd.rule_count(1), DENIED, "rule 1 counted every deny")
is_(pd.stop(), 0, "policyd stops cleanly")
done()
