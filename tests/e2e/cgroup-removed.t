#!/usr/bin/env python3
# The policed cgroup removed and made again at the same path, as systemd
# does to a unit's cgroup at every restart: the programs attached to the
# old cgroup went with it, so policyd must not run on as if it enforced.
# It says so in one error line naming the cgroup, exits with status 4 at
# once (the unit's Restart=on-failure starts it again), and leaves no pin
# and no helper process behind; a policyd started again on the new cgroup
# enforces. With on_exit = "keep" the line says the kept pins would
# enforce nothing, and they are removed, so that the next start is not
# refused over links on a cgroup that is gone. `policyd stats` on kept
# pins whose cgroup was removed while no daemon ran says nothing is
# policed (text, JSON, OpenMetrics). The once-a-second comparison of
# the path with the directory policyd opened works without the inotify
# watch: another file system mounted over the cgroup's path in policyd's
# own mount namespace (no directory removed, so no inotify event) ends it
# the same way.
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (EACCES, POLICYD, Env, Policyd, Recorder, client, cgroup2_mount, done,
                    is_, ok, send, skip, slow)

GONE = 4        # policyd(8), EXIT STATUS
env = Env("cgw")
kv = Recorder()
POLICY = """
version = 1;
daemon = { on_exit = "%s"; log_rate = 0; };
services = ( { name = "kv"; ports = [ %d ];
               rules = ( { id = 1; action = "deny"; contains = "FORBIDDEN"; } ); } );
"""
detach = env.write("detach.conf", POLICY % ("detach", kv.port))
keep = env.write("keep.conf", POLICY % ("keep", kv.port))
# where this test runs: its processes go back there before the rmdir
with open("/proc/self/cgroup") as f:
    home = cgroup2_mount() + [l for l in f.read().splitlines() if l.startswith("0::")][0][3:]


def denied(what):
    res, port = client(env, kv.port, [send(b"FORBIDDEN\n")])
    is_(res, [EACCES], "%s: a denied send from the cgroup fails with EACCES" % what)
    is_(kv.got(port), b"", "... and the server got nothing")


def helpers(pid):
    """The daemon's children (its reaper and aborter)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def remake_cgroup():
    """Move our process in the cgroup out (rmdir refuses a cgroup with
    processes), remove the cgroup and make it again; when it was removed."""
    sleeper = env.start(["sleep", "600"])
    with open(os.path.join(env.cgroup, "cgroup.procs"), "w") as f:
        f.write(str(sleeper.pid))
    with open(os.path.join(home, "cgroup.procs"), "w") as f:
        f.write(str(sleeper.pid))
    t = time.time()
    os.rmdir(env.cgroup)
    os.mkdir(env.cgroup)
    sleeper.kill()
    sleeper.wait()
    return t


def removed(pd, what, keep_note):
    kids = helpers(pd.p.pid)
    ok(len(kids) == 2, "%s: policyd has its reaper and aborter" % what, kids)
    t = remake_cgroup()
    said = None
    pat = re.compile(r"cgroup %s was removed" % re.escape(env.cgroup))
    while said is None and time.time() < t + slow(5):
        if pat.search(pd.own_text()):
            said = time.time() - t
        time.sleep(0.01)
    try:
        rc = pd.p.wait(timeout=slow(5))
    except subprocess.TimeoutExpired:
        rc = None
    took = time.time() - t
    # the path is compared once a second anyway; inotify says it at once
    ok(said is not None and said < slow(0.5), "%s: the removal is logged at once, not at "
       "the next once-a-second check (after %s s)" % (what, said and "%.2f" % said))
    is_(rc, GONE, "... policyd exits with status %d" % GONE)
    ok(rc is not None and took < slow(2), "... within %.0f s (took %.2f s)" % (slow(2), took))
    time.sleep(slow(0.3))
    lines = [l for l in pd.own_text().splitlines()
             if re.search(r"cgroup %s was removed" % re.escape(env.cgroup), l)]
    is_(len(lines), 1, "... and logs one line naming the cgroup")
    ok(lines and "nothing is policed any more" in lines[0],
       "... which says that nothing is policed any more", lines)
    ok(lines and ("the kept pins would no longer enforce anything" in lines[0]) == keep_note,
       "... %s the kept pins" % ("and says so of" if keep_note else "and names no"), lines)
    ok("stopping on" not in pd.own_text(), "... not a stop by a signal", pd.own_text()[-2000:])
    ok(not os.path.exists(env.pin_dir), "... the pins are removed",
       os.listdir(env.pin_dir) if os.path.isdir(env.pin_dir) else None)
    deadline = time.time() + slow(5)
    while time.time() < deadline and any(alive(k) for k in kids):
        time.sleep(0.05)
    ok(not any(alive(k) for k in kids), "... its reaper and aborter have ended", kids)


# on_exit = "detach"
pd = Policyd(env, detach)
denied("before")
st = pd.stats()
ok(st and st["cgroup"] == env.cgroup and st["cgroup_attached"] is True,
   "stats names the policed cgroup, attached", st)
removed(pd, "detach", False)
pd = Policyd(env, detach)
denied("policyd started again on the new cgroup")
is_(pd.stop(), 0, "... and stops with status 0 on SIGTERM")

# the path compared once a second: a tmpfs over it, in policyd's own
# mount namespace only (unshare execs policyd: the same pid)
log = os.path.join(env.tmp, "unshared.log")
with open(log, "wb") as f:
    p = env.start(["unshare", "-m", "--propagation", "private", POLICYD, "run", "-c", detach,
                   "--cgroup", env.cgroup, "--pin-dir", env.pin_dir, "--foreground"],
                  stdout=f, stderr=f)
deadline = time.time() + slow(20)
while time.time() < deadline and p.poll() is None and "started:" not in open(log).read():
    time.sleep(0.05)
ok(p.poll() is None, "policyd runs in a mount namespace of its own", open(log).read()[-2000:])
denied("... and enforces")
# --root: policyd's root, not its namespace's (they differ where the
# system runs chrooted, as in check-kernels' guest)
mnt = subprocess.run(["nsenter", "-t", str(p.pid), "-m", "--root", "mount", "-t", "tmpfs",
                      "cgw-over", env.cgroup], capture_output=True, text=True)
if mnt.returncode:
    # not policyd's doing: the case needs a mount it cannot have here
    p.terminate()
    p.wait(timeout=slow(20))
    skip(3, "cannot mount a tmpfs over the cgroup's path in policyd's mount namespace "
         "(mount %d: %s)" % (mnt.returncode, mnt.stderr.strip()))
else:
    t = time.time()
    try:
        rc = p.wait(timeout=slow(5))
    except subprocess.TimeoutExpired:
        rc = None
    took = time.time() - t
    if rc is None:
        p.terminate()       # so that the next start is not refused over its pins
        p.wait(timeout=slow(20))
    ok(rc == GONE and took < slow(2.5), "another file system over the cgroup's path (no "
       "inotify event): policyd exits with status %d within %.1f s (status %s after %.2f s)"
       % (GONE, slow(2.5), rc, took), open(log).read()[-2000:])
    ok(re.search(r"cgroup %s was removed.*nothing is policed" % re.escape(env.cgroup),
                 open(log).read()), "... with the line that says so")
    ok(not os.path.exists(env.pin_dir), "... and the pins are removed")

# on_exit = "keep"
pd = Policyd(env, keep)
denied("on_exit keep")
removed(pd, "keep", True)
pd = Policyd(env, keep)
ok(pd.running(), "a policyd started again on the new cgroup is not refused over the old "
   "cgroup's pins")
denied("... and enforces")

# kept pins, the daemon gone (SIGKILL), then the cgroup removed
pd.p.send_signal(signal.SIGKILL)
pd.p.wait()
time.sleep(slow(0.5))       # the reaper keeps the pins and ends
st = pd.stats()
ok(st and st["cgroup_attached"] is True, "kept pins on a live cgroup: attached", st)
remake_cgroup()
st = pd.stats()
ok(st and st["cgroup"] == env.cgroup and st["cgroup_attached"] is False,
   "the kept pins' cgroup removed and made again: stats --json says cgroup_attached false",
   st)
out = subprocess.run([POLICYD, "stats", "--pin-dir", env.pin_dir], capture_output=True,
                     text=True)
ok(out.returncode == 0 and ("NOT POLICING: cgroup %s was removed" % env.cgroup) in out.stdout,
   "... the table says NOT POLICING and names the cgroup", out.stdout + out.stderr)
out = subprocess.run([POLICYD, "stats", "--pin-dir", env.pin_dir, "--format", "openmetrics"],
                     capture_output=True, text=True)
ok(re.search(r"^policyd_cgroup_attached 0$", out.stdout, re.M),
   "... and OpenMetrics policyd_cgroup_attached 0", out.stdout[-2000:])
pd = Policyd(env, keep, must_start=False)
try:
    rc = pd.p.wait(timeout=slow(20))
except subprocess.TimeoutExpired:
    rc = None
ok(rc == 3 and "polices another cgroup" in pd.own_text(),
   "a policyd started on those pins is refused with status 3: their links police another "
   "cgroup (status %s)" % rc, pd.own_text()[-2000:])
done()
