#!/usr/bin/env python3
# The enforcement boundary: send paths that sk_msg alone does not judge
# are judged or refused. Each case is an attack a policed process could
# try, checked by what the server received, the errno the sender saw and
# the log line: a send after a short count (non-blocking, and blocking cut
# by a signal), two threads on one socket, urgent data, Multipath TCP,
# TCP Fast Open, kernel TLS, a send that races the handshake, a full
# socket map; and
# that allowed bytes around them arrive whole.
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import POLICYD, Env, Policyd, Recorder, done, is_, ok, skip, slow

env = Env("boundary")
kv, raw = Recorder(), Recorder()
held = Recorder(rcvbuf=64 << 10)        # for the short count, on kv's policy


def run_inside(code, *args, timeout=60):
    """Run python code as a process of the policed cgroup; its stdout is
    parsed as JSON."""
    prog = ("import os, sys\n"
            "open(os.path.join(%r, 'cgroup.procs'), 'w').write(str(os.getpid()))\n" %
            env.cgroup) + code
    out = subprocess.run([sys.executable, "-c", prog] + [str(a) for a in args],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError("client failed: " + out.stderr)
    return json.loads(out.stdout)


conf = env.write("policy.conf", """
version = 1;
daemon = { log_rate = 0; max_connections = 8; };
services = (
  { name = "kv"; ports = [ %d, %d ]; framing = "line";
    rules = ( { id = 1; action = "deny"; contains = "FORBIDDEN"; } ); },
  { name = "raw"; ports = [ %d ]; framing = "none";
    rules = ( { id = 2; action = "deny"; contains = "FORBIDDEN"; } ); }
);
""" % (kv.port, held.port, raw.port))
pd = Policyd(env, conf)
if not ok(pd.running(), "policyd runs", pd.text()):
    done()
# SMC where this kernel has it (loaded, built in, or a module file)
with open("/proc/net/protocols") as f:
    smc = (os.path.exists("/sys/module/smc") or any(l.startswith("SMC") for l in f) or
           os.path.isdir("/lib/modules/%s/kernel/net/smc" % os.uname().release))
ok(pd.lines(r"^policyd: boundary: every send of the cgroup's TCP sockets on a policed port is "
            r"judged or refused \(fail_mode closed\); not covered: UDP, Unix sockets, %sTCP "
            r"sockets made outside %s( instance=\S+)?$" %
            ("SMC over RDMA or shared memory, " if smc else "", re.escape(env.cgroup))),
   "the start says what stays open on this host%s" % (" (SMC: this kernel has it)" if smc else ""),
   pd.text())

# --- a send after a short count ---
# the server's receive window is 64 KiB (SO_RCVBUF before listen(): no
# autotuning) and it reads nothing until the first send has returned, so
# 8 MiB cannot fit through a 256 KiB send buffer whatever the kernel or
# the machine's pace
SHORT = r"""
import json, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 << 10)
s.setblocking(False)
big = (b"a" * 1023 + b"\n") * 8192          # 8 MiB of allowed lines
try:
    n = s.send(big)
except BlockingIOError:
    n = 0
res = {"first": n, "port": s.getsockname()[1]}
print(json.dumps(res), flush=True)
sys.stdin.readline()                    # the server reads from now on
mode = sys.argv[2]
s.setblocking(True)
try:
    if mode == "deny":
        res["second"] = s.send(b"\nFORBIDDEN\n")
    else:
        s.sendall(big[n:] + b"tail\n")   # what a careful sender does next
        res["second"] = 0
except OSError as e:
    res["second"] = -e.errno
time.sleep(0.5)
s.close()
print(json.dumps(res))
"""


def short_count(mode):
    """The client above in the policed cgroup; the server starts reading
    once its first send has returned. Its last line, parsed."""
    held.reading.clear()
    prog = ("import os\n"
            "open(os.path.join(%r, 'cgroup.procs'), 'w').write(str(os.getpid()))\n" %
            env.cgroup) + SHORT
    c = subprocess.Popen([sys.executable, "-c", prog, str(held.port), mode],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        first = c.stdout.readline()
        held.reading.set()
        out, err = c.communicate("go\n", timeout=slow(60))
    finally:
        held.reading.set()
        if c.poll() is None:
            c.kill()
            c.wait()
    if c.returncode or not out.strip():
        raise RuntimeError("client failed (%r): %s" % (first, err))
    return json.loads(out.splitlines()[-1])


r = short_count("deny")
got = held.got(r["port"])
ok(0 < r["first"] < 8 << 20, "non-blocking send of 8 MiB returns a short count (%d)" % r["first"])
ok(b"FORBIDDEN" not in got, "the next send's denied line does not reach the server",
   "server got %d bytes" % len(got))
ok(pd.lines(r"^policyd: deny rule=1 service=kv .*excerpt=\"FORBIDDEN"),
   "... and it is logged as a deny")
r = short_count("allow")
got = held.got(r["port"], timeout=60)
want = (b"a" * 1023 + b"\n") * 8192 + b"tail\n"
ok(r["second"] == 0 and got == want,
   "after a short count, the rest and what follows arrive whole, in order",
   "second %r, server got %d bytes (want %d), first difference at %s" % (
       r["second"], len(got), len(want),
       next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))))

# --- a blocking send cut short by a signal ---
# a server that lets the sender block before it reads; on ::1 (the policy
# is by port)
slow_srv = subprocess.Popen([sys.executable, "-c", r"""
import socket, sys, time
ls = socket.socket(socket.AF_INET6); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("::1", int(sys.argv[1]))); ls.listen(4)
open(sys.argv[3], "w").close()
c, _ = ls.accept()
time.sleep(1.5)                              # let the sender block
data = b""
c.settimeout(3)
try:
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        data += b
except OSError:
    pass
open(sys.argv[2], "wb").write(data)
""", str(kv.port), env.tmp + "/slow.out", env.tmp + "/slow.ready"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
env.procs.append(slow_srv)
for _ in range(100):
    if os.path.exists(env.tmp + "/slow.ready"):
        break
    time.sleep(0.05)
r = run_inside(r"""
import json, signal, socket, sys, time
signal.signal(signal.SIGALRM, lambda *a: None)
s = socket.create_connection(("::1", int(sys.argv[1])))
n = 0
for _ in range(5):          # a signal before the first byte: try again
    signal.setitimer(signal.ITIMER_REAL, 0.4)
    try:
        n = s.send((b"b" * 1023 + b"\n") * 8192)
        break
    except InterruptedError:
        pass
res = {"first": n}
try:
    res["second"] = s.send(b"\nFORBIDDEN\n")
except OSError as e:
    res["second"] = -e.errno
time.sleep(2)
s.close()
print(json.dumps(res))
""", kv.port)
slow_srv.wait(timeout=30)
got = open(env.tmp + "/slow.out", "rb").read()
ok(0 < r["first"] < 8 << 20, "a blocking send cut short by a signal (%d bytes)" % r["first"])
ok(b"FORBIDDEN" not in got and len(got) >= r["first"],
   "the next send's denied line does not reach the server; the bytes before it do",
   "result %r, server got %d bytes" % (r, len(got)))

# a big send over IPv6 (its GSO packets carry a hop-by-hop header)
kv6 = Recorder("::1", kv.port)
r = run_inside(r"""
import json, socket, sys, time
s = socket.create_connection(("::1", int(sys.argv[1])))
s.sendall((b"d" * 1023 + b"\n") * 4096)
time.sleep(0.3)
print(json.dumps({"port": s.getsockname()[1]}))
""", kv.port)
ok(kv6.got(r["port"], timeout=10) == (b"d" * 1023 + b"\n") * 4096,
   "4 MiB of allowed lines over IPv6 arrive whole")
kv6.ls.shutdown(socket.SHUT_RDWR)    # free [::1]:port (wakes its accept)
kv6.ls.close()

# --- two threads on one socket ---
r = run_inside(r"""
import json, socket, sys, threading, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
stop = time.time() + 3
res = {"a": [], "b": []}
def a():
    block = (b"c" * 1023 + b"\n") * 8192
    while time.time() < stop:
        try:
            s.sendall(block)
        except OSError as e:
            res["a"].append(e.errno)
            return
def b():
    while time.time() < stop:
        try:
            s.send(b"\nFORBIDDEN\n")
        except OSError as e:
            res["b"].append(e.errno)
            return
        time.sleep(0.02)
ta, tb = threading.Thread(target=a), threading.Thread(target=b)
ta.start(); tb.start(); ta.join(); tb.join()
res["port"] = s.getsockname()[1]
s.close()
print(json.dumps(res))
""", kv.port)
got = kv.got(r["port"], timeout=10)
ok(b"FORBIDDEN" not in got, "two threads: no denied line of the second thread reaches the server",
   "server got %d bytes, results %r" % (len(got), r))
ok(r["b"] and r["b"][0] in (errno.EACCES, errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED),
   "... its send is refused (%r)" % r["b"])

# --- urgent data ---
# over IPv4, or ("6") over IPv6 from a socket with every extension header
# a process may set on it (CAP_NET_RAW): hop-by-hop, destination options
# before and after a routing header, and a segment routing header, which
# the egress program reads past to the TCP header
OOB = r"""
import json, socket, sys, time
if sys.argv[2] == "6":
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    pad = bytes([0, 0, 1, 4, 0, 0, 0, 0])               # PadN, 8 bytes
    srh = bytes([0, 2, 4, 0, 0, 0, 0, 0]) + socket.inet_pton(socket.AF_INET6, "::1")
    for opt, val in ((54, pad), (57, srh), (55, pad), (59, pad)):
        s.setsockopt(socket.IPPROTO_IPV6, opt, val)     # HOPOPTS, RTHDR, RTHDRDSTOPTS, DSTOPTS
    s.connect(("::1", int(sys.argv[1])))
else:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
res = []
for data, flags in ((b"FORBID", 0), (b"X", socket.MSG_OOB), (b"DEN\n", 0)):
    try:
        res.append(s.send(data, flags))
    except OSError as e:
        res.append(-e.errno)
    time.sleep(0.1)
time.sleep(0.5)
print(json.dumps({"res": res, "port": s.getsockname()[1]}))
"""
r = run_inside(OOB, raw.port, "4")
got = raw.got(r["port"])
ok(b"FORBIDDEN" not in got.replace(b"X", b"") and b"X" not in got,
   "MSG_OOB: the urgent byte is refused; the stream never shows the denied word",
   "results %r, server got %r" % (r["res"], got))
ok(pd.lines(r"^policyd: refuse cause=oob service=raw "), "... and logged as refused")
raw6 = Recorder(host="::1", port=raw.port)
for k in ("all", "lo"):     # the network namespace is the test's own
    with open("/proc/sys/net/ipv6/conf/%s/seg6_enabled" % k, "w") as f:
        f.write("1")
r = run_inside(OOB, raw.port, "6")
got = raw6.got(r["port"])
ok(b"FORBIDDEN" not in got.replace(b"X", b"") and b"X" not in got and got.startswith(b"FORBID"),
   "MSG_OOB over IPv6 behind four extension headers: refused as well",
   "results %r, server got %r" % (r["res"], got))
# under line framing the unfinished line is held, urgent byte and all:
# it leaves later as part of the line, not as urgent data
r = run_inside(OOB, kv.port, "4")
got = kv.got(r["port"])
ok(b"FORBIDDEN" not in got,
   "MSG_OOB into a held line: the urgent byte does not split a denied line past the filter",
   "results %r, server got %r" % (r["res"], got))

# --- Multipath TCP ---
r = run_inside(r"""
import json, socket
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    print(json.dumps({"errno": 0}))
except OSError as e:
    print(json.dumps({"errno": e.errno}))
""")
is_(r["errno"], errno.ENOPROTOOPT, "an MPTCP socket is refused as on a kernel without MPTCP")
ok(pd.lines(r"^policyd: refuse cause=mptcp "), "... and logged")

# --- TCP Fast Open ---
r = run_inside(r"""
import json, socket, sys
res = {}
s = socket.socket()
try:
    s.sendto(b"FORBIDDEN\n", socket.MSG_FASTOPEN, ("127.0.0.1", int(sys.argv[1])))
    res["sendto"] = 0
except OSError as e:
    res["sendto"] = e.errno
s = socket.socket()
try:
    s.setsockopt(socket.IPPROTO_TCP, 30, 1)      # TCP_FASTOPEN_CONNECT
    res["setsockopt"] = 0
except OSError as e:
    res["setsockopt"] = e.errno
print(json.dumps(res))
""", kv.port)
is_(r["sendto"], errno.EOPNOTSUPP, "sendto(MSG_FASTOPEN) to a policed port is refused")
is_(r["setsockopt"], errno.EOPNOTSUPP, "TCP_FASTOPEN_CONNECT is refused")

# --- kernel TLS ---
# TLS_TX on a socket in the socket map: refused with EINVAL (what kernels
# with "tls: reject the combination of TLS and sockmap" answer; before it,
# the redirect that lets judged bytes out would push the plaintext past
# the TLS layer), logged; the connection goes on in clear and is judged.
# A connection on a port no service names is left to the kernel: kTLS
# where the kernel has TLS, built in or as a module that loads on demand
# (the kernel matrix), else ENOENT for the ULP and ENOPROTOOPT for TLS_TX.
free = Recorder()
r = run_inside(r"""
import json, socket, struct, sys
def tls(s):
    out = {}
    try:
        s.setsockopt(socket.IPPROTO_TCP, 31, b"tls")     # TCP_ULP
        out["ulp"] = 0
    except OSError as e:
        out["ulp"] = e.errno
    # tls12_crypto_info_aes_gcm_128: TLS 1.2, AES-GCM-128, iv, key, salt, rec_seq
    info = struct.pack("<HH", 0x0303, 51) + bytes(8 + 16 + 4 + 8)
    for name, opt in (("tx", 1), ("rx", 2)):               # SOL_TLS: TLS_TX, TLS_RX
        try:
            s.setsockopt(282, opt, info)
            out[name] = 0
        except OSError as e:
            out[name] = e.errno
    return out
res = {}
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
res["policed"] = tls(s)
s.sendall(b"in clear after ktls\n")
res["port"] = s.getsockname()[1]
u = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
res["free"] = tls(u)
print(json.dumps(res))
""", kv.port, free.port)
is_((r["policed"]["tx"], r["policed"]["rx"]), (errno.EINVAL, errno.EINVAL),
    "TLS_TX and TLS_RX on a policed connection are refused with EINVAL")
ok(pd.lines(r"^policyd: refuse cause=ktls service=kv .*src=127\.0\.0\.1:%d " % r["port"]),
   "... logged with the connection", pd.text())
is_(kv.got(r["port"]), b"in clear after ktls\n", "... which goes on in clear, judged")
tls_dir = "/lib/modules/%s/kernel/net/tls" % os.uname().release
tls_here = (r["free"]["ulp"] == 0 or os.path.isdir("/sys/module/tls") or
            (os.path.isdir(tls_dir) and any(n.startswith("tls.ko") for n in os.listdir(tls_dir))))
if tls_here:
    is_((r["free"]["ulp"], r["free"]["tx"], r["free"]["rx"]), (0, 0, 0),
        "kernel TLS on a port no service names is left to the kernel: set up")
else:
    is_((r["free"]["ulp"], r["free"]["tx"]), (errno.ENOENT, errno.ENOPROTOOPT),
        "kernel TLS on a port no service names is left to the kernel: no tls module here")

# --- a send that races the handshake ---
# a listener whose accept queue is full drops the SYN: the client stays in
# SYN_SENT until the retransmission a second later. A sender waiting for
# the handshake lets its data carry the handshake's last ACK: refused,
# the data never leaves, and the abort that follows resets the server's
# half-open connection, which it then never accepts.
r = run_inside(r"""
import errno, json, socket, sys, time
port = int(sys.argv[1])
ls = socket.socket(socket.AF_INET6)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("::1", port)); ls.listen(0)
filler = socket.create_connection(("::1", port))
time.sleep(0.1)
c = socket.socket(socket.AF_INET6)
c.setblocking(False)
try:
    c.connect(("::1", port))
except BlockingIOError:
    pass
res = {}
c.setblocking(True)
import threading
srv = None
def accept_later():
    global srv
    time.sleep(0.3)
    a, _ = ls.accept()          # room in the queue: the retransmitted SYN gets in
    a.close()
    ls.settimeout(4)
    try:
        srv, _ = ls.accept()
        srv.settimeout(3)
    except OSError:
        pass
t = threading.Thread(target=accept_later, daemon=True)
t.start()
try:
    res["send"] = c.send(b"FORBIDDEN\n")     # waits for the handshake inside the kernel
except OSError as e:
    res["send"] = -e.errno
c.settimeout(3)
try:
    res["read"] = "data" if c.recv(10) else "eof"
except socket.timeout:
    res["read"] = "timeout"
except OSError as e:
    res["read"] = -e.errno
t.join()
data = b""
try:
    while srv:
        b = srv.recv(4096)
        if not b:
            break
        data += b
except Exception:
    pass
res["got"] = data.hex()
print(json.dumps(res))
""", kv.port, timeout=30)
is_(bytes.fromhex(r["got"]), b"", "a send made while the handshake is under way never reaches the "
    "server (result %r)" % r["send"])
if "a denied connection is not aborted" in pd.text():
    skip(1, "kernel: %s cannot destroy a TCP socket through sock_diag" % os.uname().release)
else:
    is_(r["read"], -errno.ECONNABORTED, "... and the connection is aborted")

# --- the socket map's capacity ---
socks = run_inside(r"""
import json, socket, sys, time
port = int(sys.argv[1])
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
time.sleep(0.3)
res = []
for c in conns:
    try:
        res.append(c.send(b"hello\n"))
    except OSError as e:
        res.append(-e.errno)
time.sleep(0.5)
print(json.dumps({"res": res, "ports": [c.getsockname()[1] for c in conns]}))
""", kv.port)
arrived = [kv.got(p, timeout=1) == b"hello\n" for p in socks["ports"]]
ok(sum(arrived) <= 8 and sum(arrived) >= 1,
   "max_connections = 8: at most 8 connections are policed and pass (%d did)" % sum(arrived))
ok(pd.lines(r"^policyd: refuse cause=sockhash_refused service=kv "),
   "... the others' bytes are refused and logged")

st = pd.stats()
ok(st and st["troubles"].get("oob", 0) >= 1 and st["troubles"].get("mptcp", 0) >= 1 and
   st["troubles"].get("ktls", 0) >= 2,
   "the refusals are counted by cause in stats", st and st["troubles"])
is_(pd.stop(), 0, "SIGTERM: policyd exits 0")

# --- a socket set for Fast Open while no policyd ran ---
# its connect to a policed port is refused once policyd runs, as on a
# kernel where Fast Open is off, and what it would send never leaves
ready, go = env.tmp + "/tfo.ready", env.tmp + "/tfo.go"
tfo = subprocess.Popen([sys.executable, "-c", r"""
import json, os, socket, sys, time
open(os.path.join(sys.argv[1], "cgroup.procs"), "w").write(str(os.getpid()))
s = socket.socket()
s.setsockopt(socket.IPPROTO_TCP, 30, 1)      # TCP_FASTOPEN_CONNECT
open(sys.argv[3], "w").close()
while not os.path.exists(sys.argv[4]):
    time.sleep(0.01)
try:
    s.connect(("127.0.0.1", int(sys.argv[2])))
    s.sendall(b"FORBIDDEN before\n")
    res = 0
except OSError as e:
    res = e.errno
print(json.dumps({"errno": res}))
""", env.cgroup, str(kv.port), ready, go], stdout=subprocess.PIPE, text=True)
deadline = time.time() + slow(10)
while not os.path.exists(ready) and time.time() < deadline:
    time.sleep(0.01)
os.unlink(pd.log)
pd = Policyd(env, conf)
open(go, "w").close()
out, _ = tfo.communicate(timeout=slow(30))
is_(json.loads(out or "{}").get("errno"), errno.EOPNOTSUPP,
    "a socket set for Fast Open before policyd started: its connect is refused")
ok(pd.lines(r"^policyd: refuse cause=fastopen service=kv ") and
   b"FORBIDDEN before" not in kv.all(), "... logged, and nothing of it reached the server",
   pd.text())
is_(pd.stop(), 0, "SIGTERM: policyd exits 0")

# --- reloads: connections obey the current policy for their port ---
a, b, c = Recorder(), Recorder(), Recorder()
def services(order):
    svc = {
        "a": '{ name = "a"; ports = [ %d ]; framing = "none"; rules = ( '
             '{ id = 10; action = "deny"; contains = "FORBIDDEN"; } ); }' % a.port,
        "b": '{ name = "b"; ports = [ %d ]; framing = "line"; rules = ( '
             '{ id = 20; action = "deny"; contains = "BRAVO"; } ); }' % b.port,
        "c": '{ name = "c"; ports = [ %d ]; framing = "line"; rules = ( '
             '{ id = 30; action = "deny"; contains = "CHARLIE"; } ); }' % c.port,
    }
    return ('version = 1;\ndaemon = { log_rate = 0; };\nservices = (\n' +
            ",\n".join(svc[k] for k in order) + "\n);\n")
rconf = env.write("reload.conf", services("abc"))
os.unlink(pd.log)
pd = Policyd(env, rconf)
ok(pd.running(), "policyd runs (services a, b, c)", pd.text())
go = [os.path.join(env.tmp, "go%d" % i) for i in range(1)]
RELOAD_CLIENT = r"""
import json, os, socket, sys, time
steps = json.loads(sys.argv[1])
conns = {}
out = {}
for st in steps:
    if st[0] == "wait":
        while not os.path.exists(st[1]):
            time.sleep(0.02)
        continue
    name, port, data = st
    if name not in conns:
        conns[name] = socket.create_connection(("127.0.0.1", port))
    try:
        out.setdefault(name, []).append(conns[name].send(data.encode()))
    except OSError as e:
        out.setdefault(name, []).append(-e.errno)
    time.sleep(0.1)
time.sleep(0.3)
print(json.dumps({"res": out, "ports": {k: v.getsockname()[1] for k, v in conns.items()}}))
"""
steps = [["a", a.port, "x FORBID"], ["b", b.port, "hello\n"], ["c", c.port, "hello\n"],
         ["wait", go[0]],
         ["a", a.port, "DEN x"],                  # the pattern split across the reload
         ["b", b.port, "BRAVO\n"], ["c", c.port, "CHARLIE\n"]]
cl = subprocess.Popen([sys.executable, "-c",
                       "import os; open(os.path.join(%r, 'cgroup.procs'), 'w').write("
                       "str(os.getpid()))\n" % env.cgroup + RELOAD_CLIENT, json.dumps(steps)],
                      stdout=subprocess.PIPE, text=True)
env.procs.append(cl)
time.sleep(1.0)
# reorder the services and drop c: b's rules must follow b's port, c's port
# is no longer policed
open(rconf, "w").write(services("ba"))
pd.signal(signal.SIGHUP)
for _ in range(400):
    if "generation 2" in pd.text():
        break
    time.sleep(0.05)
ok("generation 2" in pd.text(), "the reload took place", pd.text())
open(go[0], "w").close()
out, _ = cl.communicate(timeout=30)
r = json.loads(out)
got_a = a.got(r["ports"]["a"])
ok(b"FORBIDDEN" not in got_a and got_a == b"x FORBID",
   "framing none: a pattern split across a reload is refused (old policy)",
   "server got %r, results %r" % (got_a, r["res"]))
got_b = b.got(r["ports"]["b"])
ok(got_b == b"hello\n", "services reordered: an open connection keeps its port's rules (BRAVO "
   "refused)", "server got %r, results %r" % (got_b, r["res"]))
got_c = c.got(r["ports"]["c"])
ok(got_c == b"hello\nCHARLIE\n", "service removed: its port is no longer policed",
   "server got %r" % got_c)
is_(pd.stop(), 0, "SIGTERM: policyd exits 0")

# --- fail_mode = "open": logged and passed ---
os.unlink(pd.log)                # a fresh log for the next instance
conf2 = env.write("open.conf", open(conf).read().replace(
    "max_connections = 8;", "max_connections = 8; fail_mode = \"open\";"))
pd = Policyd(env, conf2)
ok(pd.running(), "policyd runs with fail_mode = \"open\"", pd.text())
r = run_inside(r"""
import json, socket
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    print(json.dumps({"errno": 0}))
except OSError as e:
    print(json.dumps({"errno": e.errno}))
""")
is_(r["errno"], 0, "fail_mode open: an MPTCP socket is made")
ok(pd.lines(r"^policyd: unjudged cause=mptcp "), "... and logged as unjudged", pd.text())
is_(pd.stop(), 0, "SIGTERM: policyd exits 0")

# --- nested instances ---
os.unlink(pd.log)
pd = Policyd(env, conf)
ok(pd.running(), "policyd A runs on the test cgroup", pd.text())
child = os.path.join(env.cgroup, "child")
os.mkdir(child)
try:
    def second(cgroup):
        pin = env.pin_dir + "-b"
        out = subprocess.run([POLICYD, "run", "-c", conf, "--cgroup", cgroup, "--pin-dir", pin,
                              "--foreground"], capture_output=True, text=True, timeout=60)
        left = os.path.exists(pin)
        return out.returncode, out.stderr, left
    rc, err, left = second(child)
    ok(rc == 3 and "another policyd (pins %s) polices cgroup %s, above %s" % (
        env.pin_dir, env.cgroup, child) in err and not left,
       "a second instance on a child cgroup is refused (exit 3), naming the first", err)
    rc, err, left = second(env.cgroup)
    ok(rc == 3 and "the same as" in err and not left,
       "... and one on the same cgroup with other pins", err)
    is_(pd.stop(), 0, "SIGTERM: policyd A exits 0")
    os.unlink(pd.log)
    pd = Policyd(env, conf, extra=("--cgroup", child))
    ok(pd.running(), "policyd A' runs on the child cgroup", pd.text())
    rc, err, left = second(env.cgroup)
    ok(rc == 3 and "below" in err and not left, "a second instance on the parent is refused",
       err)
    is_(pd.stop(), 0, "SIGTERM: policyd A' exits 0")
finally:
    os.rmdir(child)
done()
