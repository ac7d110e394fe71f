#!/usr/bin/env python3
"""Sink files as an operator meets them: records that keep their own bytes
when events are lost (the daemon stopped under a flood of diversions),
log rotation (SIGHUP opens a moved or removed file anew), reloads that
name a file policyd made earlier, a reload refused on a sink, and a full
disk (a small tmpfs in a mount namespace of its own, inside the test's)."""
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (POLICYD, Env, Policyd, Recorder, done, free_port, grep, is_, ok,  # noqa: E402
                    sendline, slow, tail, wait_file)

env = Env("sinks")
TMP = env.tmp
port = free_port()
server = Recorder(port=port)


def pol(name, sink, sink_file, deny="FLUSHALL"):
    """Divert DEBUG (rule 9) to the sink, deny the word (rule 7)."""
    return env.write(name, """version = 1;
daemon = { log_rate = 0; };
sinks = ( { name = "%s"; file = "%s"; } );
services = ( { name = "kv"; ports = [ %d ]; framing = "line"; rules = (
  { id = 7; action = "deny"; contains = "%s"; },
  { id = 9; action = "redirect"; prefix = "DEBUG"; sink = "%s"; } ); } );
""" % (sink, sink_file, port, deny, sink))


DIVERT = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
for w in sys.argv[2:]:
    s.sendall(b"DEBUG " + w.encode() + b"\\n")
s.close()
"""


def divert(*words):
    """One connection from the cgroup sends "DEBUG WORD\\n" for each word."""
    env.python(DIVERT, port, *words)


def path(name):
    return os.path.join(TMP, name)


# ---- records keep their own bytes when events are lost ----
pd = Policyd(env, pol("a.conf", "q", path("flood.log")))
ok(pd.running(), "policyd runs")
pd.signal(signal.SIGSTOP)
# two processes at once, 40 connections each, 60 diverted lines per
# connection: 4,800 redirect events for a ring buffer that holds ~2,600
FLOOD = """
import socket, sys
port = int(sys.argv[1]); n = 0
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
for i in range(60):
    for s in conns:
        me = s.getsockname()[1]
        s.sendall(b"DEBUG from=%d seq=%d %s\\n" % (me, i, b"x" * (i % 50)))
        n += 1
print(n)
"""
floods = [env.start([sys.executable, "-c", FLOOD, str(port)], inside=True, stdout=subprocess.PIPE,
                    text=True) for _ in range(2)]
sent = sum(int(f.communicate(timeout=slow(300))[0] or 0) for f in floods)
time.sleep(slow(1))
pd.signal(signal.SIGCONT)
time.sleep(slow(4))
# and after it, diversions one by one: each must still get its own bytes
env.python("""
import socket, sys, time
for i in range(20):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"DEBUG from=%d seq=%d after\\n" % (s.getsockname()[1], i)); s.close(); time.sleep(0.02)
""", port)
sent += 20
time.sleep(slow(3))
good = unknown = 0
wrong = []
with open(path("flood.log"), "rb") as f:
    for line in f:
        m = re.search(rb' data="(.*)"$', line.rstrip(b"\n"))
        data = m.group(1) if m else b""
        if b" origin=unknown " in line:
            unknown += 1
            continue
        src = re.search(rb" src=127\.0\.0\.1:(\d+) ", line)
        one = re.fullmatch(rb"DEBUG from=(\d+) seq=\d+ (x*|after)\\n", data)
        if src and one and one.group(1) == src.group(1):
            good += 1
        else:
            wrong.append(line.decode(errors="replace")[:300])
is_(len(wrong), 0, "no record carries another connection's bytes (%d own, %d of unknown origin)"
    % (good, unknown))
for w in wrong[:5]:
    print("#   wrong: " + w.rstrip("\n"), flush=True)
lost = sum(int(re.match(r"^policyd: (\d+)", l).group(1))
           for l in pd.own_lines(r"^policyd: ([0-9]+) events lost: the ring buffer was full"))
ok(lost > 0 and unknown > 0,
   "the flood did lose events (%d): their bytes are recorded as of unknown origin" % lost)
ok(good + unknown == sent, "each of the %d diverted lines is in one record (%d + %d)"
   % (sent, good, unknown))
is_(pd.stop(), 0, "SIGTERM: exit 0")

# ---- rotation: SIGHUP opens a moved or removed sink file anew ----
rot = path("rot")
os.mkdir(rot)
shutil.chown(rot, "nobody")     # where logrotate lets policyd's user create files
q = os.path.join(rot, "q.log")
pd = Policyd(env, pol("b.conf", "q", q))
ok(pd.running(), "policyd runs with a sink in a directory its user may write")
divert("one")
ok(wait_file(q, r'data="DEBUG one\\n"'), "a record in the sink file")
st = os.stat(q)
is_("%s %o" % (pwd.getpwuid(st.st_uid).pw_name, st.st_mode & 0o777), "nobody 600",
    "the file policyd made is its user's, mode 0600")
os.rename(q, q + ".1")
pd.reload()
divert("two")
ok(wait_file(q, r'data="DEBUG two\\n"'), "SIGHUP after a rename: a new file takes the next record")
ok(not grep(q + ".1", "DEBUG two"), "... and the renamed one has only the earlier")
ok(pd.own_lines("^policyd: sink file %s opened again \\(it had been moved or removed\\) instance="
                % re.escape(q)), "... logged")
os.unlink(q)
pd.reload()
divert("three")
ok(wait_file(q, r'data="DEBUG three\\n"'), "SIGHUP after a removal: the file is made anew")
pd.stop()

# ---- reloads: a sink file policyd made earlier; a sink that fails ----
made = path("made.log")
c = pol("c.conf", "q", made)
pd = Policyd(env, c)
ok(pd.running(), "policyd runs; it makes %s" % made)
pol("c.conf", "q", os.path.join(rot, "other.log"))
pd.reload()
ok(pd.own_lines("reloaded: .* is generation 2"), "a reload to another sink file")
pol("c.conf", "quarantine", made)
pd.reload()
ok(pd.own_lines("reloaded: .* is generation 3"),
   "a reload back to the file policyd made earlier (as root), under another sink name",
   "\n".join(pd.own_lines("refused")))
divert("four")
ok(wait_file(made, r'sink=quarantine .*data="DEBUG four\\n"'), "... which takes the records again")
nodir = path("no/such/dir/q.log")
pol("c.conf", "q", nodir, "SHUTDOWN")
pd.reload()
ok(pd.own_lines("^policyd: reload refused: sink q: cannot open %s: No such file or directory; "
                "policy generation 3 keeps enforcing instance=" % re.escape(nodir)),
   "a reload whose sink cannot be opened is refused, saying so",
   "\n".join(pd.own_text().splitlines()[-3:]))
is_(sendline(env, port, "FLUSHALL"), 13, "... policy 3 keeps enforcing (FLUSHALL denied)")
is_(sendline(env, port, "SHUTDOWN"), 0, "... and the refused one's rule does not apply")
divert("five")
ok(wait_file(made, r'data="DEBUG five\\n"'), "... and its sink takes the records")
pd.stop()

# ---- a full disk: one line a second, with the cause ----
full = path("full")
d = pol("d.conf", "q", os.path.join(full, "q.log"))
os.mkdir(full)
full_log = path("full.log")
pd = env.start(["unshare", "-m", "--propagation", "private", "bash", "-c", r'''
	set -e
	mount -t tmpfs -o size=64k,mode=0755 policyd-test-full "$FULL"
	exec "$PD" run -c "$CONF" --cgroup "$CG" --pin-dir "$PIN" --foreground'''],
               stdout=open(full_log, "ab"), stderr=subprocess.STDOUT,
               env=dict(os.environ, FULL=full, PD=POLICYD, CONF=d, CG=env.cgroup, PIN=env.pin_dir))
ok(wait_file(full_log, "started:"), "policyd runs with its sink on a 64 KiB tmpfs", tail(full_log))
t0 = time.time()
# 3 s of diversions, 1 KiB each, 100 a second: 300 KiB for 64 KiB
env.python("""
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
for i in range(300):
    s.sendall(b"DEBUG %04d " % i + b"y" * 1000 + b"\\n"); time.sleep(0.01)
""", port)
time.sleep(slow(2))
secs = int(time.time() - t0) + 1
n = len(grep(full_log, "^policyd: sink file %s: [0-9]* records not written: No space left on device "
             "instance=" % re.escape(os.path.join(full, "q.log"))))
ok(1 <= n <= secs, "the full disk: %d lines in %d s, naming the cause" % (n, secs),
   "\n".join([l for l in grep(full_log, "") if "redirect rule" not in l][-5:]))
other = [l for l in grep(full_log, r"(^policyd: | )sink( file|=| [a-z]+:)")
         if not l.startswith("policyd: redirect rule=9 ") and
         not re.search(r": [0-9]* records not written: No space left on device ", l)]
is_("\n".join(other), "", "... and no other line about the sink")
is_(env.stop(pd), 0, "SIGTERM: exit 0")
done()
