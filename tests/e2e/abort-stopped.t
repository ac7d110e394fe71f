#!/usr/bin/env python3
# No abort is lost while the daemon cannot act (issue 17, item 6). With
# policyd stopped (SIGSTOP), 5,000 connections from the cgroup each send a
# line that passes and one that is denied: more than the 4,096 entries the
# data plane's list of connections to abort once held (an LRU map, so that
# 904 of them and more would have stayed open for good, their sends
# failing and their clients waiting), and more deny events than the ring
# buffer holds. After SIGCONT every one of them is aborted: the client's
# read fails with ECONNABORTED, the server sees a reset and got the line
# before the deny, and nothing else. Then past what the map holds (twice
# max_connections): what found no room is counted, said, and recorded at
# its next send (here TCP's retransmission of the refused bytes), so it
# is aborted too.
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import Env, Policyd, done, fail_now, free_port, is_, ok, slow

N = 5000        # denied connections: above the old map's 4,096
env = Env("abort-stopped")
port = free_port()

# the server, outside the cgroup: per connection the bytes it got and how
# it ended; its tally once N connections ended, or the test says stop
SERVER = r"""
import errno, json, os, resource, selectors, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[3]),) * 2)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(4096)
ls.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(ls, selectors.EVENT_READ)
got, ends, n, ended = {}, {}, int(sys.argv[4]), 0
print("listening", flush=True)
while not os.path.exists(sys.argv[2]) and (got or ended < n):
    for key, _ in sel.select(0.2):
        if key.fileobj is ls:
            try:
                c, _ = ls.accept()
            except BlockingIOError:
                continue
            c.setblocking(False)
            got[c.fileno()] = b""
            sel.register(c, selectors.EVENT_READ)
            continue
        c = key.fileobj
        try:
            b = c.recv(4096)
            if b:
                got[c.fileno()] += b
                continue
            end = "eof"
        except OSError as e:
            end = errno.errorcode.get(e.errno, str(e.errno))
        ends[end] = ends.get(end, 0) + 1
        ended += 1
        if got.pop(c.fileno()) != b"GET a\n":
            ends["wrong bytes"] = ends.get("wrong bytes", 0) + 1
        sel.unregister(c)
        c.close()
ends["open"] = len(got)
print(json.dumps(ends), flush=True)
"""

# the clients, in the cgroup: N connections, each a line that passes and
# one that is denied (EACCES); "sent" once all are made; after "go" on
# stdin, each socket watched until its read fails or the time is up
CLIENTS = r"""
import errno, json, os, resource, select, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[4]),) * 2)
with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
port, n, wait = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[5])
socks, sent = [], {}
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.send(b"GET a\n")
    try:
        r = s.send(b"FLUSHALL\n")
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    sent[r] = sent.get(r, 0) + 1
    socks.append(s)
print(json.dumps(sent), flush=True)
sys.stdin.readline()
t0 = time.time()
poll = select.poll()
byfd = {s.fileno(): s for s in socks}
for fd in byfd:
    poll.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
ends = {}
while byfd and time.time() - t0 < wait:
    for fd, _ in poll.poll(200):
        try:
            end = "data" if byfd[fd].recv(10) else "eof"
        except OSError as e:
            end = errno.errorcode.get(e.errno, str(e.errno))
        ends[end] = ends.get(end, 0) + 1
        poll.unregister(fd)
        del byfd[fd]
ends["open"] = len(byfd)
print(json.dumps({"ends": ends, "secs": round(time.time() - t0, 2)}), flush=True)
"""

files = N + 200
resource.setrlimit(resource.RLIMIT_NOFILE, (files, max(files, resource.getrlimit(
    resource.RLIMIT_NOFILE)[1])))
stop = os.path.join(env.tmp, "stop")
srv = env.start([sys.executable, "-c", SERVER, str(port), stop, str(files), str(N)],
                stdout=subprocess.PIPE, text=True)
if srv.stdout.readline().strip() != "listening":
    fail_now("the test's server listens on 127.0.0.1:%d" % port)

conf = env.write("policy.conf", """
version = 1;
services = ( { name = "kv"; ports = [ %d ]; framing = "line";
  rules = ( { id = 1; action = "deny"; contains = "FLUSHALL"; } ); } );
""" % port)
pd = Policyd(env, conf)
if "a denied connection is not aborted" in pd.text():
    fail_now("policyd aborts denied connections on this kernel (its log:)", pd.text())

pd.signal(signal.SIGSTOP)
t0 = time.time()
cl = env.start([sys.executable, "-c", CLIENTS, env.cgroup, str(port), str(N), str(files),
                str(slow(60))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
sent = json.loads(cl.stdout.readline() or "{}")
made = time.time() - t0
is_(sent, {"EACCES": N}, "policyd stopped: %d connections made, each one's denied send "
    "failed with EACCES (%.1f s)" % (N, made))
st = pd.stats() or {"troubles": {}}
tr = st["troubles"]
is_((tr.get("aborts"), tr.get("abort_full")), (N, 0),
    "the data plane recorded every one of them to abort, and had room for all")
time.sleep(slow(1))
pd.signal(signal.SIGCONT)
cl.stdin.write("go\n")
cl.stdin.flush()
res = json.loads(cl.stdout.readline() or "{}")
is_(res.get("ends"), {"ECONNABORTED": N, "open": 0},
    "SIGCONT: every denied connection was aborted, its read failed with ECONNABORTED "
    "(in %s s)" % res.get("secs"))
try:
    srv.wait(timeout=slow(30))
except subprocess.TimeoutExpired:
    open(stop, "w").close()
ends = json.loads(srv.stdout.readline() or "{}")
is_(ends, {"ECONNRESET": N, "open": 0},
    "the server saw each one reset after the line before the deny, and no byte of the "
    "denied one")
tr = (pd.stats() or {"troubles": {}})["troubles"]
ok(tr.get("events_lost", 0) > 0, "though the deny events overflowed the ring buffer while "
   "policyd was stopped (%s lost)" % tr.get("events_lost"))
is_(pd.stop(), 0, "policyd stops cleanly")

# --- more doomed connections open at once than the map holds ---
# max_connections = 2: the map holds 4. Of 10 connections the first 2 are
# in the socket map (their deny is the sk_msg program's), the other 8 are
# not (the egress program refuses their bytes); all 10 are doomed while
# policyd is stopped, 6 find no room.
M = 10
port = free_port()
srv = env.start([sys.executable, "-c", SERVER, str(port), stop + "2", str(files), str(M)],
                stdout=subprocess.PIPE, text=True)
if srv.stdout.readline().strip() != "listening":
    fail_now("the test's server listens on 127.0.0.1:%d" % port)
conf = env.write("small.conf", """
version = 1;
daemon = { max_connections = 2; };
services = ( { name = "kv"; ports = [ %d ]; framing = "line";
  rules = ( { id = 1; action = "deny"; contains = "FLUSHALL"; } ); } );
""" % port)
pd = Policyd(env, conf)
pd.signal(signal.SIGSTOP)
cl = env.start([sys.executable, "-c", CLIENTS, env.cgroup, str(port), str(M), str(files),
                str(slow(30))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
sent = json.loads(cl.stdout.readline() or "{}")
is_(sent, {"EACCES": 2, "9": M - 2}, "max_connections = 2, policyd stopped: 2 connections "
    "denied, 8 outside the socket map whose bytes the egress program holds back")
time.sleep(slow(0.5))
tr = (pd.stats() or {"troubles": {}})["troubles"]
is_((tr.get("aborts"), tr.get("abort_full")), (4, M - 4),
    "4 recorded to abort (the map's room), 6 counted as finding none")
pd.signal(signal.SIGCONT)
cl.stdin.write("go\n")
cl.stdin.flush()
res = json.loads(cl.stdout.readline() or "{}")
is_(res.get("ends"), {"ECONNABORTED": M, "open": 0},
    "SIGCONT: all 10 were aborted, those without room once retransmitted (in %s s)"
    % res.get("secs"))
ok(pd.lines(r"^policyd: 6 denied connections not yet recorded to abort: more wait at once "
            r"than twice max_connections"), "the 6 are said in the log", pd.text()[-3000:])
is_(pd.stop(), 0, "policyd stops cleanly")
done()
