#!/usr/bin/env python3
# The Redis profile with the real redis-cli against a real redis-server:
# allowed commands work, wiping and reconfiguring are refused in any case,
# the data survives, and log lines and counters say what happened.
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pdtest import (ROOT, Env, Policyd, done, free_port, grep, is_, ok, redis_cli,  # noqa: E402
                    skip_all, start_redis)
from servers import log_lines  # noqa: E402

os.chdir(ROOT)
if not shutil.which("redis-server"):
    skip_all("redis-server is not installed")
env = Env("redis")

port = free_port()
with open("policy-examples/redis.conf") as f:
    conf = env.write("redis.conf", re.sub(r"\b6379\b", str(port), f.read()))
start_redis(env, port)
is_(redis_cli(env, port, "PING"), "PONG", "redis-server on 127.0.0.1:%d" % port)
pd = Policyd(env, conf)
ok(pd.running(), "policyd run with the Redis profile")


def rc(*args):
    """redis-cli from inside the cgroup: what it printed."""
    return redis_cli(env, port, *args, inside=True)


is_(rc("SET", "k", "v"), "OK", "SET works")
is_(rc("GET", "k"), "v", "GET works")
is_(rc("INCR", "n"), "1", "INCR works")
is_(rc("LPUSH", "l", "a", "b", "c"), "3", "LPUSH works")
is_(rc("HSET", "h", "f", "v"), "1", "HSET works")
for c in ("FLUSHALL", "flushall", "FlushAll", "FLUSHDB", "CONFIG SET dir /tmp", "config rewrite",
          "SLAVEOF 127.0.0.1 1", "REPLICAOF 127.0.0.1 1", "DEBUG SLEEP 0",
          "MODULE LOAD /tmp/x.so", "EVAL return 1 0"):
    is_(rc(*c.split()), "Error: Permission denied", "refused: " + c)
# redis-cli takes a failed SHUTDOWN for success and prints nothing: ask the server
rc("SHUTDOWN", "NOSAVE")
is_(redis_cli(env, port, "PING"), "PONG", "refused: SHUTDOWN NOSAVE (the server still answers)")
# commands read from a pipe, the refused one behind an allowed one
p = env.run(["redis-cli", "-p", str(port)], inside=True, input="PING\nflushall\n")
is_(redis_cli(env, port, "DBSIZE"), "4", "the data survived every attempt (%s)"
    % (p.stdout + p.stderr).strip().replace("\n", " "))
is_(redis_cli(env, port, "GET", "k"), "v", "GET outside the cgroup sees the key")
denies = len(log_lines(pd, r"^policyd: deny rule=", 12))
ok(denies >= 12, "a deny line per refused command (%d)" % denies)
ok(grep(pd.log, r'^policyd: deny rule=100 service=redis pid=[0-9]+ comm=redis-cli uid=0 '
                r'src=127\.0\.0\.1:[0-9]+ dst=127\.0\.0\.1:%d len=18 '
                r'excerpt="\*1\\r\\n\$8\\r\\nFLUSHALL\\r\\n" instance=[^ ]+$' % port),
   "the FLUSHALL deny line, in full", "\n".join(grep(pd.log, "deny")))
# the whole default redis-benchmark test set, from inside the cgroup
# (it retries for ever when the server is gone: 300 s x PD_SLOW at most)
try:
    bench = env.run(["redis-benchmark", "-p", str(port), "-q", "-n", "2000", "-c", "20"], inside=True,
                    timeout=300)
    is_(bench.returncode, 0, "redis-benchmark (default test set) exits 0")
except subprocess.TimeoutExpired as e:
    bench = subprocess.CompletedProcess(e.cmd, None, *(x.decode(errors="replace") if isinstance(x, bytes)
                                                       else x or "" for x in (e.stdout, e.stderr)))
    ok(False, "redis-benchmark (default test set) exits 0 (killed after %.0f s)" % e.timeout)
results = bench.stdout.replace("\r", "\n")
missing = [t for t in ("PING_INLINE PING_MBULK SET GET INCR LPUSH RPUSH LPOP RPOP SADD HSET SPOP "
                       "ZADD ZPOPMIN LRANGE_100 LRANGE_300 LRANGE_500 LRANGE_600 MSET").split()
           if not re.search(r"^%s( \(.*\))?: [0-9.]+ requests per second" % t, results, re.M)]
is_(missing, [], "redis-benchmark: every test ran to its requests-per-second line")
# it first asks for CONFIG GET save/appendonly, which the profile audits
# (a profile that denies it makes redis-benchmark warn and go on);
# nothing may fail
is_([l for l in bench.stderr.split("\n") if l != "WARNING: Could not fetch server CONFIG"
     and "error" in l.lower()], [],
    "redis-benchmark reports no error (only its warning that CONFIG is refused)")
is_([l for l in results.split("\n") if "error" in l.lower()], [], "... none in its results either")
is_(pd.rule_count(100), 4, "stats: rule 100 counted the four FLUSHALLs")
is_(pd.stop(), 0, "policyd stops cleanly")
ok(not os.path.exists(env.pin_dir), "pins removed")
is_(rc("FLUSHALL"), "OK", "after policyd stopped nothing is refused")
done()
