#!/usr/bin/env python3
"""The systemd unit and what it relies on: systemd-analyze verify and
security --offline; sd_notify (READY=1, RELOADING=1 with MONOTONIC_USEC,
STATUS=, STOPPING=1) and `policyd reload` failing on a refused policy;
every system call the daemon makes is in the unit's SystemCallFilter
(strace over start with adoption, denies and aborts, reloads, stop);
the daemon works with the kernel tunables and the cgroup file systems
read-only (ProtectKernelTunables, ProtectControlGroups); where systemd
is PID 1, the daemon runs under the unit's sandbox through systemd-run."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (BUILD, POLICYD, ROOT, Env, Policyd, Recorder, children, done, free_port,  # noqa: E402
                    grep, is_, kv_policy, ok, output, sendline, skip_all, slow, tail, wait_file,
                    wait_port, wait_until)

if not shutil.which("systemd-analyze"):
    skip_all("systemd-analyze is not installed")
env = Env("unit")
os.chdir(ROOT)
TMP = env.tmp
unit_in = "policyd/policyd.service.in"
port = free_port()
p = os.path.join(TMP, "p.conf")


def pol(*words):
    return env.write("p.conf", kv_policy(port, 100, "", *words))


pol("FLUSHALL")

# --- the unit file ---
rc, out = output(["make", "-s", "install", "DESTDIR=%s/root" % TMP, "PREFIX=/usr"], timeout=600)
ok(rc == 0, "make install PREFIX=/usr", out[-2000:])
unit = os.path.join(TMP, "root/usr/lib/systemd/system/policyd.service")
lines = open(unit).read().splitlines() if os.path.exists(unit) else []
ok("ExecStart=/usr/sbin/policyd run -c /etc/policyd/policy.conf" in lines and
   "ExecReload=/usr/sbin/policyd reload --pid $MAINPID -c /etc/policyd/policy.conf" in lines,
   "the installed unit names the installed binary")
# verify checks that the commands exist: the same unit over this build
with open(unit_in) as f:
    unit_text = f.read()
service = env.write("policyd.service", unit_text.replace("@SBINDIR@", BUILD).replace("@SYSCONFDIR@", "/etc"))
rc, out = output(["systemd-analyze", "verify", service],
                 env=dict(os.environ, MANPATH=os.path.join(TMP, "root/usr/share/man")))
ok(rc == 0, "systemd-analyze verify", out)
rc, security = output(["systemd-analyze", "security", "--offline=yes", "--no-pager", service])
m = re.search(r"Overall exposure level for policyd.service: ([0-9.]*)", security)
score = m.group(1) if m else ""
print("# systemd-analyze security: exposure %s" % score, flush=True)
ok(float(score or 99) <= 4.0, "systemd-analyze security --offline=yes: exposure %s (at most 4.0)" % score)
for k in ("SystemCallFilter=~@obsolete", "SystemCallFilter=~@module", "ProtectControlGroups=",
          "ProtectKernelTunables=", "UMask="):
    ok("✓ %s " % k in security, "security: %s is met" % k)

# --- sd_notify and policyd reload ---
notify = os.path.join(TMP, "notify")
ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ns.bind(notify)
os.chmod(notify, 0o777)     # the daemon sends after its drop
messages = []


def receive():
    while True:
        messages.append(ns.recv(4096).decode())


threading.Thread(target=receive, daemon=True).start()


def notified(line):
    """How many of the messages hold line."""
    return sum(line in m.split("\n") for m in list(messages))


def said(line):
    return any(line in m.split("\n") for m in list(messages))


pd = Policyd(env, p, environ={"NOTIFY_SOCKET": notify})
ok(pd.running(), "policyd runs with NOTIFY_SOCKET")
time.sleep(slow(0.2))
is_(notified("READY=1"), 1, "READY=1 once started")
ok(said("STATUS=policy generation 1 enforcing, mode enforce"), "STATUS= says what enforces")
pol("FLUSHALL", "SHUTDOWN")
st, out = output([POLICYD, "reload", "--pid", pd.pid, "--pin-dir", env.pin_dir, "-c", p])
is_(st, 0, "policyd reload: exit 0")
is_(out, "policyd reload: policy generation 2 enforces (mode enforce)", "... and says what enforces")
time.sleep(slow(0.2))
ok(said("RELOADING=1") and any(re.search(r"(?m)^MONOTONIC_USEC=[0-9]+$", m) for m in messages),
   "RELOADING=1 with MONOTONIC_USEC")
is_(notified("READY=1"), 2, "READY=1 after the reload")
ok(said("STATUS=reloaded; policy generation 2 enforcing, mode enforce"), "STATUS= after the reload")
env.write("p.conf", 'version = 1; services = ( { name = "kv"; ports = [ 0 ]; } );\n')
st, out = output([POLICYD, "reload", "--pid", pd.pid, "--pin-dir", env.pin_dir, "-c", p])
is_(st, 1, "policyd reload of an invalid policy: exit 1 (the reload job fails)")
ok(re.search(r"refused; policy generation 2 keeps enforcing.*%s:1: ports are from 1 to 65535"
             % re.escape(p), out, re.S), "... saying why", out)
time.sleep(slow(0.2))
ok(said("STATUS=reload refused (see the log); policy generation 2 enforcing, mode enforce"),
   "STATUS= says the reload was refused")
st, out = output([POLICYD, "reload", "--pid", "1", "--pin-dir", env.pin_dir])
is_(st, 3, "policyd reload --pid of another process: exit 3 (%s)" % out)
ok(pd.stop() == 0, "policyd stops")
is_(notified("STOPPING=1"), 1, "STOPPING=1")

# --- SystemCallFilter: every system call made is allowed ---
pol("FLUSHALL")
# a connection open before the start, to be adopted (pidfd_getfd)
server = Recorder(port=port)
if not wait_port(port):
    ok(False, "the recording server listens")
# open for as long as the start may take (under strace and emulation,
# loading alone can take tens of seconds)
env.start([sys.executable, "-c", """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
time.sleep(float(sys.argv[2]))""", str(port), str(slow(60))], inside=True)
wait_until(lambda: output(["ss", "-Htn", "state", "established", "( dport = :%d )" % port])[1], 5)
log = os.path.join(TMP, "policyd-strace.log")
trace = os.path.join(TMP, "strace")
st_p = env.start(["strace", "-f", "-qq", "-o", trace, POLICYD, "run", "-c", p, "--cgroup", env.cgroup,
                  "--pin-dir", env.pin_dir, "--foreground"], stdout=open(log, "ab"),
                 stderr=subprocess.STDOUT)
wait_file(log, "started:", 60)
pdpid = (wait_until(lambda: children(st_p.pid, "policyd"), 5) or [None])[0]
ok(grep(log, " 1 open connections adopted"), "under strace: started, one connection adopted", tail(log))
is_(sendline(env, port, "FLUSHALL"), 13, "under strace: a denied send fails")
pol("FLUSHALL", "SHUTDOWN")
os.kill(pdpid, signal.SIGHUP)
time.sleep(slow(0.5))
is_(sendline(env, port, "SHUTDOWN"), 13, "under strace: reloaded")
os.kill(pdpid, signal.SIGTERM)
st_p.wait(timeout=slow(60))
used = sorted(set(re.findall(r"(?m)^[0-9]+ +([a-z_0-9]+)\(", open(trace).read())))
allowed_sets = [l[len("SystemCallFilter="):] for l in unit_text.splitlines()
                if l.startswith("SystemCallFilter=")]


def expand(names, seen=None):
    """The system calls of sets and names, recursively."""
    out = set()
    for x in names:
        if x.startswith("@"):
            listing = output(["systemd-analyze", "syscall-filter", "--no-pager", x])[1]
            out |= expand(re.findall(r"(?m)^ +([-@a-z_0-9]+)$", listing))
        else:
            out.add(x)
    return out


allowed = expand(" ".join(allowed_sets).split())
missing = [s for s in used if s not in allowed and s != "execve"]
print("# system calls made: %d; allowed by the unit: %d" % (len(used), len(allowed)), flush=True)
is_(" ".join(missing), "", "every system call the daemon made is in the unit's SystemCallFilter")
ok("bpf" in used and "pidfd_getfd" in used,
   "... bpf and pidfd_getfd among them (the unit allows them by name)")

# --- ProtectKernelTunables, ProtectControlGroups: read-only /sys, /proc/sys, cgroups ---
pol("FLUSHALL")
ro = env.write("ro.sh", r'''set -e
# as systemd does: the kernel's tunables and the cgroup file systems
# read-only; /sys/fs/bpf (ReadWritePaths) stays writable
mount --make-rprivate /
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
awk '$2 == "/sys" || ($2 ~ "^/sys/" && $2 != "/sys/fs/bpf") { print $2 }' /proc/mounts | while read -r m; do
	mount -o remount,bind,ro "$m" 2>/dev/null || { mount --bind "$m" "$m" && mount -o remount,bind,ro "$m"; }
done
touch /proc/sys/kernel/x 2>/dev/null && exit 90
mkdir "$CG/x" 2>/dev/null && exit 91
exec "$@"
''')
log = os.path.join(TMP, "policyd-ro.log")
ro_p = env.start(["unshare", "-m", "bash", ro, POLICYD, "run", "-c", p, "--cgroup", env.cgroup,
                  "--pin-dir", env.pin_dir, "--foreground"], stdout=open(log, "ab"),
                 stderr=subprocess.STDOUT, env=dict(os.environ, CG=env.cgroup))
wait_until(lambda: grep(log, "started:") or ro_p.poll() is not None, 60)
ok(grep(log, "started:"),
   "with /sys, /proc/sys and the cgroup file systems read-only: policyd starts",
   tail(log) + "\nexit %s" % ro_p.poll())
is_(sendline(env, port, "FLUSHALL"), 13, "... enforces")
pol("FLUSHALL", "SHUTDOWN")
ro_p.send_signal(signal.SIGHUP)
time.sleep(slow(0.5))
is_(sendline(env, port, "SHUTDOWN"), 13, "... reloads")
ok(env.stop(ro_p) == 0, "... stops cleanly")
ok(not os.path.exists(env.pin_dir), "... and removes its pins")

# --- under systemd itself ---
if not os.path.isdir("/run/systemd/system"):
    print("# systemd is not PID 1 here (%s): systemd-run cannot start units; the unit's sandbox is "
          "checked piecewise above" % open("/proc/1/comm").read().strip(), flush=True)
else:
    in_service = False
    props = []
    for l in unit_text.splitlines():
        if l.startswith("["):
            in_service = l == "[Service]"
        elif in_service and re.match(r"[A-Z][A-Za-z]+=", l) and \
                not re.match(r"(Exec|Restart|Type|NotifyAccess)", l):
            props += ["-p", l]
    name = "policyd-unit-test-%d" % os.getpid()
    rc, out = output(["systemd-run", "--unit=" + name, "-p", "Type=notify", "-p", "NotifyAccess=main"]
                     + props + [POLICYD, "run", "-c", p, "--cgroup", env.cgroup, "--pin-dir",
                                env.pin_dir])
    ok(rc == 0, "systemd-run with the unit's sandbox: started (READY=1)", out)
    is_(sendline(env, port, "FLUSHALL"), 13, "... enforces")
    ok(output(["systemctl", "stop", name])[0] == 0, "... stops")
done()
