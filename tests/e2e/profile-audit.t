#!/usr/bin/env python3
# policy-examples/audit-all.conf: the other profiles' rules, audited. With a
# real redis-server and nginx, what the hardening profiles would refuse
# passes here, and each is one audit line naming the rule it would have
# hit; normal traffic is not logged. The file is what tests/gen-audit-all.py
# makes of the current profiles.
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pdtest import (POLICYD, ROOT, Env, Policyd, done, free_port, grep, is_, ok,  # noqa: E402
                    redis_cli, request, skip_all, start_nginx, start_redis)
from servers import log_lines  # noqa: E402

os.chdir(ROOT)
if not all(shutil.which(t) for t in ("redis-server", "nginx", "curl")):
    skip_all("redis-server, nginx or curl is not installed (make deps)")
env = Env("audit")


def dump(conf):
    return json.loads(subprocess.run([POLICYD, "dump", "--json", "-c", conf], capture_output=True,
                                     text=True, check=True).stdout)


with open("policy-examples/audit-all.conf") as f:
    audit_all = f.read()
regen = os.path.join(env.tmp, "regen.conf")
subprocess.run([sys.executable, "tests/gen-audit-all.py", POLICYD, regen])
with open(regen) as f:
    ok(f.read() == audit_all, "audit-all.conf is up to date with the other profiles (tests/gen-audit-all.py)")
is_(len([l for l in audit_all.split("\n") if 'action = "deny"' in l or 'action = "redirect"' in l]), 0,
    "it denies and diverts nothing")
want = sum(r["action"] != "allow"
           for f in ("redis", "memcached", "http-client", "smtp", "postgres", "secrets-egress")
           for s in dump("policy-examples/%s.conf" % f)["services"] for r in s["rules"])
got = sum(len(s["rules"]) for s in dump("policy-examples/audit-all.conf")["services"])
is_(got, want, "it holds every deny, redirect and audit rule of the six profiles (%d)" % want)

rport, hport = free_port(), free_port()
conf = env.write("p.conf", audit_all.replace("ports = [ 6379 ]", "ports = [ %d ]" % rport)
                 .replace("ports = [ 80, 8080 ]", "ports = [ %d ]" % hport))
start_redis(env, rport)
is_(redis_cli(env, rport, "PING"), "PONG", "redis-server on 127.0.0.1:%d" % rport)
os.mkdir(os.path.join(env.tmp, "www"))
env.write("www/index.html", "home\n")
start_nginx(env, hport, os.path.join(env.tmp, "www"))
ok(request(hport, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 "), "nginx on 127.0.0.1:%d" % hport)
pd = Policyd(env, conf)
ok(pd.running(), "policyd runs audit-all")


def curl(*args):
    """curl from inside the cgroup: the HTTP status it got."""
    return env.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"] + list(args),
                   inside=True).stdout


is_(redis_cli(env, rport, "SET", "k", "v", inside=True), "OK", "SET")
is_(redis_cli(env, rport, "FLUSHALL", inside=True), "OK", "FLUSHALL passes (it would be refused by redis.conf)")
is_(redis_cli(env, rport, "DBSIZE"), "0", "... and the server did flush")
is_(curl("-X", "TRACE", "http://127.0.0.1:%d/" % hport), "405",
    "TRACE reaches nginx (it would be refused by http-client.conf), which answers 405")
is_(curl("http://127.0.0.1:%d/" % hport), "200", "GET /")
AUDIT = r"^policyd: audit "
log_lines(pd, AUDIT, 2)
ok(grep(pd.log, r'^policyd: audit rule=1100 service=redis .* '
                r'excerpt="\*1\\r\\n\$8\\r\\nFLUSHALL\\r\\n" instance=[^ ]+$'),
   "FLUSHALL is logged as audit rule=1100 (redis.conf's rule 100)")
ok(grep(pd.log, r'^policyd: audit rule=3100 service=http-client .* '
                r'excerpt="TRACE / HTTP/1\.1\\r\\nHost: 127\.0\.0\.1:\d+\\r\\nUser-Agent: curl/[^"]*" '
                r'instance=[^ ]+$'),
   "TRACE is logged as audit rule=3100 (http-client.conf's rule 100)", "\n".join(grep(pd.log, "audit")))
is_(len(grep(pd.log, AUDIT)), 2, "nothing else is logged")
is_(len(grep(pd.log, r"^policyd: deny ")), 0, "nothing is denied")
is_((pd.rule_count(1100) or 0) + (pd.rule_count(3100) or 0), 2, "stats counts both")
is_(pd.stop(), 0, "policyd stops")
done()
