#!/usr/bin/env python3
"""After setup policyd runs as an unprivileged user with no capabilities and
no_new_privs, and still enforces and reloads; its reaper keeps uid 0 but
no capability; its aborter runs as the same user with CAP_NET_ADMIN alone
(tests/e2e/abort.t: what it does); a SIGKILLed daemon still ends up
detached (on_exit detach), and its aborter ends with it; a pin directory
the reaper cannot remove is reported, not passed over."""
import os
import pwd
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (Env, Policyd, children, done, fail_now, free_port, is_, kv_policy,  # noqa: E402
                    ok, output, proc_state, sendline, slow, wait_port, wait_until)

env = Env("privs")
port = free_port()

# a server that takes each connection and closes it
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(64)


def serve():
    while True:
        c, _ = ls.accept()
        c.close()


threading.Thread(target=serve, daemon=True).start()
if not wait_port(port):
    fail_now("the test's server listens on 127.0.0.1:%d" % port)


def pol(word):
    return env.write("p.conf", kv_policy(port, 1, "", word))


def status(pid, key):
    """A field of /proc/PID/status, its tabs as single spaces."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == key:
                return " ".join(v.split())
    return None


def child(pid, comm):
    """policyd's child process named comm: its PID, or None."""
    c = children(pid, comm)
    return c[0] if c else None


def bpf_fds(pid):
    """How many BPF objects (maps, programs, links) the process holds."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("anon_inode:bpf")
        except OSError:
            pass
    return n


pd = Policyd(env, pol("FLUSHALL"))
ok(pd.running(), "policyd runs")
ok(pd.own_lines(r"running as nobody \(uid [1-9][0-9]*, gid [1-9][0-9]*\), no capabilities"),
   "it says it runs as nobody")
nb = pwd.getpwnam("nobody")
nobody, nogroup = str(nb.pw_uid), str(nb.pw_gid)
is_(status(pd.pid, "Uid"), " ".join([nobody] * 4), "real, effective, saved and fs uid are nobody's")
is_(status(pd.pid, "Gid"), " ".join([nogroup] * 4), "every gid is nobody's")
is_(status(pd.pid, "Groups"), "", "no supplementary groups")
for c in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
    is_(status(pd.pid, c), "0000000000000000", "%s is empty" % c)
is_(status(pd.pid, "NoNewPrivs"), "1", "NoNewPrivs: 1")
reaper = child(pd.pid, "policyd-reaper")
ok(reaper, "the reaper is policyd's child")
is_(reaper and status(reaper, "CapEff"), "0000000000000000", "the reaper has no capability")
is_(reaper and status(reaper, "NoNewPrivs"), "1", "the reaper has NoNewPrivs: 1")
is_(reaper and bpf_fds(reaper), 0, "the reaper holds no BPF object")

aborter = child(pd.pid, "policyd-abort")
ok(aborter, "the aborter is policyd's child")
is_(aborter and status(aborter, "Uid"), " ".join([nobody] * 4), "the aborter's uids are nobody's")
is_(aborter and status(aborter, "Gid"), " ".join([nogroup] * 4), "... and its gids")
is_(aborter and status(aborter, "Groups"), "", "... no supplementary groups")
# CAP_NET_ADMIN is capability 12
for c in ("CapPrm", "CapEff", "CapBnd"):
    is_(aborter and status(aborter, c), "0000000000001000",
        "the aborter's %s is CAP_NET_ADMIN alone" % c)
for c in ("CapInh", "CapAmb"):
    is_(aborter and status(aborter, c), "0000000000000000", "the aborter's %s is empty" % c)
is_(aborter and status(aborter, "NoNewPrivs"), "1", "the aborter has NoNewPrivs: 1")
is_(aborter and bpf_fds(aborter), 0, "the aborter holds no BPF object")

is_(sendline(env, port, "FLUSHALL"), 13, "enforcement works after the drop (EACCES)")
is_(sendline(env, port, "SHUTDOWN"), 0, "SHUTDOWN passes under policy 1")
pol("SHUTDOWN")
ok(re.search(r"reloaded: .* generation 2", pd.reload() or ""), "SIGHUP reload works unprivileged")
is_(sendline(env, port, "SHUTDOWN"), 13, "the new rule enforces")
is_(sendline(env, port, "FLUSHALL"), 0, "the old rule is gone")

pd.kill()
ok(wait_until(lambda: not os.path.exists(env.pin_dir), 5),
   "SIGKILL: the reaper removed the pins (on_exit detach)")
time.sleep(slow(0.3))
is_(output(["bpftool", "cgroup", "show", env.cgroup])[1], "", "SIGKILL: nothing attached to the cgroup")
is_(sendline(env, port, "SHUTDOWN"), 0, "SIGKILL: nothing policed any more")


for who, pid in (("reaper", reaper), ("aborter", aborter)):
    st = wait_until(lambda: proc_state(pid) in ("", "Z"), 5) and proc_state(pid)
    ok(st in ("", "Z"), "the %s exited (a zombie at most, until init reaps it)" % who,
       "it is still running (%s)" % proc_state(pid))

# The reaper has no capability: a pin directory whose parent its owner
# cannot write to (here mode 0555) it empties but cannot remove, and it
# says so, whether the daemon died or asked it to.
ro = env.pin_dir + "-ro"
os.mkdir(ro)
os.chmod(ro, 0o555)
env.pin_dir = os.path.join(ro, "pins")
pd = Policyd(env, pol("FLUSHALL"))
is_(sendline(env, port, "FLUSHALL"), 13, "pins under a read-only directory: policyd enforces")
pd.kill()
ok(pd.wait_log(r"^policyd: the daemon ended; cannot remove everything in %s: Permission denied"
               % re.escape(env.pin_dir), 5),
   "SIGKILL: the reaper says it cannot remove the pin directory", pd.own_text())
ok(wait_until(lambda: os.path.isdir(env.pin_dir) and not os.listdir(env.pin_dir), 5),
   "... having removed every pin in it")
time.sleep(slow(0.3))
is_(sendline(env, port, "FLUSHALL"), 0, "... so nothing is policed any more")
pd = Policyd(env, pol("FLUSHALL"))
is_(pd.stop(), 0, "a policyd started again on the directory left there stops with status 0")
ok(pd.own_lines(r"cannot remove everything in %s: Permission denied"
                % re.escape(env.pin_dir)), "... logging that it could not remove it",
   pd.own_text())
ok(pd.own_lines(r"stopped: not everything under %s could be removed" % re.escape(env.pin_dir))
   and not pd.own_lines(r"pins removed"), "... and not that the pins were removed")
is_(sendline(env, port, "FLUSHALL"), 0, "... and nothing is policed any more")
os.rmdir(env.pin_dir)
os.rmdir(ro)
done()
