#!/usr/bin/env python3
# A send cut short under a protocol framing (proto_resync): the kernel
# pushed fewer bytes of a kept piece than the verdict let out, and the
# next send must be parsed from where the stream stopped, inside a
# request. Framing http, 4,000 requests with 1,000-byte bodies, once with
# a contains rule (the body is walked byte by byte: the parser's state is
# a place in the body) and once without (the body is passed over by its
# length). The sender is non-blocking with a 64 KiB send buffer and
# offers 200,000 bytes a send; the server's receive window is 16 KiB and
# it reads 4 KiB at a time with a pause, so the send buffer is nearly
# full at most sends and the kernel cuts pushes short (here some 80 times
# a run). Every byte arrives whole and in order, and a request with a
# denied header after them is refused by its rule (not as malformed) and
# never arrives; the resync counter says cuts were followed.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import Env, Policyd, Recorder, done, is_, ok, send_cut

env = Env("proto-resync")


# receive windows of 16 KiB, read 4 KiB at a time with a pause: the
# sender's pushes are often cut short
walked, counted = [Recorder(rcvbuf=16 << 10, chunk=4096, pause=0.0005) for _ in range(2)]
conf = env.write("policy.conf", """
version = 1;
daemon = { log_rate = 0; };
services = (
  { name = "walked"; ports = [ %d ]; framing = "http"; hold_timeout = 0;
    rules = ( { id = 1; action = "deny"; header = "X-Debug"; },
              { id = 2; action = "deny"; contains = "FORBIDDEN"; } ); },
  { name = "counted"; ports = [ %d ]; framing = "http"; hold_timeout = 0;
    rules = ( { id = 3; action = "deny"; header = "X-Debug"; } ); }
);
""" % (walked.port, counted.port))
pd = Policyd(env, conf)
if not ok(pd.running(), "policyd runs", pd.text()):
    done()

# 1,058 bytes a request; the body's bytes spell no header and no rule
REQ = (b"POST /r HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" +
       bytes(b"abcdefghijklmnopqrstuvwxyz0123456789\r\n"[i % 38] for i in range(1000)))
COUNT = 4000
DENIED = b"GET /denied HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\n\r\n"

def run(server):
    """COUNT requests, then DENIED, from the policed cgroup (send_cut):
    the client's results."""
    return send_cut(env, server.port, REQ, COUNT, DENIED)


def resyncs():
    st = pd.stats() or {}
    return st.get("troubles", {}).get("resync", 0)


for server, name, rule in [(walked, "walked", 1), (counted, "counted", 3)]:
    before = resyncs()
    r = run(server)
    got = server.got(max(server.data) if server.data else 0, timeout=30)
    want = REQ * COUNT
    ok(r["sent"] == len(want) and r["short"] > 0,
       "%s: %d bytes sent in non-blocking sends, %d of them cut short" % (name, r["sent"],
                                                                       r["short"]), repr(r))
    ok(got == want, "%s: every request arrives whole, in order" % name,
       "server got %d bytes (want %d), first difference at %s" % (
           len(got), len(want),
           next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))))
    n = resyncs() - before
    ok(n > 0, "%s: pushes cut short were followed (resync %d)" % (name, n))
    ok(r["last"] < 0, "%s: the request with a denied header after them is refused (%d)" %
       (name, r["last"]))
    is_(len(pd.lines(r"deny rule=%d service=%s .*excerpt=\"GET /denied" % (rule, name))), 1,
        "%s: ... logged as denied by rule %d" % (name, rule))
is_(pd.lines(r"deny rule=(malformed|2) "), [], "no request was malformed, none held FORBIDDEN")
ok(pd.stop() == 0, "policyd stops")
done()
