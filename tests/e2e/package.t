#!/usr/bin/env python3
"""The Debian package: `make deb` builds it with debhelper, lintian has
nothing to say, `dpkg -i` installs the binary, man pages, unit, starter
policy (monitor mode), the policyd account (sysusers.d), /var/lib/policyd
(tmpfiles.d), logrotate and bash completion, the unit verifies, the
installed policyd runs the starter policy as the policyd account, where
systemd runs the service starts and reloads, and `dpkg --purge` leaves
nothing behind."""
import atexit
import glob
import os
import pwd
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (ROOT, Env, Policyd, done, is_, ok, output, skip_all, slow,  # noqa: E402
                    tail)

for t in ("dpkg-buildpackage", "dh", "lintian", "systemd-analyze", "git"):
    if not shutil.which(t):
        skip_all("%s is not installed (make deps)" % t)
if re.search(r"installed", output(["dpkg-query", "-W", "-f=${Status}", "policyd"])[1]):
    skip_all("a policyd package is installed on this host already: not touching it")
env = Env("package")
os.chdir(ROOT)
TMP = env.tmp
installed = False


def dpkg_locked(*args):
    """dpkg ARGS, waiting for another dpkg or apt to finish (up to 5
    minutes): (status, output)."""
    for _ in range(150):
        rc, out = output(["dpkg"] + list(args), timeout=600)
        if rc == 0 or "lock" not in out:
            return rc, out
        time.sleep(2)
    return rc, out


def purge():
    if installed:
        dpkg_locked("--purge", "policyd")


atexit.register(purge)      # runs before Env's cleanup (atexit: last in, first out)

rc, out = output(["make", "-s", "deb", "O=%s/o" % TMP], timeout=3600)
ok(rc == 0, "make deb builds", "\n".join(out.splitlines()[-20:]))
debs = sorted(glob.glob(os.path.join(TMP, "o/deb/policyd_*.deb")))
deb = debs[0] if debs else None
if not ok(deb and os.path.isfile(deb), "the package: %s" % (os.path.basename(deb) if deb else "none")):
    done()
rc, out = output(["lintian", "-I", "--pedantic", deb], timeout=1800)
is_("\n".join(l for l in out.splitlines() if "running with root privileges" not in l), "",
    "lintian: nothing to say (overrides explained in policyd/debian/policyd.lintian-overrides)")

rc, out = dpkg_locked("-i", deb)
installed = rc == 0
ok(rc == 0, "dpkg -i installs it", out)
ok(output(["/usr/sbin/policyd", "--version"])[1].startswith("policyd "), "/usr/sbin/policyd runs")
for f in ("/lib/systemd/system/policyd.service", "/etc/policyd/policy.conf",
          "/usr/lib/sysusers.d/policyd.conf", "/usr/lib/tmpfiles.d/policyd.conf",
          "/etc/logrotate.d/policyd", "/usr/share/bash-completion/completions/policyd",
          "/usr/share/man/man8/policyd.8.gz", "/usr/share/man/man5/policyd.conf.5.gz",
          "/usr/share/policyd/examples/redis.conf"):
    ok(os.path.isfile(f), "installs %s" % f)


def lines_of(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


ok("ExecStart=/usr/sbin/policyd run -c /etc/policyd/policy.conf"
   in lines_of("/lib/systemd/system/policyd.service"), "the unit runs /usr/sbin/policyd")
man = subprocess.run("man -P cat /usr/share/man/man8/policyd.8.gz 2>/dev/null | col -bx", shell=True,
                     capture_output=True, text=True).stdout
ok("/usr/share/policyd/examples/" in man and "/lib/systemd/system/policyd.service" in man and
   "/usr/local" not in man, "policyd(8) FILES names the installed paths")
rc, out = output(["systemd-analyze", "verify", "/lib/systemd/system/policyd.service"])
ok(rc == 0, "systemd-analyze verify of the installed unit", out)
try:
    account = pwd.getpwnam("policyd")
except KeyError:
    account = None
ok(account, "sysusers.d made the policyd account")
is_(output(["stat", "-c", "%a %U %G", "/var/lib/policyd"])[1], "770 root policyd",
    "tmpfiles.d made /var/lib/policyd")
chk = subprocess.run(["/usr/sbin/policyd", "check", "/etc/policyd/policy.conf"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
is_(chk.stderr.rstrip("\n"), "", "the starter policy passes check without a warning")
ok(any(re.fullmatch(r'  mode = "monitor";.*', l) for l in lines_of("/etc/policyd/policy.conf")),
   "the starter policy is in monitor mode")
comp = output(["bash", "-c", '''. /usr/share/bash-completion/bash_completion; . /usr/share/bash-completion/completions/policyd
	COMP_WORDS=(policyd stats --f); COMP_CWORD=2; COMP_LINE="policyd stats --f"; COMP_POINT=${#COMP_LINE}
	_policyd; echo "${COMPREPLY[*]}"'''])[1]
is_(comp, "--format", "bash completion completes stats --f")
if shutil.which("logrotate"):
    rc, out = output(["logrotate", "-d", "/etc/logrotate.d/policyd"])
    ok(rc == 0, "logrotate reads the snippet", out)

# the installed daemon on the starter policy, in our own cgroup and pins
pd = Policyd(env, "/etc/policyd/policy.conf", binary="/usr/sbin/policyd", must_start=False)
ok(pd.own_lines("started: .*mode monitor"), "the installed policyd runs the starter policy in monitor mode",
   pd.own_text()[-4000:])
time.sleep(slow(0.3))


def uid(pid):
    for l in lines_of("/proc/%d/status" % pid):
        if l.startswith("Uid:"):
            return l.split()[1]
    return None


is_(uid(pd.pid), str(account.pw_uid) if account else "none", "... as the policyd account")
ok(pd.stop() == 0, "... and stops cleanly")

if os.path.isdir("/run/systemd/system"):
    ok(output(["systemctl", "is-active", "--quiet", "policyd"])[0] == 0, "systemd started the service")
    ok(output(["systemctl", "reload", "policyd"])[0] == 0, "systemctl reload")
else:
    print("# systemd is not PID 1 here (%s): the service is not started by dpkg -i"
          % open("/proc/1/comm").read().strip(), flush=True)

rc, out = dpkg_locked("--purge", "policyd")
ok(rc == 0, "dpkg --purge", out)
if rc == 0:
    installed = False
left = [f for f in ("/usr/sbin/policyd", "/etc/policyd", "/var/lib/policyd",
                    "/lib/systemd/system/policyd.service", "/etc/logrotate.d/policyd",
                    "/usr/share/policyd", "/usr/lib/tmpfiles.d/policyd.conf") if os.path.exists(f)]
is_(" ".join(left), "", "purge leaves none of its files")
done()
