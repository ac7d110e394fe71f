#!/usr/bin/env python3
# make demo: policyd enforcing policy-examples/redis.conf on real Redis
# traffic. Everything runs in a cgroup of its own (and the test harness's
# own network and mount namespaces) against a throwaway redis-server on
# 127.0.0.1, and is removed at the end (also on Ctrl-C).
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdtest import POLICYD, ROOT, Env, Policyd, free_port, slow, start_redis  # noqa: E402

os.chdir(ROOT)
if os.geteuid() != 0:
    sys.exit("make demo needs root (BPF programs, cgroups)")
env = Env("demo")
PD = os.path.relpath(POLICYD)


def say(what):
    print("\n\033[1m== %s\033[0m" % what, flush=True)


def indent(text):
    if text:
        print("".join("  " + l for l in text.splitlines(True)), end="", flush=True)


def cli(*args):
    """redis-cli from inside the cgroup, shown with what it printed."""
    print("$ redis-cli " + " ".join(args), flush=True)
    p = env.run(["redis-cli", "-p", str(port)] + list(args), inside=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    indent(p.stdout)


port = free_port()
with open("policy-examples/redis.conf") as f:
    conf = env.write("redis.conf", re.sub(r"\b6379\b", str(port), f.read()))
say("a throwaway redis-server on 127.0.0.1:%d" % port)
start_redis(env, port)
say("the policy: policy-examples/redis.conf (port %d)" % port)
print("$ %s check -c %s" % (PD, conf), flush=True)
if subprocess.run([PD, "check", "-c", conf]).returncode:
    sys.exit(1)
say("policyd run, policing cgroup " + env.cgroup)
pd = Policyd(env, conf)
indent(pd.text())

say("allowed commands from redis-cli inside the cgroup")
cli("SET", "greeting", "hello from the demo")
cli("GET", "greeting")
cli("PING")
cli("KEYS", "*")
say("refused: wipe and reconfigure, in any case (the sender sees EACCES)")
cli("FLUSHALL")
cli("flushall")
cli("FlushDB")
cli("CONFIG", "SET", "dir", "/tmp")
cli("config", "set", "dbfilename", "x.so")
say("the data is still there")
cli("GET", "greeting")
say("outside the cgroup nothing is policed (the host's other processes)")
print("$ redis-cli PING   # not in the cgroup", flush=True)
indent(env.run(["redis-cli", "-p", str(port), "PING"]).stdout)

time.sleep(slow(0.5))
say("what policyd logged (syslog, and stderr with --foreground)")
indent("".join(l + "\n" for l in pd.text().splitlines()
               if re.match(r"policyd: (deny|audit|redirect) ", l)))
say("policyd stats (rules that counted something)")
stats = env.run([PD, "stats", "--pin-dir", env.pin_dir]).stdout.splitlines(True)
indent("".join(l for i, l in enumerate(stats)
               if i < 2 or len(l.split()) < 4 or l.split()[3] != "0"))

say("stop: policyd detaches and removes its pins")
pd.stop()
indent("".join(pd.text().splitlines(True)[-2:]))
print()
print("demo done: cgroup, pins, redis-server and policyd are cleaned up on exit")
