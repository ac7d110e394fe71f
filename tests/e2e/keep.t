#!/usr/bin/env python3
"""on_exit = "keep": the pinned programs and maps go on enforcing after the
daemon stops or is SIGKILLed; a new policyd takes the kept state over
without a gap and applies its policy file; pins of an older layout, a
policy too big for the kept maps and a second live instance are refused
and leave the kept enforcement as it was."""
import json
import os
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (POLICYD, Conn, Env, Policyd, Recorder, children, done, fail_now,  # noqa: E402
                    free_port, is_, kv_policy, ok, output, proc_state, sendline, slow, wait_port,
                    wait_until)

env = Env("keep")
port = free_port()
layout = int(re.search(r"map layout (\d+)", output([POLICYD, "--version"])[1]).group(1))
PIN = env.pin_dir


def pol(name, on_exit, *words):
    return env.write(name, kv_policy(port, 1, 'on_exit = "%s";' % on_exit, *words))


# a listener that keeps every byte it receives, outside the cgroup
server = Recorder(port=port)
if not wait_port(port):
    fail_now("the test's server listens on 127.0.0.1:%d" % port)
# a connection from the cgroup that stays open across the restarts
conn = Conn(env, port)

# attacker: FLUSHALL on a new connection every few ms until told to stop;
# prints how many sends went through
ATTACK = """
import os, socket, sys, time
passed = 0
while not os.path.exists(sys.argv[2]):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    try:
        s.send(b"FLUSHALL attack\\n"); passed += 1
    except OSError:
        pass
    s.close(); time.sleep(0.003)
print(passed)
"""
stop_file = os.path.join(env.tmp, "stop-attack")


def config(field):
    """A field of the pinned pd_config."""
    rc, out = output(["bpftool", "-j", "map", "lookup", "pinned", PIN + "/pd_config",
                      "key", "0", "0", "0", "0"])
    try:
        return json.loads(out)["formatted"]["value"][field]
    except (ValueError, KeyError):
        return out


def config_bytes():
    rc, out = output(["bpftool", "-j", "map", "lookup", "pinned", PIN + "/pd_config",
                      "key", "0", "0", "0", "0"])
    return [int(b, 16) for b in json.loads(out)["value"]]


def config_write(value):
    return output(["bpftool", "map", "update", "pinned", PIN + "/pd_config", "key", "0", "0",
                   "0", "0", "value", "hex"] + ["%02x" % b for b in value])


def say(line):
    return conn.say(line)


def deny(word):
    return sendline(env, port, word)


def run_again(conf):
    """A second policyd run on the same pins: (status, output)."""
    return output([POLICYD, "run", "-c", conf, "--cgroup", env.cgroup, "--pin-dir", PIN])


p = pol("p.conf", "keep", "FLUSHALL")
pd = Policyd(env, p)
ok(pd.running(), "policyd runs with on_exit = keep")
ok(pd.own_lines("on_exit keep"), "... and says so")
is_(say("SET a 1"), 8, "an open connection passes an allowed line")
is_(deny("FLUSHALL"), 13, "FLUSHALL is denied")

attack = env.start([sys.executable, "-c", ATTACK, str(port), stop_file], inside=True,
                   stdout=subprocess.PIPE, text=True)
reaper = (children(pd.pid, "policyd-reaper") or [None])[0]
pd.kill()
time.sleep(slow(0.5))
ok(os.path.exists(PIN + "/pd_config") and os.path.exists(PIN + "/link_sockops"),
   "SIGKILL: the pins stay")
ok("sock_ops" in output(["bpftool", "cgroup", "show", env.cgroup])[1],
   "SIGKILL: sock_ops stays attached to the cgroup")
st = proc_state(reaper)
ok(reaper and st in ("", "Z"), "the reaper left, keeping the pins", "its state: %r" % st)
is_(deny("FLUSHALL"), 13, "with no daemon, FLUSHALL on a new connection is still denied")
is_(say("SET b 2"), 8, "with no daemon, the open connection still passes allowed lines")

pol("p.conf", "keep", "FLUSHALL", "SHUTDOWN")
pd = Policyd(env, p)
ok(pd.running(), "a restarted policyd runs over the kept pins")
ok(pd.own_lines(re.escape("took over the enforcement kept under %s (policy generation 1, layout "
                          "%d) without a gap; this policy is generation 2" % (PIN, layout))),
   "... and says it took them over")
time.sleep(slow(0.3))
open(stop_file, "w").close()
out, _ = attack.communicate(timeout=slow(30))
os.unlink(stop_file)
is_(out.strip(), "0", "not one FLUSHALL got through across SIGKILL and restart")
ok(b"FLUSHALL" not in server.all(), "... the server received none")
is_(config("generation"), 2, "the kept state runs policy generation 2")
is_(deny("SHUTDOWN"), 13, "the changed policy file applies: SHUTDOWN is denied")
n = pd.rule_count(1) or 0
ok(n >= 2, "rule 1's counter carried over the restart (%d denies)" % n)
is_(say("SET c 3"), 8, "the open connection still passes allowed lines")


def sets():
    return len(re.findall(rb"(?m)^SET [abc] [123]$", server.all()))


is_(wait_until(lambda: sets() == 3, 2.5) and sets(), 3, "... and the server has all three")

rc, out = run_again(p)
is_(rc, 3, "a second live instance on the same pins: exit 3")
ok("still running" in out, "... saying why", out)

is_(pd.stop(), 0, "SIGTERM with on_exit = keep: exit 0")
ok(pd.own_lines(re.escape("stopped: the pins under %s keep enforcing policy generation 2" % PIN)),
   "... saying the pins keep enforcing")
is_(deny("SHUTDOWN"), 13, "after SIGTERM the kept policy enforces")

# pins of another layout are never run over
value = config_bytes()
config_write(value[:16] + [0, 0, 0, 0] + value[20:])
is_(config("layout"), 0, "the pins now claim layout 0")
rc, out = run_again(p)
is_(rc, 3, "pins of an older layout: exit 3")
ok("have layout 0, this policyd reads layout %d" % layout in out, "... saying why", out)
ok(os.path.exists(PIN + "/pd_config"), "... the pins are left")
is_(deny("FLUSHALL"), 13, "... and still enforce")
config_write(value[:16] + [layout] + value[17:])

# a policy larger than the kept maps is refused; the kept one goes on
r = random.Random(7)
big = ",\n".join('{ id = %d; action = "deny"; contains = "%s"; }'
                 % (i + 3, "".join(r.choice("abcdefghij") for _ in range(200))) for i in range(4))
with open(p) as f:
    text = f.read()
bigconf = env.write("big.conf", text.replace("\n); } );", ",\n" + big + "\n); } );"))
rc, out = output([POLICYD, "check", "-c", bigconf])
ok(rc == 0, "the larger policy is valid", out)
rc, out = run_again(bigconf)
is_(rc, 3, "a policy too big for the kept maps: exit 3")
ok("the kept policy keeps enforcing" in out, "... saying the kept policy goes on", out)
is_(config("generation"), 2, "... which it does (generation 2)")
is_(deny("SHUTDOWN"), 13, "... and enforces")

# taking over with on_exit = detach, then stopping, ends everything
d = pol("d.conf", "detach", "FLUSHALL")
pd = Policyd(env, d)
ok(pd.running(), "policyd with on_exit = detach takes the kept state over")
is_(deny("SHUTDOWN"), 0, "its policy applies: SHUTDOWN passes")
is_(pd.stop(), 0, "SIGTERM: exit 0")
ok(not os.path.exists(PIN), "the pins are removed")
is_(output(["bpftool", "cgroup", "show", env.cgroup])[1], "", "nothing attached to the cgroup")
is_(deny("FLUSHALL"), 0, "nothing policed any more")

# a reload that changes on_exit also changes what a SIGKILL leaves behind
pol("p.conf", "keep", "FLUSHALL")
pd = Policyd(env, p)
ok(pd.running(), "policyd runs with on_exit = keep")
pol("p.conf", "detach", "FLUSHALL")
ok("reloaded:" in (pd.reload() or ""), "reloaded to on_exit = detach")
pd.kill()
ok(wait_until(lambda: not os.path.exists(PIN), 5),
   "SIGKILL after that reload: the reaper removed the pins")
time.sleep(slow(0.3))
is_(deny("FLUSHALL"), 0, "... and nothing is policed")
done()
