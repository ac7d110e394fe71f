#!/usr/bin/env python3
"""Monitor mode: nothing is dropped, diverted or aborted; every deny and
redirect that would have happened is logged as would-deny/would-redirect
with the same keys and counted apart (stats, --json, OpenMetrics); a
SIGHUP switches modes both ways; `run --monitor` overrides the policy.
With a real redis-server (framing none) and a line-framed recording
server (splits, pipelining)."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (POLICYD, Env, Policyd, Recorder, done, free_port, is_, ok, output,  # noqa: E402
                    redis_cli, skip, skip_all, slow, start_redis, wait_port, wait_until)

if not shutil.which("redis-server"):
    skip_all("redis-server is not installed")
env = Env("monitor")
PIN = env.pin_dir
rport = free_port()
port = free_port()
q_log = os.path.join(env.tmp, "q.log")


def policy(mode):
    """The test policy in p.conf."""
    return env.write("p.conf", """version = 1;
daemon = { mode = "%s"; };
sinks = ( { name = "q"; file = "%s"; } );
services = (
  { name = "redis"; ports = [ %d ];
    rules = ( { id = 100; action = "deny"; contains = "FLUSHALL"; nocase = true; } ); },
  { name = "kv"; ports = [ %d ]; framing = "line";
    rules = ( { id = 200; action = "deny"; prefix = "KILL"; },
              { id = 201; action = "redirect"; prefix = "DEBUG"; sink = "q"; },
              { id = 202; action = "audit"; contains = "KEYS"; } ); }
);
""" % (mode, q_log, rport, port))


p = policy("monitor")

# a recording server outside the cgroup: every byte of every connection
server = Recorder(port=port)
wait_port(port)
start_redis(env, rport)
ok(redis_cli(env, rport, "PING") == "PONG", "redis-server on 127.0.0.1:%d" % rport)

SENDS = r"""
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
res = []
for a in sys.argv[2:]:
    try:
        res.append(str(s.send(a.encode().decode("unicode_escape").encode("latin-1"))))
    except OSError as e:
        res.append(str(-e.errno))
    time.sleep(0.05)
s.settimeout(0.2)
try:
    s.recv(1); res.append("closed")
except socket.timeout:
    res.append("open")
except OSError as e:
    res.append("reset")
print(" ".join(res))
"""


def sends(*chunks):
    """One connection from the cgroup, one send per chunk (Python escapes),
    50 ms apart: each send's result (bytes or -errno), then whether the
    connection was still open (a read sees no reset)."""
    return env.python(SENDS, port, *chunks).strip()


def rc(*args):
    return redis_cli(env, rport, *args, inside=True)


def stats(*args):
    return output([POLICYD, "stats", "--pin-dir", PIN] + list(args))[1]


pd = Policyd(env, p)
ok(pd.running(), 'policyd runs with mode = "monitor"')
ok(pd.own_lines(r"started: .* mode monitor \(nothing is dropped"), "... and says so at start")

# framing none, a real server: the command runs, the log says it would not have
is_(rc("SET", "k", "v"), "OK", "SET works")
is_(rc("FLUSHALL"), "OK", "FLUSHALL runs in monitor mode")
is_(redis_cli(env, rport, "DBSIZE"), "0", "... the server really flushed")
ok(pd.lines(r'^policyd: would-deny rule=100 service=redis pid=[0-9]+ comm=redis-cli uid=0 '
            r'src=127\.0\.0\.1:[0-9]+ dst=127\.0\.0\.1:%d len=18 '
            r'excerpt="\*1\\r\\n\$8\\r\\nFLUSHALL\\r\\n" instance=[^ ]+$' % rport),
   "a would-deny line with the keys of a deny line")
ok(not pd.lines("^policyd: deny "), "no deny line")

# line framing: a denied line, a diverted one, one split across sends,
# and a denied line between allowed ones in one send
is_(sends(r"KILL -9\n", r"DEBUG x\n", "KI", r"LL split\n", r"a\nKILL y\nKEYS b\n", r"after\n"),
    "8 8 2 9 16 6 open", "every send succeeds, the connection stays open")
want = b"KILL -9\nDEBUG x\nKILL split\na\nKILL y\nKEYS b\nafter\n"
is_(wait_until(lambda: server.all() == want, 0.3) and server.all(), want,
    "the server received every byte, in order")
is_(len(pd.lines(r"^policyd: would-deny rule=200 service=kv ")), 3,
    "a would-deny line per denied line (one for the line split across sends)")
ok(pd.lines(r'^policyd: would-deny rule=200 service=kv .* len=11 excerpt="LL split\\n" '
            r'instance=[^ ]+$'), "... the split line judged once at its end (len=11)")
ok(pd.lines(r'^policyd: would-redirect rule=201 service=kv .* len=8 sink=q excerpt="DEBUG x\\n" '
            r'instance=[^ ]+$'), "a would-redirect line naming the sink")
ok(pd.lines(r'^policyd: audit rule=202 service=kv .* excerpt="KEYS b\\n"'),
   "audit lines as in enforce mode")
ok(not os.path.exists(q_log) or os.path.getsize(q_log) == 0, "nothing reached the sink")

# counted apart
d = json.loads(stats("--json"))


def rule(n):
    return [r for r in d["rules"] if r["rule"] == n][0]


is_(d["mode"], "monitor", "stats --json: mode monitor")
is_((rule(200)["messages"], rule(200)["would_messages"], rule(200)["would_bytes"]), (0, 3, 26),
    "rule 200: 0 messages denied, 3 would-be (26 bytes)")
is_((rule(201)["messages"], rule(201)["would_messages"]), (0, 1), "rule 201: 1 would-be redirect")
is_((rule(100)["messages"], rule(100)["would_messages"]), (0, 1), "rule 100: 1 would-be deny")
is_(" ".join(r["action"] for r in d["defaults"]), "allow allow", "defaults with their action")
text = stats()
ok(re.search(r"(?m)^200 +deny +kv +0 +0 +3 +26$", text), "stats: would-msgs and would-bytes columns")
ok(re.search(r"(?m)^policy generation 1, mode monitor, started [0-9T:-]+Z, 0 reloads", text),
   "stats: the mode and the start in the first line", text)

# the OpenMetrics exposition, read by a parser
om = stats("--format", "openmetrics")
om_lines = om.splitlines()
is_(om_lines[-1], "# EOF", "openmetrics ends with # EOF")
ok('policyd_rule_would_messages_total{service="kv",rule="200",action="deny"} 3' in om_lines,
   "openmetrics: would-be denies per rule")
ok("policyd_monitor_mode 1" in om_lines, "openmetrics: monitor mode 1")
ok('policyd_troubles_total{cause="events_lost"} 0' in om_lines,
   "openmetrics: trouble counters also at 0")
ok(re.search(r'(?m)^policyd_rule_messages_total\{service="kv",rule="default",action="allow"\} '
             r'[1-9][0-9]*$', om), "openmetrics: the service default with its action")
om_file = env.write("om.txt", om + "\n")
# a strict parser: prometheus_client's OpenMetrics parser (Debian's python3)
has_client = subprocess.run(["/usr/bin/python3", "-c", "import prometheus_client"],
                            capture_output=True).returncode == 0
if has_client:
    out = output(["/usr/bin/python3", "-c", r'''
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
def val(fam, **labels):
    return [s.value for s in fams[fam].samples
            if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items())][0]
print(fams["policyd_rule_would_messages"].type, fams["policyd_rule_bytes"].unit,
      *map(int, (val("policyd_rule_would_messages", rule="200"), val("policyd_rule_would_bytes", rule="200"),
      val("policyd_rule_messages", rule="200"))), len(fams["policyd_troubles"].samples),
      fams["policyd_start_time_seconds"].samples[0].value > 1.7e9)
''', om_file])[1]
    causes = len(re.findall(r"(?m)^trouble ", text))
    is_(out, "counter bytes 3 26 0 %d True" % causes,
        "the OpenMetrics parser reads it: types, units, values, the %d trouble causes" % causes)
else:
    skip(1, "python3-prometheus-client is not installed (make deps)")
prom = stats("--format", "prometheus")
prom_file = env.write("prom.txt", prom + "\n")
if has_client:
    out = output(["/usr/bin/python3", "-c", r'''
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
print(fams["policyd_rule_would_messages"].type, fams["policyd_reloads"].type,
      fams["policyd_policed_connections"].type)
''', prom_file])[1]
    is_(out, "counter counter gauge",
        "--format prometheus: the text format 0.0.4 parser reads it with its types")
if shutil.which("prometheus-node-exporter"):
    tdir = os.path.join(env.tmp, "textfile")
    os.mkdir(tdir)
    env.write("textfile/policyd.prom.new", prom + "\n")
    os.rename(os.path.join(tdir, "policyd.prom.new"), os.path.join(tdir, "policyd.prom"))
    neport = free_port()
    env.start(["prometheus-node-exporter", "--collector.disable-defaults", "--collector.textfile",
               "--collector.textfile.directory=" + tdir,
               "--web.listen-address=127.0.0.1:%d" % neport])

    def scrape():
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % neport, timeout=5) as r:
                return r.read().decode()
        except OSError:
            return ""
    got = (wait_until(scrape, 10, 0.1) or "").splitlines()
    ok("node_textfile_scrape_error 0" in got and
       "# TYPE policyd_rule_would_messages_total counter" in got and
       'policyd_rule_would_messages_total{action="deny",rule="200",service="kv"} 3' in got,
       "node_exporter's textfile collector serves the metrics, typed, without error")
st, err = output(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", POLICYD, "stats",
                  "--pin-dir", PIN])
is_(st, 3, "stats as nobody: exit 3")
ok(re.search(r"permission denied reading the pins in %s.*CAP_BPF or CAP_SYS_ADMIN; run as root"
             % re.escape(PIN), err, re.S), "... saying which permission it lacks", err)

# SIGHUP to enforce: the same rules now act
policy("enforce")
pd.reload()
ok(pd.lines(r"reloaded: .* generation 2 .* mode enforce"), "SIGHUP: mode enforce")
server.clear()
# (the connection is then aborted: abort.t, dataplane.t and boundary.t
# check that)
r = sends(r"ok\n", r"KILL -9\n")
is_(r.rsplit(" ", 1)[0], "3 -13", "enforce: the denied line fails with EACCES")
is_(rc("FLUSHALL"), "Error: Permission denied", "enforce: FLUSHALL refused")
is_(wait_until(lambda: server.all() == b"ok\n", 0.3) and server.all(), b"ok\n",
    "the server got only the allowed line")
ok(pd.lines(r"^policyd: deny rule=200 service=kv "), "a deny line")
d = json.loads(stats("--json"))
is_("%s %s %s %s" % (d["mode"], d["reloads"], d["last_reload"],
                     (rule(200)["messages"], rule(200)["would_messages"])),
    "enforce 1 ok (1, 3)", "stats: enforce, one reload, ok; real and would-be counted apart")

# a refused reload is counted and keeps the mode
env.write("p.conf", 'version = 1; daemon = { mode = "nope"; };\n')
pd.reload()
om_lines = stats("--format", "openmetrics").splitlines()
ok("policyd_reloads_total 2" in om_lines and "policyd_reloads_refused_total 1" in om_lines and
   "policyd_last_reload_success 0" in om_lines,
   "openmetrics: 2 reloads, 1 refused, the last one failed")

# and back to monitor
policy("monitor")
pd.reload()
is_(sends(r"KILL -9\n", r"more\n"), "8 5 open", "SIGHUP back to monitor: the denied line passes again")
is_(pd.stop(), 0, "policyd stops")

# run --monitor over a policy that says enforce
policy("enforce")
pd = Policyd(env, p, ["--monitor"])
ok(pd.running(), "policyd run --monitor")
is_(sends(r"KILL -9\n"), "8 open", "--monitor: the denied line passes")
ok(wait_until(lambda: pd.own_lines("^policyd: would-deny rule=200"), 0.3),
   "... logged as would-deny")
pd.reload()
is_(sends(r"KILL -9\n"), "8 open", "--monitor holds across a reload of a policy that says enforce")
is_(pd.stop(), 0, "policyd stops")
done()
