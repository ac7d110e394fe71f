#!/usr/bin/env python3
"""The harness's namespaces and skip status (tests/pdtest.py, tests/run-test).
A test made with Env() runs in a network namespace other than the one it
was started in, with loopback up, and on a bpffs of its own: what it pins
cannot be seen from outside while it runs, and it leaves nothing behind;
one made with Env(host_ns=...) stays in its starter's namespaces and says
why; a check before Env() is refused. run-test passes status 77 with the
plan "1..0 # SKIP" to prove as a skip (exit 0), and fails status 77
without that plan, and that plan with status 0."""
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pdtest import (NS_VAR, SKIP, done, is_, kernel_log_mark, ok, skip_all, slow,  # noqa: E402
                    wait_until)

RUN_TEST = os.path.join(HERE, "run-test")
if os.geteuid() != 0:
    skip_all("needs root (namespaces, cgroups)")
kernel_log_mark()
tmp = tempfile.mkdtemp(prefix="policyd-test-harness-ns.")
env = {k: v for k, v in os.environ.items() if k != NS_VAR}


def write(name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def run(path, **extra):
    """A test file through run-test: (exit status, stdout, stderr)."""
    p = subprocess.run([RUN_TEST, path], capture_output=True, text=True, timeout=slow(120),
                       env=dict(env, **extra))
    return p.returncode, p.stdout, p.stderr


def netns(pid="self"):
    return os.stat("/proc/%s/ns/net" % pid).st_ino


# ---- Env(): namespaces of the test's own ----
inner = write("inner.t", """#!%(py)s
import os, socket, subprocess, sys, time
sys.path.insert(0, %(here)r)
from pdtest import Env, done, ok
env = Env("harness-ns", host_ns=os.environ.get("HOST_NS") or None)
os.makedirs(env.pin_dir)
with open(%(tmp)r + "/inner.state", "w") as f:
    f.write("%%d %%d %%s\\n" %% (os.getpid(), os.stat("/proc/self/ns/net").st_ino, env.pin_dir))
ok("UP" in subprocess.run(["ip", "link", "show", "lo"], capture_output=True, text=True).stdout,
   "loopback is up")
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
socket.create_connection(s.getsockname()).close()
ok(True, "a connection on 127.0.0.1")
while not os.path.exists(%(tmp)r + "/inner.go"):
    time.sleep(0.05)
done()
""" % {"py": sys.executable, "here": HERE, "tmp": tmp})
p = subprocess.Popen([RUN_TEST, inner], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                     env=env)
state = os.path.join(tmp, "inner.state")
ok(wait_until(lambda: os.path.exists(state) and open(state).read().endswith("\n"), 30),
   "Env(): the test runs to its first check")
pid, ino, pin = open(state).read().split() if os.path.exists(state) else ("0", "0", "")
ok(int(ino) != netns(), "... in a network namespace other than its starter's")
ok(pin.startswith("/sys/fs/bpf/") and not os.path.exists(pin),
   "what it makes under /sys/fs/bpf cannot be seen from outside while it runs (%s)" % pin)
ok(os.path.exists("/proc/%s/root%s" % (pid, pin)), "... and can from inside")
open(os.path.join(tmp, "inner.go"), "w").close()
out, err = p.communicate(timeout=slow(60))
is_(p.returncode, 0, "... and it passes under run-test (loopback up, a connection on it)")
ok("ok 2 - a connection on 127.0.0.1" in out, "... with its checks", out + err)
ok(not os.path.exists(pin), "nothing of it is left in the host's /sys/fs/bpf")

os.unlink(state)
os.unlink(os.path.join(tmp, "inner.go"))
p = subprocess.Popen([RUN_TEST, inner], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                     env=dict(env, HOST_NS="the test compares namespaces"))
ok(wait_until(lambda: os.path.exists(state) and open(state).read().endswith("\n"), 30),
   "Env(host_ns=REASON): the test runs")
pid, ino, pin = open(state).read().split() if os.path.exists(state) else ("0", "0", "")
is_(int(ino), netns(), "... in its starter's network namespace")
ok(os.path.exists(pin), "... and on the host's /sys/fs/bpf")
open(os.path.join(tmp, "inner.go"), "w").close()
out, err = p.communicate(timeout=slow(60))
ok("# in the host's network and mount namespaces: the test compares namespaces" in out,
   "... saying why", out)
is_(p.returncode, 0, "... and passes")
try:
    os.rmdir(pin)
except OSError:
    pass

# ---- a host with no bpffs on /sys/fs/bpf ----
# (a mount namespace of this test's where none is: nothing of the host's
# changes) Env() mounts the test's own with the mode policyd would mount
# one with, 0700: the directory under it (sysfs', 0555) would leave the
# reaper, root with no capability, unable to remove a pin directory.
# Env(host_ns=...) mounts one on /sys/fs/bpf as policyd would.
bare = write("bare.t", """#!%(py)s
import os, sys
sys.path.insert(0, %(here)r)
from pdtest import Env, done, ok
env = Env("harness-ns", host_ns=os.environ.get("HOST_NS") or None)
os.makedirs(env.pin_dir)
with open(%(tmp)r + "/bare.state", "w") as f:
    f.write("%%o\\n" %% (os.stat("/sys/fs/bpf").st_mode & 0o7777))
ok(True, "a pin directory made")
done()
""" % {"py": sys.executable, "here": HERE, "tmp": tmp})
no_bpffs = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'while umount /sys/fs/bpf 2>/dev/null; do :; done; exec "$0" "$@"', RUN_TEST]
bare_state = os.path.join(tmp, "bare.state")
for how, extra in (("Env()", {}), ("Env(host_ns=REASON)", {"HOST_NS": "no bpffs"})):
    if os.path.exists(bare_state):
        os.unlink(bare_state)
    p = subprocess.run(no_bpffs + [bare], capture_output=True, text=True, timeout=slow(120),
                       env=dict(env, **extra))
    mode = open(bare_state).read().strip() if os.path.exists(bare_state) else "none"
    ok((p.returncode, mode) == (0, "1700"),
       "no bpffs on the host: %s passes on a bpffs of mode 0700 (and the sticky bit "
       "bpffs sets)" % how, "status %d, mode %s\n%s" % (p.returncode, mode, p.stdout + p.stderr))
ok("# mounted a bpffs on /sys/fs/bpf (mode 700): none was" in p.stdout,
   "... and Env(host_ns=REASON) says it mounted one", p.stdout)

early = write("early.t", """#!%(py)s
import sys
sys.path.insert(0, %(here)r)
from pdtest import Env, ok
ok(True, "a check before Env()")
Env("harness-ns")
""" % {"py": sys.executable, "here": HERE})
rc, out, err = run(early)
ok(rc != 0 and "makes its Env() before its first check" in err,
   "a check before Env() is refused (it would run twice)", out + err)

# ---- the skip status ----
skipper = write("skip.t", """#!%(py)s
import sys
sys.path.insert(0, %(here)r)
from pdtest import skip_all
skip_all("a tool is missing")
""" % {"py": sys.executable, "here": HERE})
p = subprocess.run([skipper], capture_output=True, text=True, env=env)
is_((p.returncode, p.stdout), (SKIP, "1..0 # SKIP a tool is missing\n"),
    "skip_all: the plan 1..0 # SKIP and status 77")
rc, out, err = run(skipper)
is_((rc, out), (0, "1..0 # SKIP a tool is missing\n"), "run-test passes it to prove as a skip")
rc, out, err = run(write("s77.t", '#!/bin/sh\necho "ok 1 - x"\nexit 77\n'))
ok(rc == 1 and 'it exited with status 77 (a skip) without the plan "1..0 # SKIP reason"' in out,
   "run-test fails status 77 without the plan, saying so", out)
rc, out, err = run(write("s0.t", '#!/bin/sh\necho "1..0 # SKIP not really"\nexit 0\n'))
ok(rc == 1 and "its plan says 1..0 # SKIP not really but it exited with status 0, not 77" in out,
   "... and the plan with status 0", out)
p = subprocess.run(["prove", "--exec", RUN_TEST, skipper], capture_output=True, text=True, env=env)
ok(p.returncode == 0 and "skipped: a tool is missing" in p.stdout, "prove reports the skip", p.stdout)

subprocess.run(["rm", "-rf", tmp])
done()
