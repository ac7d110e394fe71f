#!/usr/bin/env python3
"""framing = "resp" against a real redis-server: every way of getting a
denied command past a byte profile that the protocol issue lists (inline
with leading blanks, quoted, escaped, pipelined, split across sends, RESP
with "\\r" followed by another byte) is refused and the data survives;
what merely spells a command (a value "flushall") passes; the normal
clients and redis-benchmark's whole default set, one request at a time
and pipelined, run with no refusal, under the deny-list profile and under
the strict allow-list one."""
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (EACCES, Env, Policyd, client, done, free_port, is_, ok,  # noqa: E402
                    send, skip_all)

if not shutil.which("redis-server"):
    skip_all("redis-server is not installed (make deps)")

env = Env("resp")
port = free_port()
srv = env.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", env.tmp],
                stdout=open(os.path.join(env.tmp, "redis.log"), "wb"),
                stderr=subprocess.STDOUT)


def redis(*args):
    """A command from outside the cgroup (not policed): its reply line."""
    out = subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True,
                         text=True, timeout=30)
    return out.stdout.strip()


for _ in range(100):
    if redis("PING") == "PONG":
        break
    time.sleep(0.05)
ok(redis("PING") == "PONG", "redis-server on 127.0.0.1:%d" % port)


def profile(name):
    with open(os.path.join("policy-examples", name)) as f:
        text = f.read()
    return env.write(name, re.sub(r"\b6379\b", str(port), text))


def rc(*args):
    """redis-cli from inside the cgroup."""
    out = subprocess.run(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', env.cgroup,
                          "redis-cli", "-p", str(port)] + list(args),
                         capture_output=True, text=True, timeout=30)
    return (out.stdout + out.stderr).strip()


def attempt(name, steps, want):
    """A raw client inside the cgroup; the canary key must survive it and
    the server must still answer. want: the results of the steps (bytes
    sent or -errno); None for a result not checked."""
    redis("SET", "canary", "alive")
    try:
        results, _ = client(env, port, steps)
    except RuntimeError as e:
        results = [str(e)]
    match = len(results) == len(want) and all(w is None or w == g for w, g in zip(want, results))
    ok(match and redis("GET", "canary") == "alive" and redis("PING") == "PONG",
       "refused: %s" % name, "results %r, want %r; canary %r" % (results, want,
                                                                redis("GET", "canary")))


pd = Policyd(env, profile("redis.conf"))
ok(pd.running(), "policyd runs the redis profile (framing resp)")

# ---- the forms that ran FLUSHALL past the byte profile ----
for form in [b" FLUSHALL\r\n", b"\tFLUSHALL\r\n", b"\x0bFLUSHALL\r\n", b"\x0cFLUSHALL\n",
             b'"FLUSHALL"\r\n', b'"\\x46LUSHALL"\r\n', b"'FLUSHALL'\r\n", b'FLU"SHALL"\r\n',
             b'"flush\\x61ll"\r\n', b"*1\r\n$8\r\nflushall\r\n"]:
    attempt("inline or RESP %r" % form, [send(form)], [EACCES])
# the refusal aborts the connection, maybe before a reply is read: the
# command before it shows by its effect
attempt("pipelined after a SET, no trailing space", [send(b"SET piped 1\r\nFLUSHALL\r\n")],
        [None])
is_(redis("GET", "piped"), "1", "... the SET before it ran")
# whole RESP commands in one send, each judged at once: the allowed ones
# before a denied one run, the denied one and what follows do not; a
# two-word rule (CONFIG SET) is matched there too, in any case
def cmd(*a):
    return b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a)


attempt("RESP FLUSHALL after 20 whole SETs in one send",
        [send(b"".join(cmd(b"SET", b"w%d" % i, b"v") for i in range(20)) + cmd(b"FLUSHALL")
              + cmd(b"SET", b"after", b"1"))], [None])
is_([redis("GET", "w0"), redis("GET", "w19"), redis("GET", "after")], ["v", "v", ""],
    "... the SETs before it ran, the one after it did not")
# commands of more strings than one step takes, and longer than a window:
# taken in parts; a string that spells a command is data there too
attempt("RESP FLUSHALL after MSETs of 40 and 400 keys in one send",
        [send(cmd(b"MSET", *[x for i in range(40) for x in (b"m%d" % i, b"FLUSHALL")])
              + cmd(b"MSET", *[x for i in range(400) for x in (b"n%d" % i, b"v" * 40)])
              + cmd(b"FLUSHALL") + cmd(b"SET", b"after2", b"1"))], [None])
is_([redis("GET", "m39"), redis("GET", "n0"), redis("GET", "n399"), redis("GET", "after2")],
    ["FLUSHALL", "v" * 40, "v" * 40, ""], "... the MSETs before it ran, the SET after it did not")
attempt("RESP config Set after whole GETs in one send",
        [send(cmd(b"GET", b"w0") * 8 + cmd(b"config", b"Set", b"dir", b"/tmp"))], [None])
# an inline command whose name leaves a rule half matched (CONFIG, then
# SET would deny), ended by "\n" alone: what follows is the next command
attempt("pipelined after CONFIG alone, ended by \\n", [send(b"CONFIG\nFLUSHALL\r\n")], [None])
attempt("split F | LUSHALL\\r\\n", [send(b"F"), ["sleep", 0.2], send(b"LUSHALL\r\n")],
        [1, EACCES])
attempt("RESP split inside the name", [send(b"*1\r\n$8\r\nFLU"), ["sleep", 0.2],
                                       send(b"SHALL\r\n")], [11, EACCES])
attempt("RESP with '\\r' then another byte (*1\\r\\n$8\\rXFLUSHALL\\r\\n)",
        [send(b"*1\r\n$8\rXFLUSHALL\r\n")], [EACCES])
attempt("RESP with a bulk string's end not \\r\\n", [send(b"*2\r\n$3\r\nGETXX$8\r\nFLUSHALL\r\n")],
        [EACCES])
attempt("CONFIG SET, inline in lower case", [send(b"config set dir /tmp\r\n")], [EACCES])
attempt("CONFIG SET with the subcommand quoted", [send(b'CONFIG "set" dir /tmp\r\n')], [EACCES])
attempt("SHUTDOWN NOSAVE", [send(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")], [EACCES])
is_(redis("CONFIG", "GET", "dir").splitlines()[-1], env.tmp, "the server's dir is unchanged")

# what only spells a command is data
is_(rc("SET", "k", "flushall"), "OK", "SET k flushall (a value equal to a command name) passes")
is_(rc("GET", "k"), "flushall", "... and is stored")
is_(rc("SET", "flushall", "x"), "OK", "a key named flushall passes")
is_(rc("CONFIG", "GET", "maxmemory").splitlines()[0], "maxmemory", "CONFIG GET passes (audited)")
is_(rc("FLUSHALL"), "Error: Permission denied", "redis-cli FLUSHALL is refused")
out = subprocess.run(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', env.cgroup,
                      "redis-cli", "-p", str(port)], input="PING\nSET a b\nflushall\n",
                     capture_output=True, text=True, timeout=30)
ok(out.stdout.startswith("PONG\nOK\n") and redis("GET", "canary") == "alive",
   "commands from a pipe: the allowed ones run, flushall does not", out.stdout + out.stderr)

deny = pd.lines(r"deny rule=100 service=redis ")
ok(len(deny) >= 12, "a deny line per refused FLUSHALL (%d)" % len(deny))
ok(any(re.search(r'len=18 excerpt="\*1\\r\\n\$8\\r\\nflushall\\r\\n"', l) for l in deny),
   "the RESP FLUSHALL's line tells its whole length", "\n".join(deny[:3]))
bad = pd.lines(r"deny rule=malformed service=redis ")
is_(len(bad), 2, "the malformed commands are denied as such")
ok(pd.lines(r"audit rule=401 service=redis "), "CONFIG GET is audited")


def bench(pipeline, tests=None):
    args = ["redis-benchmark", "-p", str(port), "-q", "-n", "2000", "-c", "10",
            "-P", str(pipeline)] + (["-t", tests] if tests else [])
    out = subprocess.run(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', env.cgroup]
                         + args, capture_output=True, text=True, timeout=600)
    rows = re.findall(r"([A-Z_0-9]+(?: \([^)]*\))?): ([0-9.]+) requests per second",
                      out.stdout.replace("\r", "\n"))
    return out, [r[0] for r in rows]


everything = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP",
              "RPOP", "SADD", "HSET", "SPOP", "ZADD", "ZPOPMIN",
              "LPUSH (needed to benchmark LRANGE)", "LRANGE_100 (first 100 elements)",
              "LRANGE_300 (first 300 elements)", "LRANGE_500 (first 500 elements)",
              "LRANGE_600 (first 600 elements)", "MSET (10 keys)"]
denies = len(pd.lines(r"deny "))
for p in (1, 16):
    out, rows = bench(p)
    is_(rows, everything, "redis-benchmark -P %d: every test of the default set ran" % p)
    ok("rror" not in out.stdout + out.stderr, "... with no error", out.stderr[-500:])
is_(len(pd.lines(r"deny ")), denies, "redis-benchmark met no refusal")
is_(redis("GET", "canary"), "alive", "the data survived every attempt")
ok(pd.stop() == 0, "policyd stops")

# ---- the strict allow-list variant ----
os.rename(pd.log, pd.log + ".redis")
pd = Policyd(env, profile("redis-strict.conf"))
ok(pd.running(), "policyd runs the strict redis profile", pd.text()[-2000:])
is_(rc("SET", "k", "v"), "OK", "strict: SET")
is_(rc("GET", "k"), "v", "strict: GET")
is_(rc("HSET", "h", "f", "v"), "1", "strict: HSET")
for c in (["FLUSHALL"], ["CONFIG", "GET", "dir"], ["INFO"], ["KEYS", "*"], ["DEBUG", "SLEEP", "0"],
          ["SAVE"], ["CLIENT", "LIST"], ["NOSUCHCOMMAND"], ["GETX", "k"]):
    is_(rc(*c), "Error: Permission denied", "strict: refused: %s" % " ".join(c))
attempt("strict: an unknown command sent inline", [send(b"  bgsave\r\n")], [EACCES])
attempt("strict: a data command's name in pieces, then a denied one",
        [send(b"*3\r\n$3\r\nSE"), ["sleep", 0.2],
         send(b"T\r\n$5\r\npiece\r\n$1\r\n1\r\n*1\r\n$4\r\nINFO\r\n")], [10, None])
is_(redis("GET", "piece"), "1", "strict: ... the SET in pieces ran")
allowed = len(pd.lines(r"deny "))
for p in (1, 16):
    out, rows = bench(p)
    is_(rows, everything, "strict: redis-benchmark -P %d: every test of the default set ran" % p)
    errors = [l for l in (out.stdout + out.stderr).replace("\r", "\n").splitlines()
              if "rror" in l or "WARN" in l]
    is_(errors, ["WARNING: Could not fetch server CONFIG"],
        "... no error, only the warning that CONFIG GET is refused")
is_(len(pd.lines(r"deny ")), allowed + 2, "strict: only redis-benchmark's two CONFIG GETs were refused")
is_(redis("GET", "canary"), "alive", "strict: the data survived")
ok(pd.stop() == 0, "policyd stops")

# ---- inline = false: only RESP arrays, as client libraries and redis-cli send ----
os.rename(pd.log, pd.log + ".strict")
with open(os.path.join("policy-examples", "redis.conf")) as f:
    text = re.sub(r"\b6379\b", str(port), f.read())
text, n = re.subn(r'framing = "resp";', 'framing = "resp"; inline = false;', text, count=1)
ok(n == 1, "the redis profile with inline = false")
pd = Policyd(env, env.write("redis-noinline.conf", text))
ok(pd.running(), "policyd runs it", pd.text()[-2000:])
is_(rc("SET", "k", "v"), "OK", "no inline: redis-cli's SET (RESP) passes")
is_(rc("GET", "k"), "v", "no inline: GET")
is_(rc("FLUSHALL"), "Error: Permission denied", "no inline: FLUSHALL is still refused")
attempt("no inline: PING sent inline", [send(b"PING\r\n")], [EACCES])
attempt("no inline: a RESP SET, then an inline GET in the same send",
        [send(b"*3\r\n$3\r\nSET\r\n$2\r\nk2\r\n$1\r\n2\r\nGET k2\r\n")], [None])
is_(redis("GET", "k2"), "2", "no inline: ... the SET before it ran")
attempt("no inline: a blank line", [send(b"\r\n")], [EACCES])
is_(len(pd.lines(r"deny rule=malformed service=redis ")), 3,
    "no inline: each inline command is logged as deny rule=malformed")
# redis-benchmark's PING_INLINE is the one test that sends inline
out, rows = bench(16, ",".join(t.split()[0].split("_")[0].lower() if t.startswith("LRANGE")
                               else t.split()[0].lower() for t in everything[1:]))
is_(sorted(set(rows)), sorted(set(everything[1:])),
    "no inline: redis-benchmark -P 16: every test of the default set but PING_INLINE ran")
ok(pd.stop() == 0, "policyd stops")

# ---- monitor mode: judged the same, logged as would-be, nothing refused ----
os.rename(pd.log, pd.log + ".noinline")
pd = Policyd(env, profile("redis.conf"), extra=["--monitor"])
ok(pd.running(), "policyd runs the redis profile in monitor mode")


def passes(name, steps, want, gone=True):
    """Every send passes; FLUSHALL ran when gone (the canary is gone)."""
    redis("SET", "canary", "alive")
    try:
        results, _ = client(env, port, steps)
    except RuntimeError as e:
        results = [str(e)]
    ok(results == want and (redis("GET", "canary") == "") == gone,
       "monitor: %s" % name, "results %r, want %r; canary %r" % (results, want,
                                                                 redis("GET", "canary")))


passes("FLUSHALL in two sends ran", [send(b"F"), ["sleep", 0.2], send(b"LUSHALL\r\n"),
                                     ["recv", 5]], [1, 9, b"+OK\r\n".hex()])
passes("FLUSHALL pipelined between PINGs ran",
       [send(b"PING\r\nFLUSHALL\r\nPING\r\n"), ["recv", 19]],
       [22, b"+PONG\r\n+OK\r\n+PONG\r\n".hex()])
passes("RESP split inside a name, then more commands",
       [send(b"*1\r\n$8\r\nFLU"), ["sleep", 0.2], send(b"SHALL\r\n*1\r\n$4\r\nPING\r\n"),
        ["recv", 12]], [11, 21, b"+OK\r\n+PONG\r\n".hex()])
passes("a malformed command leaves", [send(b"*1\r\n$4\rXPING\r\n"), ["sleep", 0.2]], [14],
       gone=False)
would = pd.lines(r"would-deny rule=100 service=redis ")
is_(len(would), 3, "a would-deny line per FLUSHALL")
is_(len(pd.lines(r"(^|: )deny ")), 0, "no deny line in monitor mode")
is_(len(pd.lines(r"would-deny rule=malformed service=redis ")), 1,
    "the malformed command is logged as would-deny rule=malformed")
ok(pd.stop() == 0, "policyd stops")
done()
