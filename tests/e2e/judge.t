#!/usr/bin/env python3
# policyd test against the kernel: what `policyd test` says a stream
# gets is what the kernel does with it. Random policies (framing none and
# line, prefix, contains, hex, nocase, longer_than, inspect windows, every
# action and default, holds; then resp and memcache with command, contains
# and longer_than rules and inline = false, over pipelines of RESP, inline
# and memcached commands, some malformed, some with values longer than the
# kernel's window) and random streams cut into random sends,
# each stream one connection from the test cgroup; then the profiles with
# the traffic of their tests, the protocol framings' (resp, memcache,
# http) with the attack forms of resp.t, memcache.t and http.t. For every connection the deny, redirect
# and audit lines policyd logs (verdict, rule, length, excerpt) equal the
# lines policyd test marks as logged, in order, and a connection whose
# send the kernel refused (or cut short) is one where policyd test says a
# deny refused bytes.
#
# PD_JUDGE_SEED=N picks another seed; PD_JUDGE_POLICIES=N runs more.
import json
import os
import pwd
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import Env, Policyd, Recorder, POLICYD, done, is_, ok, slow, ROOT

env = Env("judge")
srv = Recorder()
port = srv.port
rng = random.Random(int(os.environ.get("PD_JUDGE_SEED", "19")))
NPOL = int(os.environ.get("PD_JUDGE_POLICIES", "24"))
MARK = b"\x7f\x7fSEND\x7f\x7f"      # between sends in policyd test's input
SINK = os.path.join(env.tmp, "q.sink")
# policyd opens its sink files again on a reload, as its own account
open(SINK, "w").close()
os.chown(SINK, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)

# Connect once per stream from the cgroup, send its pieces one send() each
# (stop at the first refused), print [[local port, [result, ...]], ...].
CLIENT = r'''
import json, socket, sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write(str(__import__("os").getpid()))
out = []
for sends in json.load(open(sys.argv[3])):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    res = []
    for piece in sends:
        try:
            res.append(s.send(bytes.fromhex(piece)))
        except OSError as e:
            res.append(-e.errno)
            break
    out.append([s.getsockname()[1], res])
    s.close()
print(json.dumps(out))
'''

ALPHA = b"abABc\n\r\x00\xff "
FILLER = b"xyz0123456789-.:;XYZ"


def random_policy():
    """A random service on port, in the manner of tests/unit/ref.h."""
    framing = rng.choice(["none", "line"])
    rules, maxlen = [], 0
    for i in range(rng.randint(1, 10)):
        act = rng.choice(["audit", "allow", "redirect", "deny"])
        r = '{ id = %d; action = "%s"; ' % (i + 1, act)
        if rng.randrange(8) == 0:
            r += "longer_than = %d;" % rng.randrange(40)
        else:
            n = rng.randint(1, 4) if rng.randrange(2) else rng.randint(1, 8)
            if rng.randrange(8) == 0:
                n = rng.randint(17, 30)
            maxlen = max(maxlen, n)
            pat = bytes(rng.choice(ALPHA) for _ in range(n))
            r += '%s = "%s"; nocase = %s;' % (rng.choice(["hex_contains", "hex_prefix"]),
                                              pat.hex(), rng.choice(["true", "false"]))
        if act == "redirect":
            r += ' sink = "q";'
        rules.append(r + " }")
    inspect = 0 if rng.randrange(2) else maxlen + rng.randrange(12)
    text = ('version = 1;\ndaemon = { log_rate = 0; excerpt = %d; };\n'
            'sinks = ({ name = "q"; file = "%s"; });\n'
            'services = ({ name = "s"; ports = [ %d ]; framing = "%s"; inspect = %d; '
            'default = "%s"; rules = (\n%s\n); });\n'
            % (rng.choice([0, 16, 64, 256]), SINK, port, framing, inspect,
               rng.choice(["allow", "deny", "audit"]), ",\n".join(rules)))
    return text, framing, [bytes.fromhex(h) for h in re.findall(r'hex_\w+ = "(\w+)"', text)]


def random_stream(framing, pats):
    n = rng.choice([rng.randrange(1, 40), rng.randrange(40, 400), rng.randrange(400, 3000)])
    dense = rng.choice([2, 8, 64])
    b = bytearray(rng.choice(FILLER) if rng.randrange(dense) else rng.choice(ALPHA)
                  for _ in range(n))
    for _ in range(rng.randrange(5)):
        if pats and len(b) > 2:
            p = rng.choice(pats)
            at = rng.randrange(len(b))
            for k, c in enumerate(p):
                if at + k < len(b):
                    b[at + k] = c ^ 0x20 if rng.randrange(2) and chr(c).isalpha() else c
    if framing == "line":
        b += b"\n"      # nothing left held at the end
    cuts = sorted(set(rng.randrange(1, len(b)) for _ in range(rng.randrange(6)) if len(b) > 1))
    return [bytes(b[i:j]) for i, j in zip([0] + cuts, cuts + [len(b)])]


def run_clients(streams):
    path = env.write("streams.json", json.dumps([[p.hex() for p in s] for s in streams]))
    out = subprocess.run([sys.executable, "-c", CLIENT, env.cgroup, str(port), path],
                         capture_output=True, text=True, timeout=slow(120))
    if out.returncode:
        raise RuntimeError("client failed: " + out.stderr)
    return json.loads(out.stdout)


LINE = re.compile(r'^policyd: (\S+) rule=(\S+) service=\S+ .*? src=127\.0\.0\.1:(\d+) '
                  r'dst=\S+ len=(\d+)(?: sink=\S+)? excerpt="((?:[^"\\]|\\.)*)"')


def kernel_lines(pd, start, ports, want):
    """The event lines of the given client ports logged past offset start
    (a port is used again by later connections), by port, once want of
    them arrived (or the log stopped growing)."""
    deadline, last, got = time.time() + slow(15), -1, {}
    while time.time() < deadline:
        got = {p: [] for p in ports}
        n = 0
        for l in pd.text()[start:].splitlines():
            m = LINE.match(l)
            if m and int(m.group(3)) in got:
                got[int(m.group(3))].append((m.group(1), m.group(2), int(m.group(4)),
                                             m.group(5)))
                n += 1
        if n >= want and n == last:
            break
        last = n
        time.sleep(slow(0.3))
    return got


def test_lines(conf, sends, extra=()):
    """policyd test's logged lines for one stream, and whether it says a
    send is refused."""
    path = env.write("stream.bin", MARK.join(sends))
    out = subprocess.run([POLICYD, "test", "-c", conf, "--json", "--split",
                          "".join("\\x%02x" % c for c in MARK), path] + list(extra),
                         capture_output=True, text=True, timeout=slow(60))
    if out.returncode:
        raise RuntimeError("policyd test failed (%d): %s" % (out.returncode, out.stderr))
    msgs = json.loads(out.stdout)["messages"]
    lines = [(m["verdict"], "default" if m["rule"] is None else str(m["rule"]), m["len"],
              m["excerpt"]) for m in msgs if m.get("logged")]
    return lines, any(m["verdict"] == "refused" for m in msgs), msgs


seen = {"lines": 0, "refused": 0}


def compare(pd, conf, streams, label, extra=()):
    """Run the streams through the kernel and through policyd test; the
    number of connections that differ (each one diagnosed)."""
    expect = [test_lines(conf, s, extra) for s in streams]
    start = len(pd.text())
    res = run_clients(streams)
    got = kernel_lines(pd, start, [p for p, _ in res], sum(len(e[0]) for e in expect))
    bad = 0
    for (cport, results), (want, refused, msgs), sends in zip(res, expect, streams):
        seen["lines"] += len(got[cport])
        seen["refused"] += any(r < 0 or r < len(p) for r, p in zip(results, sends))
        # refused: a send that failed, or returned short (the bytes before
        # the denied message were sent)
        k_refused = any(r < 0 or r < len(p) for r, p in zip(results, sends))
        # a deny refuses the send it is in; policyd test then reports the
        # sends left, if any
        last_denied = bool(want) and want[-1][0] == "deny"
        if got[cport] != want or (k_refused and not last_denied) or (refused and not k_refused):
            bad += 1
            if bad <= 3:
                print("# %s: connection %d differs\n#   sends: %s\n#   kernel: %s %s\n"
                      "#   policyd test: %s\n#   all: %s"
                      % (label, cport, [s.hex() for s in sends], got[cport], results, want,
                         msgs))
    return bad


def reload(pd, conf_text, conf):
    """SIGHUP with conf_text in conf; whether policyd took it."""
    n = len(re.findall(r"reloaded:|reload refused:", pd.text()))
    with open(conf, "w") as f:
        f.write(conf_text)
    pd.signal(signal.SIGHUP)
    deadline = time.time() + slow(20)
    while time.time() < deadline:
        said = re.findall(r"reloaded:|reload refused:", pd.text())
        if len(said) > n:
            return said[n] == "reloaded:"
        time.sleep(0.05)
    return False


# ---- random policies under the protocol framings resp and memcache ----
WORDS = {"resp": [b"GET", b"SET", b"FLUSHALL", b"CONFIG", b"PING", b"DEL", b"KEYS", b"xx"],
         "memcache": [b"get", b"set", b"flush_all", b"stats", b"delete", b"version", b"xx"]}
ARGS = [b"k", b"SET", b"dir", b"cachedump", b"ab", b"xx4", b"flushall", b""]


def random_proto_policy():
    framing = rng.choice(["resp", "memcache"])
    rules = []
    for i in range(rng.randint(1, 6)):
        act = rng.choice(["audit", "allow", "redirect", "deny"])
        r = '{ id = %d; action = "%s"; ' % (i + 1, act)
        k = rng.randrange(6)
        if k == 0:
            r += "longer_than = %d;" % rng.randrange(60)
        elif k == 1:
            r += 'contains = "%s";' % rng.choice([b"xx", b"ab", b"LL", b"4"]).decode()
        else:
            w = rng.choice(WORDS[framing][:-1]).decode()
            if rng.randrange(3) == 0:
                w += " " + rng.choice([b"SET", b"cachedump", b"k"]).decode()
            r += 'command = "%s";' % w
        if act == "redirect":
            r += ' sink = "q";'
        rules.append(r + " }")
    if framing == "resp" and rng.randrange(4) == 0:
        inline = " inline = false;"
    else:
        inline = ""
    text = ('version = 1;\ndaemon = { log_rate = 0; excerpt = %d; };\n'
            'sinks = ({ name = "q"; file = "%s"; });\n'
            'services = ({ name = "s"; ports = [ %d ]; framing = "%s";%s '
            'default = "%s"; rules = (\n%s\n); });\n'
            % (rng.choice([0, 16, 64]), SINK, port, framing, inline,
               rng.choice(["allow", "deny", "audit"]), ",\n".join(rules)))
    return text, framing


def random_command(framing):
    words = [rng.choice(WORDS[framing])] + [rng.choice(ARGS) for _ in range(rng.randrange(3))]
    if rng.randrange(10) == 0:
        words.append(b"v" * rng.choice([50, 5000]))
    if framing == "memcache":
        if words[0] == b"set":
            data = rng.choice(ARGS)
            return b"set %s 0 0 %d\r\n%s\r\n" % (rng.choice(ARGS[:5]), len(data), data)
        return b" ".join(words) + rng.choice([b"\r\n", b"\n", b"\x00\r\n"])
    if rng.randrange(3):
        w = [x if rng.randrange(4) else x.lower() for x in words]
        c = b"*%d\r\n" % len(w) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in w)
        if rng.randrange(15) == 0:
            c = c.replace(b"\r\n", b"\rX", 1)    # malformed
        return c
    return rng.choice([b"", b" ", b"\t"]) + b" ".join(
        b'"%s"' % x if rng.randrange(4) == 0 else x for x in words if x) + b"\r\n"


def random_proto_stream(framing):
    b = b"".join(random_command(framing) for _ in range(rng.randint(1, 6)))
    cuts = sorted(set(rng.randrange(1, len(b)) for _ in range(rng.randrange(5)) if len(b) > 1))
    return [b[i:j] for i, j in zip([0] + cuts, cuts + [len(b)])]


# ---- random policies ----
# started with a large policy, so that the maps have room for every
# policy reloaded after it (a reload never resizes them): of every
# printable byte, so that its rows are as wide as the profiles' (more
# than 64 byte classes)
conf = os.path.join(env.tmp, "policy.conf")
printable = "".join(chr(c) for c in range(0x21, 0x7f) if chr(c) not in '"\\')
env.write("policy.conf", 'version = 1;\nservices = ({ name = "s"; ports = [ %d ]; rules = (\n%s\n); });\n'
          % (port, ",\n".join('{ id = %d; action = "deny"; contains = "%s"; }'
                              % (i + 1, "".join(rng.choice(printable) for _ in range(16)))
                              for i in range(200))))
pd = Policyd(env, conf)
bad = streams_total = 0
for i in range(NPOL):
    text, framing, pats = random_policy()
    if not reload(pd, text, conf):
        ok(False, "reload to random policy %d" % i, pd.text()[-2000:])
        break
    streams = [random_stream(framing, pats) for _ in range(6)]
    streams_total += len(streams)
    b = compare(pd, conf, streams, "random policy %d" % i)
    if b:
        print("# policy:\n# " + text.replace("\n", "\n# "))
    bad += b
ok(bad == 0 and seen["lines"] > NPOL and seen["refused"] > 0,
   "policyd test and the kernel log the same lines on %d streams over %d random policies "
   "(%d lines, %d connections refused by a deny; %d connections differ)"
   % (streams_total, NPOL, seen["lines"], seen["refused"], bad))

seen = {"lines": 0, "refused": 0}
bad = streams_total = 0
for i in range(NPOL):
    text, framing = random_proto_policy()
    if not reload(pd, text, conf):
        ok(False, "reload to random protocol policy %d" % i, pd.text()[-2000:])
        break
    streams = [random_proto_stream(framing) for _ in range(6)]
    streams_total += len(streams)
    b = compare(pd, conf, streams, "random protocol policy %d" % i)
    if b:
        print("# policy:\n# " + text.replace("\n", "\n# "))
    bad += b
ok(bad == 0 and seen["lines"] > NPOL and seen["refused"] > 0,
   "framings resp and memcache: policyd test and the kernel log the same lines on %d streams "
   "over %d random policies (%d lines, %d connections refused by a deny; %d connections "
   "differ)" % (streams_total, NPOL, seen["lines"], seen["refused"], bad))


# ---- the profiles with the traffic of their tests ----
# (the protocol profiles with the attack forms of resp.t, memcache.t and
# http.t, pipelines, commands split across sends, and values longer than
# the kernel's window of 4096 bytes)
BIG = b"v" * 9000
PIPE = b"".join(b"*3\r\n$3\r\nSET\r\n$2\r\nk%d\r\n$100\r\n%s\r\n" % (i % 10, b"x" * 100)
                for i in range(16))
RESP = [[b"*1\r\n$4\r\nPING\r\n", b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8\r\nflushall\r\n",
         b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"],
        [b"PING\r\nFLUSHALL\r\n"], [b"F", b"LUSHALL\r\n"], [b" \t\"FLUSH\\x41LL\"\r\n"],
        [b"*1\r\n$8\rXFLUSHALL\r\n"], [b"SET k v\r\n", b"*1\r\n$8\r\nFLUSH", b"ALL\r\n"],
        [PIPE, b"*1\r\n$8\r\nflushall\r\n"],
        [b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$9000\r\n" + BIG + b"\r\n*1\r\n$4\r\nPING\r\n"],
        [b"*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$3\r\ndir\r\n$4\r\n/tmp\r\n"],
        [b"*2\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n", b"*3\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n$1\r\nx\r\n"],
        [b"MULTI\r\nKEYS *\r\nEXEC\r\n"]]
MEMCACHE = [[b"set k 0 0 5\r\nhello\r\nget k\r\n", b"delete k\r\n"], [b"flush_all\x00\r\n"],
            [b"stats  cachedump 1 0\r\n"], [b"shutdown\x00\r\n"], [b"watch\x00\r\n"],
            [b"\x80\x01\x00\x01" + b"\x00" * 20 + b"k"],
            [b"set big 0 0 9000\r\n" + BIG + b"\r\nget big\r\n", b"flush_", b"all\r\n"],
            [b"stats\r\nstats slabs\r\nversion\r\n"]]
HTTP = [[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"],
        [b"GET /%2eenv HTTP/1.1\r\nHost: a\r\n\r\n"], [b"GET /.%65nv HTTP/1.0\r\n\r\n"],
        [b"GET http://a/%2Egit/config HTTP/1.1\r\nHost: a\r\n\r\n"],
        [b"GET /.git%2fconfig HTTP/1.1\r\nHost: a\r\n\r\n"],
        [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"], [b"GET /static../secret.txt HTTP/1.1\r\nHost: a\r\n\r\n"],
        [b"TRACE\t/ HTTP/1.1\r\n\r\n"], [b" TRACE / HTTP/1.1\r\n\r\n"],
        [b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 9000\r\n\r\n" + BIG,
         b"GET /a/b/../c HTTP/1.1\r\nHost: a\r\n\r\n"],
        [b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
         b"GET /.env HTTP/1.1\r\nHost: a\r\n\r\n"],
        [b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n"], [b"GET /a", b"dmin HTTP/1.1\r\n\r\n"]]
SAMPLES = {
    "redis.conf": RESP, "redis-strict.conf": RESP, "memcached.conf": MEMCACHE,
    "memcached-strict.conf": MEMCACHE, "http-strict.conf": HTTP,
    "smtp.conf": [[b"EHLO client\r\n", b"MAIL FROM:<a@example.org>\r\n",
                   b"RCPT TO:<b@example.org>\r\n", b"DATA\r\n", b"Subject: hi\r\n\r\nbody\r\n.\r\n",
                   b"QUIT\r\n"], [b"EHLO x\r\n", b"VRFY root\r\n"], [b"EXPN staff\r\n"],
                  [b"HELO x\r\nVRFY", b" root\r\n"]],
    "http-client.conf": [[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"],
                         [b"GET /a/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n"],
                         [b"TRACE / HTTP/1.1\r\n", b"Host: a\r\n\r\n"],
                         [b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"],
                         [b"GET /?q=%24%7Bjndi:x%7d HTTP/1.1\r\nHost: a\r\n\r\n"],
                         [b"GET /x?a=50%&b=", b"${jn", b"di:x} HTTP/1.1\r\n\r\n"],
                         [b"GET / HTTP/1.1\r\nUser-Agent: ${JNDI:", b"ldap://x}\r\n\r\n"],
                         [b"GET /a?next=../b HTTP/1.1\r\nX-T: ${name}\r\n\r\n"
                          b"POST /f HTTP/1.1\r\nContent-Length: 11\r\n\r\n/etc/passwd",
                          b"GET /.ENV HTTP/1.1\r\n\r\n"],
                         [b"POST /f HTTP/1.1\r\nContent-Length: 12\r\n\r\nx=${", b"jndi:a}\n"]],
    "postgres.conf": [[b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
                       b"Q\x00\x00\x00\x0dSELECT 1;\x00"],
                      [b"Q\x00\x00\x00\x2eCOPY t FROM program 'id';\x00"],
                      [b"Q\x00\x00\x00\x1eDROP DATABASE x;\x00"]],
}
for name in sorted(SAMPLES):
    src = open(os.path.join(ROOT, "policy-examples", name)).read()
    text = re.sub(r"ports\s*=\s*\[[^\]]*\]", "ports = [ %d ]" % port, src, count=1)
    text = re.sub(r'direction\s*=\s*"from"', 'direction = "to"', text)
    text = re.sub(r"log_rate\s*=\s*\d+", "log_rate = 0", text)
    if not reload(pd, text, conf):
        ok(False, "reload to %s" % name, pd.text()[-2000:])
        continue
    streams = SAMPLES[name]
    seen = {"lines": 0, "refused": 0}
    b = compare(pd, conf, streams, name)
    ok(b == 0 and seen["lines"] > 0, "%s: policyd test and the kernel log the same lines "
       "for the %d connections of its sample traffic (%d lines, %d refused by a deny)"
       % (name, len(streams), seen["lines"], seen["refused"]))
pd.stop()
done()
