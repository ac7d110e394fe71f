#!/usr/bin/env python3
# The test harness itself. The kernel log check finds the warnings of a
# recorded log (the ones of issue 23) and only those after its mark, in
# the harness (tests/pdtest.py) and in tests/run-test, and prints them.
# run-test ends a file that runs past its time limit (its traps still
# clean up) and one that leaves a process holding its output, each as a
# named failure. A policyd that does not start (a kernel that refuses the
# program, simulated by a PD that exits 3) ends an end-to-end test at
# once, with policyd's log, and the test's cgroup is removed. Recorded
# logs are fed through PD_KMSG: nothing is ever written to the kernel's log.
import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HARNESS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HARNESS)
from pdtest import ROOT, done, is_, ok, skip, slow  # noqa: E402

os.chdir(ROOT)
tmp = tempfile.mkdtemp(prefix="policyd-harness.")
atexit.register(shutil.rmtree, tmp, True)
rec = "tests/harness/kmsg-refcount.txt"
clean = "tests/harness/kmsg-clean.txt"


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def write(name, text, mode=0o644):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def run(cmd, **env):
    """cmd to its end with env added to the environment: (status, stdout,
    stderr, seconds)."""
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                       stdin=subprocess.DEVNULL, env=dict(os.environ, **env))
    return p.returncode, p.stdout, p.stderr, time.time() - t0


def has_line(text, line):
    return line in text.split("\n")


# the recorded warnings as the kernel would log them after the clean log
later = []
for line in read(rec).splitlines(True):
    f = line.split(",", 2)
    if len(f) == 3 and f[1].isdigit():
        f[1] = str(int(f[1]) + 1000)
    later.append(",".join(f))
later = write("later", "".join(later))

# ---- tests/kmsg.py over recorded logs
KMSG = [sys.executable, "tests/kmsg.py"]
st, out, _, _ = run(KMSG + ["check", "901"], PD_KMSG=rec)
is_(st, 1, "kmsg.py: the recorded refcount warnings fail the check")
is_(len([l for l in out.split("\n") if l]), 6, "... each of the six bad lines is printed")
ok(has_line(out, "kernel log #903: refcount_t: addition on 0; use-after-free."),
   "... in full, with its sequence number", out)
st, out, _, _ = run(KMSG + ["check", "922"], PD_KMSG=rec)
is_((st, out), (0, ""), "... and nothing is found after a mark taken after them")
is_(run(KMSG + ["mark"], PD_KMSG=rec)[1].strip(), "922",
    "the mark is the newest record's sequence number")
st, out, _, _ = run(KMSG + ["check", "120"], PD_KMSG=clean)
is_((st, out), (0, ""), "benign lines and continuation records after the mark pass")
is_(run(KMSG + ["check", "119"], PD_KMSG=clean)[0], 1,
    "a WARNING: line just after the mark is found (the boot-time one, before the mark, is not)")

# ---- the check inside the harness, with the log growing during the test
python_t = write("python.t", """#!/usr/bin/env python3
import os, sys
sys.path.insert(0, %r)
from pdtest import done, kernel_log_mark, ok
kernel_log_mark()
ok(True, "a check that passes")
if os.environ.get("APPEND"):
    with open(os.environ["PD_KMSG"], "a") as f, open(os.environ["APPEND"]) as g:
        f.write(g.read())
done()
""" % HARNESS, 0o755)
kmsg = os.path.join(tmp, "kmsg")
shutil.copy(clean, kmsg)
st, out, err, _ = run([python_t], PD_KMSG=kmsg, APPEND=later)
is_(st, 1, "python harness: a warning logged during the test fails it")
ok(has_line(out, "not ok 2 - the kernel logged no warning while the test ran"),
   "... as a check of its own", out)
ok(has_line(out, "#   kernel log #1903: refcount_t: addition on 0; use-after-free."),
   "... printing the line in the test's output", out)
ok("kernel log #1920: refcount_t: underflow; use-after-free." in err,
   "... and on stderr (seen without prove -v)", err)
shutil.copy(clean, kmsg)
st, out, err, _ = run([python_t], PD_KMSG=kmsg)
is_(st, 0, "python harness: a test during which nothing bad was logged passes") or \
    print("#   " + (out + err).replace("\n", "\n#   "))

# ---- tests/run-test
RUN = ["tests/run-test"]
write("pass.t", '#!/usr/bin/env bash\necho "ok 1 - fine"\necho 1..1\n', 0o755)
write("hang.t", '#!/usr/bin/env bash\ntrap "touch %s/trapped; exit 143" TERM\n'
      'echo "ok 1 - started"\nsleep 600 & wait\n' % tmp, 0o755)
write("stray.t", '#!/usr/bin/env bash\nsleep 600 &\necho $! > %s/stray.pid\n'
      'echo "ok 1 - fine"\necho 1..1\n' % tmp, 0o755)
write("warn.t", '#!/usr/bin/env bash\ncat %s/later >> "$PD_KMSG"\necho "ok 1 - fine"\n'
      'echo 1..1\n' % tmp, 0o755)
shutil.copy(clean, kmsg)
st, out, err, _ = run(RUN + [os.path.join(tmp, "pass.t")], PD_KMSG=kmsg)
is_(st, 0, "run-test: a passing file passes") or print("#   " + (out + err).replace("\n", "\n#   "))

st, out, _, t = run(RUN + [os.path.join(tmp, "hang.t")], PD_KMSG=kmsg, PD_TEST_LIMIT="2",
                    PD_SLOW="1")
ok(st != 0 and t < slow(30),
   "run-test: a file that hangs fails after its limit (2 s: status %d after %d s)" % (st, t))
ok(re.search(r"^not ok - .*hang\.t: it ran into the time limit of 2 s$", out, re.M),
   "... with a failure that says so", out)
ok(os.path.exists(os.path.join(tmp, "trapped")), "... and SIGTERM first, so that its traps clean up")

st, out, _, t = run(RUN + [os.path.join(tmp, "stray.t")], PD_KMSG=kmsg)
ok(st != 0 and t < slow(20),
   "run-test: a file that leaves a process holding its output ends (%d s) and fails" % t)
spid = read(os.path.join(tmp, "stray.pid")).strip()
ok(re.search(r"^not ok - .*stray\.t: it left processes running: %s \(sleep\)$" % spid, out, re.M),
   "... naming the process", out)
time.sleep(0.2)
try:
    state = read("/proc/%s/stat" % spid).split()[2]
except OSError:
    state = ""
ok(state in ("", "Z"), "... which is killed (%s)" % (state or "gone"))

shutil.copy(clean, kmsg)
st, out, _, _ = run(RUN + [os.path.join(tmp, "warn.t")], PD_KMSG=kmsg)
is_(st, 1, "run-test: a kernel warning while a file ran fails the file, even one with no harness")
ok(has_line(out, "# kernel log #1904: WARNING: CPU: 1 PID: 48213 at lib/refcount.c:25 "
            "refcount_warn_saturate"), "... printing the lines", out)

# ---- a policyd that does not start ends the test at once, with its log
if os.geteuid() != 0:
    skip(5, "needs root (cgroups)")
    done()
refuse = write("refuse", '#!/bin/sh\necho "policyd: the kernel refused the BPF program: '
               'Invalid argument (simulated)" >&2\nexit 3\n', 0o755)
cgfile = os.path.join(tmp, "cgroup")
start_t = write("start-py.t", """#!/usr/bin/env python3
import sys
sys.path.insert(0, %r)
from pdtest import Env, Policyd, done, ok
env = Env("harness")
open(%r, "w").write(env.cgroup)
pd = Policyd(env, env.write("p.conf", "version = 1;\\nservices = ( );\\n"))
ok(pd.running(), "policyd runs")
ok(True, "the test went on")
done()
""" % (HARNESS, cgfile), 0o755)
st, out, _, secs = run([start_t], PD=refuse)
is_(st, 1, "start-py.t: a policyd that exits 3 at start fails the test")
ok(re.search(r"^not ok 1 - policyd starts \(it exited with status 3; its log:\)$", out, re.M),
   "... at once, saying so (%d s)" % secs, out)
ok(re.search(r"^#   policyd: the kernel refused the BPF program: Invalid argument \(simulated\)$",
             out, re.M), "... with policyd's log", out)
ok("the test went on" not in out, "... and nothing after it runs")
ok(not os.path.exists(read(cgfile).strip()), "... and its cgroup is removed")
done()
