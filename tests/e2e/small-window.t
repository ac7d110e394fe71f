#!/usr/bin/env python3
# Sends into a peer whose receive window is small. TCP's segments are then
# small too (at most half the largest window the peer offered), and each
# queued skb's overhead, not its data, fills the send buffer: a push the
# send buffer seemed to have room for is cut short after a fraction of
# its bytes. Such a push must be one whose bytes are kept (and followed
# when the rest comes), never one that costs the sender its connection.
# Framings none, line and http, each with non-blocking senders offering
# 200,000 bytes a send (send_cut) to a reader with a 4 KiB receive buffer
# that reads 512 bytes at a time; then a denied message. Checked: every
# byte before the denied message arrives once and in order, the cuts were
# followed (resync), no send was refused as cut short and the only abort
# is the denied message's. Then line and http messages longer than a
# send, whose unfinished ends are held and put back in front of the next
# send, from a sender with TCP_NOTSENT_LOWAT: where the kernel cuts a
# push inside the bytes put back, the rest of them are held again (the
# sender's count covers only its own bytes: no one else would send
# them), and every byte arrives.
import hashlib
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import Env, Policyd, Recorder, done, ok, send_cut

env = Env("small-window")
rec = {k: Recorder(rcvbuf=4096, chunk=512, pause=0.0001) for k in ("none", "line", "http")}
rec.update({k: Recorder(rcvbuf=4096, chunk=777, pause=0.0003) for k in ("line2", "http2")})
conf = env.write("policy.conf", """
version = 1;
daemon = { log_rate = 0; };
services = (
  { name = "raw"; ports = [ %d ]; framing = "none";
    rules = ( { id = 1; action = "deny"; contains = "BADWORD"; } ); },
  { name = "kv"; ports = [ %d ]; framing = "line";
    rules = ( { id = 2; action = "deny"; contains = "BADWORD"; },
              { id = 3; action = "deny"; longer_than = 200; } ); },
  { name = "web"; ports = [ %d ]; framing = "http"; hold_timeout = 0;
    rules = ( { id = 4; action = "deny"; header = "X-Debug"; } ); },
  { name = "kv2"; ports = [ %d ]; framing = "line";
    rules = ( { id = 5; action = "deny"; contains = "BADWORD"; } ); },
  { name = "web2"; ports = [ %d ]; framing = "http";
    rules = ( { id = 6; action = "deny"; path_prefix = "/.git"; },
              { id = 7; action = "deny"; contains = "BADWORD"; } ); }
);
""" % (rec["none"].port, rec["line"].port, rec["http"].port, rec["line2"].port,
       rec["http2"].port))
pd = Policyd(env, conf)
if not ok(pd.running(), "policyd runs", pd.text()):
    done()

lines = b"".join(b"SET c%d %s\n" % (i, b"w" * (i % 60)) for i in range(40))
post = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"b" * 1000
cases = [
    ("none", lines, b"SET z BADWORD\n", b""),
    ("line", lines, b"GET y\nSET z BADWORD\n", b"GET y\n"),
    ("http", post, b"GET / HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\n\r\n", b""),
]
for framing, unit, last, tail in cases:
    r = rec[framing]
    before = set(r.data)
    st0 = (pd.stats() or {}).get("troubles", {})
    res = send_cut(env, r.port, unit, 1000, last)
    new = [p for p in r.data if p not in before]
    got = r.got(new[0] if new else 0, timeout=30)
    st1 = (pd.stats() or {}).get("troubles", {})
    d = {k: st1.get(k, 0) - st0.get(k, 0) for k in ("resync", "cut_short", "aborts")}
    ok(res["sent"] == len(unit) * 1000 and res["short"] > 0,
       "framing %s: %d bytes in non-blocking sends, %d of them cut short" %
       (framing, res["sent"], res["short"]), repr(res))
    ok(got == unit * 1000 + tail, "... every byte arrives once and in order%s" %
       (", then the line before the denied one" if tail else ""),
       "server got %d bytes (want %d)" % (len(got), len(unit) * 1000 + len(tail)))
    ok(d["resync"] > 0 and d["cut_short"] == 0 and d["aborts"] == 1,
       "... the cuts were followed (resync %d), none refused the sender, the only abort "
       "is the denied message's" % d["resync"], repr(d))

# held ends put back in front of a send that the kernel cuts short
HELD = r"""
import hashlib, json, select, socket, sys
data = bytes.fromhex(sys.stdin.read())
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, 25, 1024)      # TCP_NOTSENT_LOWAT
s.setblocking(False)
off = again = 0
while off < len(data):
    try:
        off += s.send(data[off:off + 1000])
    except BlockingIOError:
        again += 1
        select.select([], [s], [], 1)
s.close()
print(json.dumps({"sent": off, "again": again}))
"""
held_cases = [
    ("line2", b"".join(b"l%03d %s\n" % (i, b"v" * 3000) for i in range(100))),
    ("http2", b"".join(b"POST /u%d HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n%s"
                      % (i, b"b" * 3000) for i in range(100))),
]
for framing, data in held_cases:
    r = rec[framing]
    before = set(r.data)
    st0 = (pd.stats() or {}).get("troubles", {})
    out = subprocess.run(env.in_cgroup([sys.executable, "-c", HELD, str(r.port)]),
                         input=data.hex(), capture_output=True, text=True, timeout=120)
    res = json.loads(out.stdout or "{}") if out.returncode == 0 else {}
    new = [p for p in r.data if p not in before]
    got = r.got(new[0] if new else 0, timeout=30)
    st1 = (pd.stats() or {}).get("troubles", {})
    d = {k: st1.get(k, 0) - st0.get(k, 0) for k in ("held", "resync", "cut_short", "aborts")}
    ok(res.get("sent") == len(data) and got == data,
       "framing %s, messages longer than a send, TCP_NOTSENT_LOWAT: every byte arrives once "
       "and in order (%d bytes, held %d times, %d cuts followed)" %
       (framing[:-1], len(got), d["held"], d["resync"]),
       "sender %r; server got %d bytes (want %d), sha %s (want %s)" %
       (res or out.stderr, len(got), len(data), hashlib.sha256(got).hexdigest()[:12],
        hashlib.sha256(data).hexdigest()[:12]))
    ok(d["held"] > 0 and d["resync"] > 0 and d["cut_short"] == 0 and d["aborts"] == 0,
       "... ends were held, cuts followed, nothing refused", repr(d))
pd.stop()
done()
