#!/usr/bin/env python3
# policyd test: offline verdicts for sample byte streams, line by line
# (verdict, rule, the rule's FILE:LINE, offset, length, excerpt), with
# send boundaries, --service and --port, --monitor, --json, several inputs
# and standard input; and its errors. That its verdicts are the kernel's
# is tests/e2e/judge.t.
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdtest import POLICYD, ROOT, done, is_, ok  # noqa: E402

tmp = tempfile.mkdtemp(prefix="policyd-cli-test.")
os.chdir(tmp)


def pd(*args, input=None, both=False):
    """policyd ARGS: (exit status, stdout, stderr), each without its last
    newlines; both: stderr follows stdout in the one text (2>&1)."""
    p = subprocess.run([POLICYD] + list(args), input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT if both else subprocess.PIPE)
    return (p.returncode, p.stdout.decode(errors="replace").rstrip("\n"),
            (p.stderr or b"").decode(errors="replace").rstrip("\n"))


def write(name, data):
    with open(name, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def fields(text, *cols):
    """The blank-separated fields cols (from 1) of each line (cut -d' ' -f)."""
    return "\n".join(" ".join(l.split(" ")[c - 1] for c in cols if c <= len(l.split(" ")))
                     for l in text.split("\n"))


def lines(text, *nums):
    """The lines nums (from 1) of text (sed -n)."""
    ls = text.split("\n")
    return "\n".join(ls[n - 1] for n in nums if n <= len(ls))


redis = os.path.join(ROOT, "policy-examples", "redis.conf")
try:
    write("kv.conf", """version = 1;
sinks = ( { name = "quarantine"; file = "%s/q.log"; } );
services = (
  { name = "kv"; ports = [ 7000 ]; framing = "line";
    rules = (
      { id = 1; action = "deny"; contains = "FLUSHALL"; nocase = true; },
      { id = 2; action = "audit"; prefix = "KEYS"; },
      { id = 3; action = "redirect"; prefix = "DEBUG"; sink = "quarantine"; }
    ); },
  { name = "web"; ports = [ 8080 ]; direction = "from"; default = "deny";
    rules = ( { id = 10; action = "allow"; prefix = "HTTP/1.1 200"; } ); }
);
""" % tmp)
    write("s1", "GET a\nKEYS *\nDEBUG x\nSET a 1\nflushall\nGET a\n")

    st, out, _ = pd("test", "-c", "kv.conf", "--service", "kv", "s1")
    is_(st, 0, "test: exit 0")
    is_(out, r'''pass rule=default at=kv.conf:4 offset=0 len=6 excerpt="GET a\n"
audit rule=2 at=kv.conf:7 offset=6 len=7 excerpt="KEYS *\n"
redirect rule=3 at=kv.conf:8 offset=13 len=8 sink=quarantine excerpt="DEBUG x\n"
pass rule=default at=kv.conf:4 offset=21 len=8 excerpt="SET a 1\n"
deny rule=1 at=kv.conf:6 offset=29 len=9 excerpt="flushall\n"
refused offset=38 len=6 (dropped with the deny; later sends fail)''',
        "one line per message of a line-framed stream: verdict, rule, FILE:LINE, offset, length, excerpt")

    out = pd("test", "-c", "kv.conf", "--port", "7000", "--split", "|", "-",
             input=b"GET a\n|KEYS *\nDEB|UG x\n|flushall\n|GET a\n")[1]
    is_(out, r'''pass rule=default at=kv.conf:4 offset=0 len=6 excerpt="GET a\n"
audit rule=2 at=kv.conf:7 offset=6 len=7 excerpt="KEYS *\n"
redirect rule=3 at=kv.conf:8 offset=13 len=8 sink=quarantine excerpt="DEBUG x\n"
deny rule=1 at=kv.conf:6 offset=21 len=9 excerpt="flushall\n"
refused offset=30 len=6 (dropped with the deny; later sends fail)''',
        "--split cuts sends (the mark is no byte of the stream); --port finds the service; - is standard input")

    out = pd("test", "-c", "kv.conf", "--port", "7000", "-", input=b"GET a\nKEY")[1]
    is_(out, r'''pass rule=default at=kv.conf:4 offset=0 len=6 excerpt="GET a\n"
held rule=2 at=kv.conf:7 offset=6 len=3 excerpt="KEY"''',
        "an unfinished line that a prefix rule may still match is held, and says which rule")

    out = lines(pd("test", "-c", "kv.conf", "--service", "kv", "--monitor", "s1")[1], 3, 5, 6)
    is_(out, r'''would-redirect rule=3 at=kv.conf:8 offset=13 len=8 sink=quarantine excerpt="DEBUG x\n"
would-deny rule=1 at=kv.conf:6 offset=29 len=9 excerpt="flushall\n"
pass rule=default at=kv.conf:4 offset=38 len=6 excerpt="GET a\n"''',
        "--monitor: would-deny and would-redirect, and the connection goes on")

    write("w1", "HTTP/1.1 200 OK\r\n")
    write("w2", "HTTP/1.1 500 Oops\r\n")
    out = pd("test", "-c", "kv.conf", "--port", "8080", "w1", "w2")[1]
    is_(out, r'''w1: pass rule=10 at=kv.conf:11 offset=0 len=17 excerpt="HTTP/1.1 200 OK\r\n"
w2: deny rule=default at=kv.conf:10 offset=0 len=19 excerpt="HTTP/1.1 500 Oops\r\n"''',
        'several inputs, each a connection, named; --port of a "from" service; a default names its service\'s line')

    d = json.loads(pd("test", "-c", "kv.conf", "--port", "8080", "--json", "w1", "w2")[1])
    is_((d["service"], [(m["input"], m["verdict"], m["rule"], m["at"], m["offset"], m["len"],
                         m["logged"], m["excerpt"]) for m in d["messages"]]),
        ("web", [("w1", "pass", 10, "kv.conf:11", 0, 17, False, r"HTTP/1.1 200 OK\r\n"),
                 ("w2", "deny", None, "kv.conf:10", 0, 19, True, r"HTTP/1.1 500 Oops\r\n")]),
        "--json: the same, and whether the kernel logs it")

    # framing none: each send a message; a prefix anchors at each send
    write("bytes.conf", """version = 1;
services = ( { name = "redis"; ports = [ 6379 ];
  rules = ( { id = 200; action = "deny"; prefix = "FLUSHALL"; nocase = true; } ); } );
""")
    write("r1", "PING\r\n#FLUSHALL\r\n#SET a FLUSHALL\r\n")
    out = pd("test", "-c", "bytes.conf", "--split", "#", "r1")[1]
    out = re.sub(r" excerpt=.*", "", re.sub(r" at=[^ ]*", "", out))
    is_(out, """pass rule=default offset=0 len=6
deny rule=200 offset=6 len=10
refused offset=16 len=16 (dropped with the deny; later sends fail)""",
        "a byte profile: a send is a message, FLUSHALL at its start is denied")
    out = fields(pd("test", "-c", "bytes.conf", "--split", r"\x23", "r1")[1], 1, 2)
    is_(lines(out, 1), "pass rule=default", "--split takes \\xHH")
    # protocol framings: a message is one parsed request, walked by the
    # kernel's parsers; pipelined requests in one send each get a line
    write("r2", 'SET k v\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\t"FLUSH\\x41LL"\r\nPING\r\n')
    st, out, _ = pd("test", "-c", redis, "r2")
    out = re.sub(r" at=[^ ]*", "", out)
    is_(st, 0, "a RESP profile: exit 0")
    is_(out, r'''pass rule=default offset=0 len=9 excerpt="SET k v\r\n"
pass rule=default offset=9 len=20 excerpt="*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
deny rule=100 offset=29 len=16 excerpt="\t\"FLUSH\\x41LL\"\r\n"
refused offset=45 len=6 (dropped with the deny; later sends fail)''',
        "... each pipelined command a message, an inline command in quotes and escapes read as Redis reads it")
    write("r3", "*1\r\n$8\rXFLUSHALL\r\n")
    st, out, _ = pd("test", "-c", redis, "--json", "r3")
    is_(st, 0, "malformed RESP: exit 0")
    ok(re.search(r'"verdict": "deny", "rule": "malformed", "at": "[^"]*redis\.conf:.*'
                 r'"offset": 0, "len": 8, "logged": true', out),
       '... denied as rule "malformed" (--json)', out)
    out = fields(lines(pd("test", "-c", redis, "r3")[1], 1), 1, 2)
    is_(out, "deny rule=malformed", "... and rule=malformed in text, as the daemon logs it")
    write("r4", "*1\r\n$8\r\nFLUSH#ALL\r\n")
    out = fields(pd("test", "-c", redis, "--split", "#", "r4")[1], 1, 2, 4, 5)
    is_(out, "deny rule=100 offset=0 len=18", "a command split across two sends is held, then denied whole")
    write("r5", "FLUSH")
    out = fields(pd("test", "-c", redis, "r5")[1], 1, 2, 4, 5)
    is_(out, "held rule=100 offset=0 len=5", "a command that may still become FLUSHALL is held at the end")
    write("m1", b"get k\r\nflush_all\0\r\n")
    out = fields(pd("test", "-c", os.path.join(ROOT, "policy-examples", "memcached.conf"), "m1")[1],
                 1, 2, 4, 5)
    is_(out, "pass rule=default offset=0 len=7\ndeny rule=100 offset=7 len=12",
        "memcache: flush_all cut at a NUL is denied")
    write("h1", "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /%2eenv HTTP/1.1\r\nHost: a\r\n\r\n")
    out = fields(pd("test", "-c", os.path.join(ROOT, "policy-examples", "http-strict.conf"), "h1")[1],
                 1, 4, 5)
    is_(out, "pass offset=0 len=28\ndeny offset=28 len=33", "http: a percent-encoded dot path is denied")
    out = fields(pd("test", "-c", redis, "--monitor", "r2")[1], 1, 2)
    is_(lines(out, 3, 4), "would-deny rule=100\npass rule=default",
        "--monitor under a protocol framing: would-deny, and the next command is read")

    # errors
    st, err, _ = pd("test", "-c", "kv.conf", "--service", "kb", "s1", both=True)
    is_(st, 2, "an unknown service is a usage error (2)")
    is_(err, "policyd: kv.conf has no service 'kb' (did you mean 'kv'?); its services: kv web",
        "... naming the services")
    st, err, _ = pd("test", "-c", "kv.conf", "s1", both=True)
    is_(st, 2, "no service named in a policy of two: exit 2")
    is_(err, "policyd: kv.conf has 2 services: say which with --service NAME or --port N", "... saying so")
    st, err, _ = pd("test", "-c", "kv.conf", "--port", "9", "s1", both=True)
    is_(st, 2, "a port no service polices: exit 2")
    is_(err, "policyd: no service of kv.conf polices port 9", "... saying so")
    st, err, _ = pd("test", "-c", "kv.conf", "--service", "kv", "nosuch", both=True)
    is_(st, 2, "a missing input: exit 2")
    is_(err, "policyd: cannot read nosuch: No such file or directory", "... naming it")
    is_(pd("test", "-c", "kv.conf", "--service", "kv", "--port", "7000", "s1")[0], 2,
        "--service and --port together: exit 2")
    st, err, _ = pd("test", "-c", "kv.conf", "--service", "kv", "--split", r"\q", "s1", both=True)
    is_(st, 2, "a bad --split escape: exit 2")
    is_(lines(err, 1), r"policyd: --split takes bytes, with \n, \r, \t, \\ and \xHH escapes, at most 256: not '\q'",
        "... saying what it takes")
    is_(pd("test", "-c", "kv.conf", "--service", "kv", "--port", "0", "s1")[0], 2, "--port 0: exit 2")
    is_(pd("test", "-c", "kv.conf", "--service", "kv", "--pin-dir", "/x", "s1", both=True)[1],
        "policyd: --pin-dir does not apply to 'test', which takes -c FILE, --service, --port, "
        "--split, --monitor, --json, input files", "an option that does not apply is named")
    with open("kv.conf", "rb") as f:
        is_(pd("test", "-c", "-", "--service", "kv", "s1", input=f.read())[0], 2,
            "-c -: exit 2 (standard input is for the inputs)")
    with open("s1", "rb") as f:
        is_(pd("test", "-c", "kv.conf", "--service", "kv", "-", "-", input=f.read())[0], 2,
            "standard input twice: exit 2")
    write("bad.conf", 'version = 1;\nservices = ( { name = "s"; ports = [ 1 ];\n'
          ' rules = ( { id = 1; action = "deny"; contains = 5; } ); } );\n')
    st, err, _ = pd("test", "-c", "bad.conf", "s1", both=True)
    is_(st, 1, "an invalid policy: exit 1")
    ok(err.startswith("bad.conf:3: "), "... with FILE:LINE", err)
    is_(pd("test", "-c", "kv.conf", "--service", "kv", "s1")[2], "", "nothing on standard error when all is well")

    # framing http's header and body rules, walked by the kernel's parser
    write("web.conf", """version = 1;
services = ( { name = "web"; ports = [ 80 ]; framing = "http";
  rules = ( { id = 1; action = "deny"; header = "Transfer-Encoding: chunked"; },
            { id = 2; action = "deny"; contains = "${jndi:"; nocase = true; },
            { id = 3; action = "audit"; header = "X-Debug"; } ); } );
""")
    write("h1", "GET /x-debug HTTP/1.1\r\nX-Api: ${jndi:a}\r\nX-Debugger: 1\r\n\r\n|"
          "POST / HTTP/1.1\r\nX-DEBUG:1\r\n\r\n|"
          "POST / HTTP/1.1\r\nX-Debug: 1\r\nContent-Length: 9\r\n\r\nab${J|NDI:")
    write("h2", "POST / HTTP/1.1\r\ntransfer-encoding:\tCHUNKED \r\n\r\n0\r\n\r\n")
    is_(fields(pd("test", "-c", "web.conf", "--split", "|", "h1", "h2")[1], 1, 2, 3),
        """h1: pass rule=default
h1: audit rule=3
h1: deny rule=2
h2: deny rule=1""", "test: header and body rules (not in the path or another header; a name in "
        "any case; a body split across sends; a value in any case with a tab before and a space after)")
finally:
    os.chdir("/")
    shutil.rmtree(tmp, ignore_errors=True)
done()
