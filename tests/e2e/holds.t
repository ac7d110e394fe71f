#!/usr/bin/env python3
# Held messages and the allowed bytes around them: nothing allowed is
# lost, nothing waits for ever. A redirect line held across sends and
# followed by more lines in the same send (the rest must reach the server),
# random pipelined streams with redirects and splits (every allowed line
# arrives once and in order, every diverted line reaches the sink and no
# fragment of it the server), a 16 MiB send of lines that each look like
# the start of a denied prefix, an unfinished line held until it ends
# (no byte of a line refused at its end leaves), hold_timeout deciding a
# message that never ends, hold_timeout = 0 never holding, and a held
# end that its connection's close or shutdown leaves unsent, logged.
import os
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import Env, Policyd, Recorder, client, done, is_, ok, send, slow, wait_until

env = Env("holds")
# kv's hold_timeout: long enough that no line of a send that keeps coming
# is held that long on a slow machine (a send of 16 MiB waits for room)
HOLD = int(slow(600))
kv, nohold = Recorder(), Recorder()
sink = os.path.join(env.tmp, "quarantine.log")
conf = env.write("policy.conf", """
version = 1;
daemon = { log_rate = 0; excerpt = 64; };
sinks = ( { name = "q"; file = "%(sink)s"; } );
services = (
  { name = "kv"; ports = [ %(kv)d ]; framing = "line"; hold_timeout = %(hold)d;
    rules = ( { id = 1; action = "redirect"; prefix = "DEBUG"; sink = "q"; },
              { id = 2; action = "deny"; prefix = "KILLME"; },
              { id = 3; action = "deny"; contains = "BADWORD"; } ); },
  { name = "nohold"; ports = [ %(nohold)d ]; framing = "line"; hold_timeout = 0;
    rules = ( { id = 10; action = "deny"; prefix = "KILLME"; } ); }
);
""" % {"sink": sink, "kv": kv.port, "nohold": nohold.port, "hold": HOLD})
pd = Policyd(env, conf)
if not ok(pd.running(), "policyd runs", pd.text()):
    done()


def sink_lines():
    time.sleep(0.3)
    try:
        return [l for l in open(sink).read().splitlines() if l]
    except FileNotFoundError:
        return []


# --- a held redirect line, then more lines in the same send ---
res, port = client(env, kv.port, [send(b"DEBU"), ["sleep", 0.2], send(b"G x\nhello-world\n")])
is_(kv.got(port), b"hello-world\n", "a held DEBUG line completed with more lines: the rest "
    "reaches the server (results %r)" % res)
ok(any('data="DEBUG x\\n"' in l for l in sink_lines()), "... and the DEBUG line the sink")

# --- random pipelined streams with redirects ---
rng = random.Random(5)
lost = frags = n_debug = 0
for round_ in range(6):
    lines = []
    for i in range(200):
        if rng.random() < 0.2:
            lines.append(b"DEBUG r%d %d %s\n" % (round_, i, b"d" * rng.randint(0, 40)))
        else:
            lines.append(b"SET r%d %d %s\n" % (round_, i, b"v" * rng.randint(0, 80)))
    stream = b"".join(lines)
    cuts = sorted(rng.sample(range(1, len(stream)), 60))
    steps, prev = [], 0
    for c in cuts + [len(stream)]:
        steps.append(send(stream[prev:c]))
        prev = c
    res, port = client(env, kv.port, steps, linger=0.5)
    got = kv.got(port, timeout=10)
    want = b"".join(l for l in lines if not l.startswith(b"DEBUG"))
    n_debug += sum(1 for l in lines if l.startswith(b"DEBUG"))
    lost += got != want
    frags += b"DEBUG" in got or b"EBUG" in got
ok(not lost and not frags, "6 random pipelined streams of 200 lines with redirects, in 60 "
   "random pieces each: every allowed line arrives once and in order, no fragment of a "
   "diverted line does (%d streams differ, %d with fragments)" % (lost, frags))
diverted = [l for l in sink_lines() if "data=\"DEBUG r" in l]
is_(len(diverted), n_debug, "the sink has a record per diverted line")

# --- one send of 16 MiB of lines that each begin like a denied prefix ---
big = env.write("killm", b"KILLM\n" * ((16 << 20) // 6))
res, port = client(env, kv.port, [["sendbuf", big]], linger=0.5)
got = kv.got(port, timeout=30)
ok(res == [len(b"KILLM\n" * ((16 << 20) // 6))] and got == open(big, "rb").read(),
   "a 16 MiB send of \"KILLM\\n\" lines (each held at a message's end) arrives whole",
   "results %r, server got %d bytes" % (res, len(got)))
ok(not pd.lines(r"^policyd: (refuse |deny rule=2 )"), "... with no refusal or deny logged")

# --- an unfinished line is held until it ends ---
res, port = client(env, kv.port, [send(b"hello BAD"), ["sleep", 0.2], send(b"WORD x\n")])
is_((res, kv.got(port)), ([9, -13], b""), "a line refused at its end: no byte of it reached "
    "the server, though its first part was sent alone")
res, port = client(env, kv.port, [send(b"hello wor"), ["sleep", 0.2], send(b"ld\n")])
is_(kv.got(port), b"hello world\n", "a harmless line sent in two parts arrives whole")

# --- hold_timeout ---
t0 = time.time()
res, port = client(env, kv.port, [send(b"KILL"), ["sleep", slow(2.0)], ["recv", 10]])
ok(res[1] in (-104, -103), "a message held past hold_timeout (%d ms): the connection is "
   "aborted (results %r)" % (HOLD, res))
is_(kv.got(port), b"", "... none of it reached the server")
ok(pd.lines(r"^policyd: refuse cause=hold_timeout rule=2 service=kv pid=\d+ comm=python3 "),
   "... logged with the rule that kept it held", pd.text())
res, port = client(env, kv.port, [send(b"hello"), ["sleep", slow(2.0)], ["recv", 10]])
ok(pd.lines(r"^policyd: refuse cause=hold_timeout rule=- service=kv "),
   "an unfinished line held past hold_timeout names no rule (rule=-)")

# --- hold_timeout = 0 never holds ---
res, port = client(env, nohold.port, [send(b"KILL"), ["sleep", 0.5], send(b"ME now\n")])
is_((res, nohold.got(port)), ([4, -13], b"KILL"),
    "hold_timeout = 0: an unfinished line passes as it comes; the deny still comes")
# --- a connection that ends with a line held ---
# no send can carry the held end any more: it never leaves, and the log
# says so with its length (not silently, and not later as a timeout)
for how, steps in (("closes", []), ("shuts its sending side down", [["shutdown"]])):
    n = len(pd.own_lines(r"^policyd: refuse cause=closed_held "))
    res, port = client(env, kv.port, [send(b"first line\n"), send(b"QUIT")] + steps +
                       [["sleep", 0.3]])
    is_(kv.got(port), b"first line\n", "a sender that %s after an unfinished line: the line "
        "before it arrives, the held end does not (results %r)" % (how, res))
    ok(wait_until(lambda: len(pd.own_lines(r"^policyd: refuse cause=closed_held ")) == n + 1, 5)
       and re.search(r"^policyd: refuse cause=closed_held service=kv pid=\d+ comm=python3 .* "
                     r"len=4 ", pd.own_lines(r"cause=closed_held")[-1]),
       "... logged once, as refuse cause=closed_held len=4", pd.text()[-800:])
# shut down while the server reads nothing yet: the connection stays half
# open (no close), and the held end is logged at the shutdown, not
# refused later by hold_timeout
kv.reading.clear()
n = len(pd.own_lines(r"^policyd: refuse cause=closed_held "))
res, port = client(env, kv.port, [send(b"QUIT"), ["shutdown"],
                                  ["sleep", slow(HOLD / 1000.0 + 0.5)]])
ok(len(pd.own_lines(r"^policyd: refuse cause=closed_held ")) == n + 1,
   "a sender that shuts its sending side down while the connection stays half open: its held "
   "end is logged at once", pd.text()[-800:])
kv.reading.set()
time.sleep(slow(HOLD / 1000.0 + 0.5))
is_(len(pd.own_lines(r"cause=hold_timeout rule=- service=kv .* len=4 ")), 0,
    "... and no hold_timeout follows for any of them")
is_(pd.stop(), 0, "SIGTERM: policyd exits 0")
done()
