#!/usr/bin/env python3
"""Bad input is refused quickly, in bounded memory, and changes nothing:
policies far past the compiler's limits (check and a reload, whose
memory is given back), a FIFO where the policy file should be (check,
dump, run, reload), and run without privilege."""
import os
import random
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (POLICYD, Env, Policyd, Recorder, done, free_port, is_, kv_policy, ok,  # noqa: E402
                    output, sendline, slow)

env = Env("limits")
port = free_port()
server = Recorder(port=port)
PIN = env.pin_dir

# 5,000 patterns of 1 KiB (5 million trie nodes: past the state limit),
# and 45,000 short ones, prefix and contains, half of them nocase (past the
# image's 256 MiB)
r = random.Random(3)
head = 'version = 1;\nservices = ({ name = "big"; ports = [ %d ]; framing = "line"; rules = (\n' % port
long = ",\n".join('{ id = %d; action = "deny"; contains = "%s"; }'
                  % (i + 1, "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(1024)))
                  for i in range(5000))
env.write("long.conf", head + long + "\n); });\n")
al = "abcdefghijklmnopqrstuvwxyz0123456789_-/.ABCDEFGH"
mix = ",\n".join('{ id = %d; action = "deny"; %s = "%s"; nocase = %s; }'
                 % (i + 1, r.choice(["contains", "prefix"]),
                    "".join(r.choice(al) for _ in range(r.randint(8, 16))),
                    r.choice(["true", "false"]))
                 for i in range(45000))
env.write("mix.conf", head + mix + "\n); });\n")
for name in ("long.conf", "mix.conf"):
    os.chmod(os.path.join(env.tmp, name), 0o644)


def measure(cmd):
    """(exit status, seconds, peak RSS in MiB, stderr) of cmd: the rusage
    of that one process (wait4)."""
    err = os.path.join(env.tmp, "err")
    t = time.time()
    with open(err, "w") as f:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f)
        _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    with open(err) as f:
        return p.returncode, time.time() - t, ru.ru_maxrss // 1024, f.read()


for name in ("long", "mix"):
    path = os.path.join(env.tmp, name + ".conf")
    rc, secs, mib, err = measure([POLICYD, "check", "-c", path])
    is_(rc, 1, "check refuses %s.conf" % name)
    ok(re.search(r"(?m)^%s:[0-9]+: .*(past the limit of [0-9]+ states|more than [0-9]+ automaton "
                 r"states|past 256 MiB)" % re.escape(path), err),
       "... with FILE:LINE and the limit: %s" % err[:200].rstrip("\n"))
    ok(secs < slow(10), "... in %.1f s (< 10 s)" % secs)
    ok(mib < 1024, "... in %d MiB at most (< 1 GiB)" % mib)

# a reload of such a policy is refused, and the memory given back
p = env.write("p.conf", kv_policy(port, 100, "", "FLUSHALL"))
os.chmod(p, 0o644)
pd = Policyd(env, p)
ok(pd.running(), "policyd runs a small policy")


def vm(key):
    """A VmRSS/VmHWM line of policyd's status, in MiB."""
    with open("/proc/%d/status" % pd.pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return None


before = vm("VmRSS")
for name in ("long", "mix"):
    shutil.copy(os.path.join(env.tmp, name + ".conf"), p)
    line = pd.reload(timeout=30) or ""
    ok("reload refused: %s is invalid; policy generation 1 keeps enforcing" % p in line,
       "a reload of %s.conf is refused" % name, line)
    peak, after = vm("VmHWM"), vm("VmRSS")
    ok(peak < 1024 and after < before + 16,
       "... RSS %d MiB before, %d MiB after (peak %d MiB): given back" % (before, after, peak))
is_(sendline(env, port, "FLUSHALL"), 13, "policy 1 keeps enforcing")


def bounded(cmd):
    """(status, output) of cmd given 5 s x PD_SLOW, as timeout(1): 124 if it
    ran past them."""
    try:
        return output(cmd, timeout=5)
    except subprocess.TimeoutExpired:
        return 124, ""


# a FIFO instead of the policy file: refused at once, nothing waits on it
fifo = os.path.join(env.tmp, "fifo")
os.mkfifo(fifo)
for cmd in ("check", "dump"):
    rc, out = bounded([POLICYD, cmd, "-c", fifo])
    is_(rc, 1, "%s -c FIFO: exit 1, not a hang" % cmd)
    is_(out, "%s: not a regular file (a FIFO): a policy is read from a file" % fifo,
        "... saying why")
rc, out = bounded([POLICYD, "run", "-c", fifo, "--cgroup", env.cgroup, "--pin-dir", PIN + ".x"])
is_(rc, 1, "run -c FIFO: exit 1 (%s)" % out)
os.unlink(p)
os.mkfifo(p)
pd.reload(timeout=5)
ok(pd.own_lines(re.escape("%s: not a regular file (a FIFO): a policy is read from a file" % p)),
   "a reload with a FIFO as the policy file is refused", "\n".join(pd.own_text().splitlines()[-3:]))
is_(sendline(env, port, "FLUSHALL"), 13, "... and the daemon goes on (FLUSHALL denied)")
is_(pd.stop(), 0, "SIGTERM: exit 0")

# run without privilege: the capabilities it lacks, not a missing feature
q = env.write("q.conf", kv_policy(port, 100, "", "FLUSHALL"))
os.chmod(q, 0o644)
rc, out = output(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", POLICYD,
                  "run", "-c", q, "--cgroup", env.cgroup, "--pin-dir", PIN + ".y"])
is_(rc, 3, "run as nobody: exit 3")
ok(re.search(r"lacks CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID.*start it as root$",
             out, re.S), "... naming the capabilities it lacks", out)
ok(not os.path.exists(PIN + ".y"), "... and nothing pinned")
done()
