#!/usr/bin/env python3
# Connections policyd did not see begin, and sockets that change their
# connection: each is judged, refused, or left alone, never passed
# unjudged. A connection open before the start that the full socket map
# refuses at adoption has its bytes refused and is aborted; a blocking
# send already under way at the start queues nothing after its adoption
# that leaves; a policed socket disconnected (connect(AF_UNSPEC)) and
# connected to a port no policy names sends freely; a thread that only
# reads beside one that sends does not make the sender look like two.
import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import Env, Policyd, Recorder, done, free_port, is_, ok, slow, wait_until

env = Env("adopt")


def inside(code, *args, wait=True, timeout=120):
    """Python code run as a process of the test's cgroup; its JSON output."""
    prog = ("import os\nopen(os.path.join(%r, 'cgroup.procs'), 'w').write(str(os.getpid()))\n"
            % env.cgroup) + code
    cmd = [sys.executable, "-c", prog] + [str(a) for a in args]
    if not wait:
        return env.start(cmd, stdout=subprocess.PIPE, text=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=slow(timeout))
    if out.returncode:
        raise RuntimeError("client failed (status %d): %s" % (out.returncode, out.stderr))
    return json.loads(out.stdout)


def policy(name, port, daemon="", more=()):
    return env.write(name, """
version = 1;
daemon = { log_rate = 0; %s };
services = ( { name = "kv"; ports = [ %s ]; framing = "line";
  rules = ( { id = 1; action = "deny"; contains = "FORBIDDEN"; } ); } );
""" % (daemon, ", ".join(str(p) for p in (port,) + tuple(more))))


# --- the socket map full at adoption ---
rec = Recorder()
go, out = os.path.join(env.tmp, "go"), os.path.join(env.tmp, "out")
opener = inside(r"""
import json, os, socket, sys, time
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(6)]
print("open", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
res = {}
for s in socks:
    for line in (b"hello\n", b"FORBIDDEN\n", b"after\n"):
        try:
            r = s.send(line)
        except OSError as e:
            r = -e.errno
        res.setdefault(s.getsockname()[1], []).append(r)
        time.sleep(float(sys.argv[3]))      # time for policyd to abort a refused one
s.settimeout(10)
ends = {}
for s in socks:
    try:
        ends[s.getsockname()[1]] = "data" if s.recv(10) else "eof"
    except socket.timeout:
        ends[s.getsockname()[1]] = "open"
    except OSError as e:
        ends[s.getsockname()[1]] = -e.errno
print(json.dumps({"sends": res, "ends": ends}), flush=True)
""", rec.port, go, slow(0.2), wait=False)
opener.stdout.readline()
pd = Policyd(env, policy("full.conf", rec.port, "max_connections = 4;"))
open(go, "w").close()
r = json.loads(opener.stdout.readline() or "{}")
# the refused ones: their first line leaves the process (the egress
# program holds it back), then the abort fails the next send
refused = [p for p, v in r.get("sends", {}).items() if v[1] != -errno.EACCES]
time.sleep(slow(0.5))
ok(pd.lines(r"^policyd: started: .* 4 open connections adopted"),
   "6 connections open before the start, max_connections = 4: 4 adopted")
is_(len(pd.lines(r"^policyd: connection \d+ -> %d NOT policed: the socket map refused it "
                 r"\(.*\): its bytes are refused and the connection aborted \(fail_mode "
                 r"closed\)" % rec.port)), 2,
    "the 2 the map refused are said, with what becomes of them")
is_(len(refused), 2, "4 connections judged (FORBIDDEN fails with EACCES), 2 not (%s)"
    % r.get("sends"))
ok(all(b"FORBIDDEN" not in rec.got(int(p), timeout=1) for p in r.get("sends", {})),
   "no FORBIDDEN line reached the server from any of the 6")
ok(refused and all(r["sends"][p][1] == -errno.ECONNABORTED for p in refused),
   "the 2 refused connections are aborted: their next send fails with ECONNABORTED")
ok(pd.lines(r"^policyd: refuse cause=sockhash_refused service=kv "), "... and logged")
is_(pd.stop(), 0, "policyd stops")
opener.wait()

# --- a blocking send under way at the start ---
# the server's receive window is 64 KiB (SO_RCVBUF before listen(): no
# autotuning) and it reads at most 256 KiB before policyd has started,
# so the 8 MiB send is certainly under way at the start, however long
# the start takes
SIZE = 800 * 1024 * 10
port = free_port()
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
ls.bind(("127.0.0.1", port))
ls.listen(4)
started = threading.Event()
state = {"after": 0, "total": 0, "end": None}


def slow_reader():
    c, _ = ls.accept()
    try:
        while True:
            if state["total"] >= 256 << 10:
                started.wait()
            b = c.recv(65536)
            if not b:
                state["end"] = "eof"
                break
            state["total"] += len(b)
            if started.is_set():
                state["after"] += len(b)
            time.sleep(0.02)
    except OSError as e:
        state["end"] = e.errno


reader = threading.Thread(target=slow_reader, daemon=True)
reader.start()
sender = inside(r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
try:
    n = s.send(b"FORBIDDEN\n" * (800 * 1024))
except OSError as e:
    n = -e.errno
print(n, flush=True)
""", port, wait=False)
time.sleep(slow(0.3))
pd = Policyd(env, policy("inflight.conf", port))
started.set()
n = int(sender.communicate(timeout=slow(60))[0] or 0)
reader.join(timeout=slow(20))
ok(n < SIZE, "a blocking 8 MiB send begun before the start does not finish (%d of %d)" % (n, SIZE))
# what the socket had queued at its adoption still arrives (its send
# buffer, the server's receive buffer: some 300 KiB here); the rest of
# the 8 MiB does not
ok(state["after"] < 512 << 10, "after the start the server read only what was queued before "
   "the adoption: %d bytes of %d sent" % (state["after"], n))
ok(state["end"] == errno.ECONNRESET, "the connection is aborted (the server's read: %s)"
   % state["end"])
ok(pd.lines(r"^policyd: refuse cause=unjudged service=kv "), "... and the refusal logged")
is_(pd.stop(), 0, "policyd stops")

# --- disconnect, then a port no policy names ---
policed, free = Recorder(), Recorder()
pd = Policyd(env, policy("disc.conf", policed.port))
res = inside(r"""
import ctypes, json, socket, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
res = []
for i in range(4):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.send(b"hello\n")
    try:
        s.send(b"FORBIDDEN\n")
    except OSError:
        pass
    time.sleep(0.05)
    unspec = struct.pack("H14x", 0)
    r = libc.connect(s.fileno(), unspec, len(unspec))
    s.connect(("127.0.0.1", int(sys.argv[2])))
    try:
        s.sendall(b"allowed %d\n" % i)
        s.sendall(b"FORBIDDEN is no word here\n")
        e = 0
    except OSError as ex:
        e = ex.errno
    res.append([s.getsockname()[1], r, e])
    s.close()
print(json.dumps(res))
""", policed.port, free.port)
is_([x[2] for x in res], [0] * 4,
    "a socket denied on a policed port, disconnected and connected to another port: "
    "its sends there succeed")
ok(all(free.got(p, timeout=2) == b"allowed %d\nFORBIDDEN is no word here\n" % i
       for i, (p, _, _) in enumerate(res)), "... and the server there gets every byte")
is_(pd.stop(), 0, "policyd stops")

# --- disconnect, then a policed port again ---
# the socket is still in the socket map (tcp_bpf has no unhash): it is
# policed on, with nothing of its first connection (a held line) carried
# over; the held line is logged as lost
first, second = Recorder(), Recorder()
pd = Policyd(env, policy("again.conf", first.port, more=[second.port]))
res = inside(r"""
import ctypes, json, socket, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
res = []
for port in (int(sys.argv[1]), int(sys.argv[2])):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.send(b"first\nheld, never ended ")
    time.sleep(0.1)
    unspec = struct.pack("H14x", 0)
    libc.connect(s.fileno(), unspec, len(unspec))
    s.connect(("127.0.0.1", port))
    out = [s.getsockname()[1]]
    for m in (b"second\n", b"FORBIDDEN\n", b"third\n"):
        try:
            out.append(s.send(m))
        except OSError as ex:
            out.append(-ex.errno)
        time.sleep(0.2)
    res.append(out)
    s.close()
print(json.dumps(res))
""", first.port, second.port)
same, other = res
ok(same[1:3] == [7, -errno.EACCES] and other[1:3] == [7, -errno.EACCES],
   "a policed socket disconnected and connected to a policed port again (the same, another): "
   "an allowed line is sent, a denied one refused", repr(res))
got = [first.got(same[0], timeout=3), second.got(other[0], timeout=3)]
ok(got == [b"second\n", b"second\n"],
   "... the server gets the allowed line alone, nothing of the first connection's held line",
   repr(got))
ok(wait_until(lambda: len(pd.own_lines(r"^policyd: refuse cause=closed_held service=kv .* len=18 "))
              == 2 and len(pd.own_lines(r"^policyd: deny rule=1 ")) == 2, 5),
   "... the held line is logged as lost when its connection ended (len=18), the denied "
   "lines as denied", pd.text()[-1500:])
is_(pd.stop(), 0, "policyd stops")

# --- a reading thread beside the sending one ---
port = free_port()
es = socket.socket()
es.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
es.bind(("127.0.0.1", port))
es.listen(8)


def echo(c):
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            c.sendall(b)
    except OSError:
        pass
    c.close()


def serve():
    while True:
        try:
            c, _ = es.accept()
        except OSError:
            return
        threading.Thread(target=echo, args=(c,), daemon=True).start()


threading.Thread(target=serve, daemon=True).start()
pd = Policyd(env, policy("reader.conf", port))
res = inside(r"""
import json, signal, socket, sys, threading, time
signal.signal(signal.SIGALRM, lambda *a: None)
signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
res = []
for i in range(4):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.settimeout(10)
    def read():
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass
    threading.Thread(target=read, daemon=True).start()
    err, t0 = 0, time.time()
    try:
        while time.time() - t0 < 1:
            s.sendall(b"a" * 1000 + b"\n" * 1 + (b"b" * 999 + b"\n") * 999)
    except OSError as e:
        err = e.errno
    res.append(err)
    s.close()
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print(json.dumps(res))
""", port)
is_(res, [0] * 4, "one thread sends (cut short by signals, resumed by sendall), another only "
    "reads: no send fails")
ok(not pd.lines(r"^policyd: refuse cause=concurrent"), "nothing is refused as concurrent")
is_(pd.stop(), 0, "policyd stops")
done()
