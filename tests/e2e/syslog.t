#!/usr/bin/env python3
"""Log lines reach a real syslog daemon: Debian's rsyslogd and policyd run in
a mount namespace of their own (inside the test's) whose /dev holds a
private /dev/log, so the host's logging is not touched. Checked: facility
daemon, ident policyd, the severities, the event line format, the rate
limit's summary, and a reload's refusal, all as rsyslog wrote them."""
import os
import re
import shutil
import signal
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (POLICYD, Env, Recorder, done, fail_now, free_port, grep, is_, ok,  # noqa: E402
                    output, sendline, sendlines, skip_all, slow, tail, wait_file, wait_port)

if not shutil.which("rsyslogd"):
    skip_all("rsyslogd is not installed (make deps)")
env = Env("syslog")
TMP = env.tmp
port = free_port()
out_file = os.path.join(TMP, "syslog.out")


def pol(rate):
    return env.write("p.conf", 'version = 1;\ndaemon = { log_rate = %s; };\nservices = ( { name = "kv"; '
                     'ports = [ %d ]; framing = "line"; rules = (\n  { id = 7; action = "deny"; '
                     'contains = "FLUSHALL"; },\n  { id = 8; action = "audit"; prefix = "KEYS"; } ); } );\n'
                     % (rate, port))


p = pol(3)
server = Recorder(port=port)
if not wait_port(port):
    fail_now("the test's server listens on 127.0.0.1:%d" % port)

conf = env.write("rsyslog.conf", """global(workDirectory="%(tmp)s")
module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0")
template(name="pd" type="string"
	string="%%syslogfacility-text%%.%%syslogseverity-text%% %%programname%%[%%procid%%]:%%msg:::sp-if-no-1st-sp%%%%msg%%\\n")
*.* action(type="omfile" file="%(out)s" template="pd")
""" % {"tmp": TMP, "out": out_file})
ok(output(["rsyslogd", "-N1", "-f", conf])[0] == 0, "rsyslogd accepts the test configuration")

# the namespace: a tmpfs /dev with the few nodes the programs use, then
# rsyslogd on its /dev/log, then policyd (in the foreground of the shell)
NS = r'''
set -e
mkdir "$TMP/dev"
mount -t tmpfs -o mode=0755 policyd-test-dev "$TMP/dev"
for n in null zero random urandom; do
	: > "$TMP/dev/$n"; mount --bind "/dev/$n" "$TMP/dev/$n"
done
mount --bind "$TMP/dev" /dev
# a journal would take the lines before syslog: none in here
[ ! -d /run/systemd/journal ] || mount -t tmpfs policyd-test-nojournal /run/systemd/journal
rsyslogd -n -f "$TMP/rsyslog.conf" -i "$TMP/rsyslog.pid" >"$TMP/rsyslog.log" 2>&1 &
echo $! > "$TMP/rsyslog.pid.own"
for _ in $(seq 100); do [ -S /dev/log ] && break; sleep 0.05; done
[ -S /dev/log ]
exec "$PD" run -c "$TMP/p.conf" --cgroup "$CG" --pin-dir "$PIN"
'''
err = os.path.join(TMP, "policyd.err")
pd = env.start(["unshare", "-m", "--propagation", "private", "bash", "-c", NS],
               stdout=open(err, "ab"), stderr=open(err, "ab"),
               env=dict(os.environ, TMP=TMP, PD=POLICYD, CG=env.cgroup, PIN=env.pin_dir))
ok(wait_file(out_file, "started:"), "policyd's start line reached rsyslogd", tail(err))
try:
    rpid = int(open(os.path.join(TMP, "rsyslog.pid.own")).read())
    env.pids.append(rpid)
except (OSError, ValueError):
    rpid = None
ok(not os.path.exists("/dev/log") or stat.S_ISSOCK(os.stat("/dev/log").st_mode),
   "the host's /dev is untouched")

is_(sendline(env, port, "FLUSHALL now"), 13, "FLUSHALL is denied")
is_(sendline(env, port, "KEYS *"), 0, "KEYS passes, audited")
time.sleep(slow(1.5))
inst = "policyd-test-syslog-[0-9]+"     # the pin directory's last part
ok(grep(out_file, r'^daemon\.warning policyd\[[0-9]+\]: deny rule=7 service=kv pid=[0-9]+ comm=python3 '
        r'uid=0 src=127\.0\.0\.1:[0-9]+ dst=127\.0\.0\.1:%d len=13 excerpt="FLUSHALL now\\n" '
        r'instance=%s$' % (port, inst)),
   "the deny line: facility daemon, severity warning, ident policyd, key=value", tail(out_file))
ok(grep(out_file, r'^daemon\.info policyd\[[0-9]+\]: audit rule=8 service=kv .* excerpt="KEYS \*\\n" '
        r'instance=%s$' % inst), "the audit line, severity info")
ok(grep(out_file, r"^daemon\.notice policyd\[[0-9]+\]: running as nobody"),
   "the privilege drop is logged")

# rate limit: 12 denies in a burst (one client process: a slow machine
# still sends them within a second or two), at most 3 lines a second, and
# a summary that counts the rest by kind
sendlines(env, port, 12, "FLUSHALL")
# the summary comes at the next second's start: wait for it (10 s at most)
wait_file(out_file, ": suppressed ")
time.sleep(slow(1.5))
n = len(grep(out_file, "deny rule=7"))
ok(4 <= n < 13, "13 denies under log_rate = 3: %d deny lines in syslog" % n)
sup = sum(int(re.search(r"suppressed (\d+)", l).group(1)) for l in grep(
    out_file, r"^daemon\.warning policyd\[[0-9]+\]: suppressed ([0-9]+) deny lines over log_rate=3 "
    r"per second instance=%s$" % inst))
ok(sup > 0, "the suppressed denies are summarised in syslog (%d)" % sup)
is_(n + sup, 13, "... every deny is either logged or counted")

env.write("p.conf", "version = 1; services = ( );; oops\n")
pd.send_signal(signal.SIGHUP)
time.sleep(slow(1))
ok(grep(out_file, r"^daemon\.err policyd\[[0-9]+\]: reload refused: %s is invalid; policy generation 1 "
        r"keeps enforcing instance=%s$" % (re.escape(p), inst)),
   "a refused reload is an error line in syslog")
ok(grep(out_file, r"^daemon\.err policyd\[[0-9]+\]: %s:1: " % re.escape(p)),
   "... after the error with file:line")

is_(env.stop(pd), 0, "SIGTERM: exit 0")
time.sleep(slow(0.3))
ok(grep(out_file, r"^daemon\.notice policyd\[[0-9]+\]: stopped: nothing attached, pins removed "
        r"instance=%s$" % inst), "the stop line reached rsyslogd")
if rpid:
    try:
        os.kill(rpid, signal.SIGTERM)
    except ProcessLookupError:
        pass
done()
