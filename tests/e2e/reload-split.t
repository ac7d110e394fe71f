#!/usr/bin/env python3
# A pattern split across sends, with reloads between its parts. One
# reload: the part before it is judged by the old policy (boundary.t).
# Two or more before the connection sends again rewrite the policy slot
# its matching state belonged to: the bytes it kept (pd_tail) are walked
# through the active policy, so the half match is found again there and
# completed by the next send. Framing none, and line framing with lines
# going out as they come (hold_timeout = 0): a denied pattern never
# reaches the server, an allowed line keeps its allow rule (found again
# by id), and a rule the last reload removed no longer applies.
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import EACCES, PEER, Env, Policyd, Recorder, done, is_, ok, slow

env = Env("reload-split")
none_srv, line_srv, allow_srv = Recorder(), Recorder(), Recorder()


def policy(forbidden=True):
    def deny(i):
        return '{ id = %d; action = "deny"; contains = "FORBIDDEN"; },' % i if forbidden else ""
    return """
version = 1;
daemon = { log_rate = 0; };
services = (
  { name = "none"; ports = [ %d ]; framing = "none";
    rules = ( %s { id = 2; action = "deny"; contains = "xyzzy"; } ); },
  { name = "line"; ports = [ %d ]; framing = "line"; hold_timeout = 0;
    rules = ( %s { id = 3; action = "deny"; prefix = "FLUSHALL"; } ); },
  { name = "allow"; ports = [ %d ]; framing = "line"; hold_timeout = 0; default = "deny";
    rules = ( { id = 4; action = "allow"; prefix = "GET "; },
              { id = 5; action = "audit"; contains = "NOTE"; } ); }
);
""" % (none_srv.port, deny(1), line_srv.port, deny(6), allow_srv.port)


conf = env.write("policy.conf", policy())
pd = Policyd(env, conf)
gen = [1]


def reload(times, forbidden=True):
    open(conf, "w").write(policy(forbidden))
    for _ in range(times):
        gen[0] += 1
        pd.signal(signal.SIGHUP)
        deadline = time.time() + slow(10)
        while "generation %d " % gen[0] not in pd.text() and time.time() < deadline:
            time.sleep(0.02)
        if "generation %d " % gen[0] not in pd.text():
            return False
    return True


def split(port, first, rest, reloads, forbidden=True, tag="x"):
    """Send first, reload `reloads` times, send each of rest: the
    client's results and the bytes the server got."""
    go = os.path.join(env.tmp, "go-%s-%d" % (tag, gen[0]))
    steps = [["send", first.hex()], ["sleep", 0.1], ["wait", go]]
    for r in rest:
        steps += [["send", r.hex()], ["sleep", 0.1]]
    spec = {"host": "127.0.0.1", "port": port, "steps": steps, "linger": 0.2}
    cl = env.start([sys.executable, PEER, "client", env.cgroup, json.dumps(spec)],
                   stdout=subprocess.PIPE, text=True)
    time.sleep(slow(0.5))
    reloaded = reload(reloads, forbidden)
    open(go, "w").close()
    out = json.loads(cl.communicate(timeout=slow(60))[0])
    return reloaded, out["results"], out["port"]


def check(srv, port, first, rest, reloads, want, name, forbidden=True, refused=True):
    reloaded, res, lport = split(port, first, rest, reloads, forbidden, tag=name[:8])
    got = srv.got(lport)
    ok(reloaded, "%s: %d reloads took place" % (name, reloads), pd.text()[-2000:])
    is_(got, want, "%s: what the server got" % name)
    if refused:
        is_(res[-1], EACCES, "%s: the send that completes the pattern fails with EACCES" % name)
    else:
        ok(all(r > 0 for r in res), "%s: every send succeeds (%s)" % (name, res))


# framing none: "x FORBID" | reloads | "DEN x"
for n in (1, 2, 3):
    check(none_srv, none_srv.port, b"x FORBID", [b"DEN x"], n, b"x FORBID",
          "framing none, %d reload(s) between FORBID and DEN" % n)
# the half match built over two sends before the reloads, then the pattern
# over a third
check(none_srv, none_srv.port, b"x FOR", [b"BI", b"DDEN"], 0, b"x FORBI",
      "framing none, no reload, FOR|BI|DDEN")
# the same over three sends with two reloads between the second and third
go = os.path.join(env.tmp, "go-three2")
spec = {"host": "127.0.0.1", "port": none_srv.port, "linger": 0.2,
        "steps": [["send", b"x FOR".hex()], ["sleep", 0.1], ["send", b"BI".hex()], ["sleep", 0.1],
                  ["wait", go], ["send", b"DDEN".hex()], ["sleep", 0.1]]}
cl = env.start([sys.executable, PEER, "client", env.cgroup, json.dumps(spec)],
               stdout=subprocess.PIPE, text=True)
time.sleep(slow(0.6))
reloaded = reload(2)
open(go, "w").close()
out = json.loads(cl.communicate(timeout=slow(60))[0])
ok(reloaded, "framing none, FOR|BI|2 reloads|DDEN: the reloads took place")
is_(none_srv.got(out["port"]), b"x FORBI", "framing none, FOR|BI|2 reloads|DDEN: what the server got")
is_(out["results"][-1], EACCES, "... the third send fails with EACCES")
check(none_srv, none_srv.port, b"xyzz", [b"y ok"], 2, b"xyzz",
      "framing none, xyzz|2 reloads|y ok: another pattern")
# the last reload removed the rule: the new policy decides
check(none_srv, none_srv.port, b"x FORBID", [b"DEN x"], 2, b"x FORBIDDEN x",
      "framing none, 2 reloads to a policy without the rule", forbidden=False, refused=False)
reload(1)

# line framing, lines not held (hold_timeout = 0)
for n in (1, 2):
    check(line_srv, line_srv.port, b"x FORBID", [b"DEN\n"], n, b"x FORBID",
          "line, not held, %d reload(s) inside FORBIDDEN" % n)
check(line_srv, line_srv.port, b"FLU", [b"SHALL\n"], 2, b"FLU",
      "line, not held, 2 reloads inside a denied prefix")
check(line_srv, line_srv.port, b"ok FLU", [b"SHALL\n"], 2, b"ok FLUSHALL\n",
      "line, not held, FLUSHALL not at the line's start", refused=False)
# an allow list: a line allowed by its prefix goes on past the kept bytes
# and two reloads, its allow rule found again by id
long_get = b"GET /" + b"a" * 200
check(allow_srv, allow_srv.port, long_get, [b"b" * 50, b" NOTE\n"], 2, long_get + b"b" * 50 + b" NOTE\n",
      "allow list, a long allowed line across 2 reloads", refused=False)
# a line the list does not allow goes out as it comes too, and is
# refused at its end
check(allow_srv, allow_srv.port, b"PUT /" + b"a" * 10, [b"\n"], 2, b"PUT /" + b"a" * 10,
      "allow list, a line not allowed, across 2 reloads")
pass_lines = [l for l in pd.text().splitlines() if " audit rule=5 " in l]
ok(pass_lines, "... the audit rule of the allowed line is logged", pd.text()[-3000:])

is_(pd.stop(), 0, "policyd stops")
done()
