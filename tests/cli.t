#!/usr/bin/env python3
# The command line: check and dump over the example profiles and malformed
# policies, exit codes, golden dumps, and that a dump re-reads as the same
# policy.
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdtest import POLICYD, ROOT, done, is_, ok, slow  # noqa: E402

os.chdir(ROOT)
tmp = tempfile.mkdtemp(prefix="policyd-cli.")


def pd(*args, input=None, both=False):
    """policyd ARGS: (exit status, stdout, stderr), each without its last
    newlines; both: stderr follows stdout in the one text (2>&1)."""
    p = subprocess.run([POLICYD] + list(args), input=input, text=True, errors="replace",
                       stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT if both else subprocess.PIPE)
    return p.returncode, p.stdout.rstrip("\n"), (p.stderr or "").rstrip("\n")


def raw(*args, input=None):
    """What policyd ARGS printed on stdout, as it is."""
    return subprocess.run([POLICYD] + list(args), input=input, text=True, errors="replace",
                          stdout=subprocess.PIPE).stdout


def tail1(text):
    """text without its first line (a dump's, which names the file)."""
    return text.split("\n", 1)[1:]


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def write(name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def diff(a, b):
    """The first lines of a unified diff of two files (empty: the same)."""
    out = subprocess.run(["diff", "-u", a, b], capture_output=True, text=True, errors="replace")
    return "\n".join(out.stdout.splitlines()[:20])


try:
    for f in sorted(glob.glob("policy-examples/*.conf")):
        st, out, err = pd("check", "-c", f, both=True)
        ok(st == 0, "check accepts " + f, out)
        ok(re.search(r"^%s: ok: \d+ services, \d+ rules, \d+ automaton states, \d+ image bytes"
                     % re.escape(f), out, re.M), "check summary line for " + f, out)
        name = os.path.basename(f)[:-len(".conf")]
        dump = write(name + ".dump", raw("dump", "-c", f))
        d = diff("tests/golden/%s.dump" % name, dump)
        ok(d == "", "dump of %s matches tests/golden/%s.dump" % (f, name), d)
        js = raw("dump", "--json", "-c", f)
        try:
            json.loads(js)
            parses = True
        except ValueError as e:
            parses = str(e)
        ok(parses is True, "dump --json of %s parses" % f, parses)
        ok(js == read("tests/golden/%s.json" % name),
           "dump --json of %s matches tests/golden/%s.json" % (f, name))
        # the dump is itself a policy that dumps the same (up to its file name)
        ok(tail1(read(dump)) == tail1(raw("dump", "-c", dump)),
           "dump of %s re-reads as the same policy" % f)

    for f in sorted(glob.glob("tests/policies/bad/*.conf")):
        st, _, err = pd("check", "-c", f)
        is_(st, 1, "check refuses %s with exit 1" % f)
        is_(err, read(f[:-len(".conf")] + ".err").rstrip("\n"), "check names the error in " + f)
        is_(pd("dump", "-c", f)[0], 1, "dump refuses %s with exit 1" % f)

    none = os.path.join(tmp, "none.conf")
    st, out, _ = pd("check", "-c", none, both=True)
    is_(st, 1, "a missing file is exit 1")
    is_(out, none + ": cannot open: No such file or directory", "and says so")

    is_(pd()[0], 2, "no command is a usage error (2)")
    is_(pd("frobnicate")[0], 2, "an unknown command is a usage error (2)")
    is_(pd("check", "--bogus")[0], 2, "an unknown option is a usage error (2)")
    is_(pd("check", "-c", "policy-examples/redis.conf", "extra")[0], 2,
        "a stray argument is a usage error (2)")
    st, out, _ = pd("check", "--cgroup", "/x", "-c", "policy-examples/redis.conf", both=True)
    is_(st, 2, "an option that does not apply is a usage error (2)")
    is_(out, "policyd: --cgroup does not apply to 'check', which takes -c FILE (or FILE), --json",
        "... naming the option and what the command takes")
    is_(pd("stats", "--monitor", both=True)[1],
        "policyd: --monitor does not apply to 'stats', which takes --pin-dir, --json, --format",
        "... also for stats")
    is_(pd("stats", "--format", "yaml")[0], 2, "stats --format yaml is a usage error")
    is_(pd("stats", "--json", "--format", "openmetrics")[0], 2,
        "--json and --format openmetrics together are a usage error")
    is_(pd("run", "-c", "-", both=True)[1],
        "policyd: run re-reads its policy file on SIGHUP: give a file, not -\n"
        "Try 'policyd --help'.", "run -c - is refused with the reason")
    is_(pd("check", "-c", "policy-examples/redis.conf", "policy-examples/smtp.conf")[0], 2,
        "check -c FILE FILE: the file given twice is a usage error")

    # check FILE, -c - (standard input), --json
    st, out, _ = pd("check", "policy-examples/redis.conf")
    ok(st == 0, "check FILE is accepted")
    ok(out.startswith("policy-examples/redis.conf: ok: "), "... and names the file", out)
    st, out, _ = pd("check", "-c", "-", input=read("policy-examples/smtp.conf"))
    ok(st == 0, "check -c - reads standard input")
    ok(out.startswith("<stdin>: ok: "), "... named <stdin>", out)
    is_(pd("check", "-c", "-", both=True,
           input='version = 1;\nservices = ( { name = "s"; ports = [ 0 ]; } );\n')[1],
        "<stdin>:2: ports are from 1 to 65535", "errors in standard input: <stdin>:LINE")
    ok(tail1(raw("dump", "-", input=read("policy-examples/redis.conf"))) ==
       tail1(raw("dump", "policy-examples/redis.conf")),
       "dump - reads standard input")
    st, out, _ = pd("check", "--json", "policy-examples/redis.conf")
    is_(st, 0, "check --json: exit 0")
    d = json.loads(out)
    is_((d["ok"], d["services"], d["rules"], d["errors"], d["warnings"], d["image_bytes"] > 0),
        (True, 1, 25, [], [], True), "check --json: ok, services, rules, no errors or warnings")
    st, out, _ = pd("check", "--json", "tests/policies/bad/two-errors.conf")
    is_(st, 1, "check --json of an invalid policy: exit 1")
    d = json.loads(out)
    is_((d["ok"], [(e["line"], e["message"][:14]) for e in d["errors"]]),
        (False, [(3, "rule has both "), (4, "rule has no ma")]),
        "check --json: every error with its line")

    # blanks between the bytes of a hex pattern
    def hexpol(h):
        return ('version = 1;\nservices = ( { name = "s"; ports = [ 1 ]; rules = ( { id = 1; '
                'action = "deny"; hex_contains = "%s"; } ); } );\n' % h)
    ok(tail1(raw("dump", "-", input=hexpol("de ad be ef"))) ==
       tail1(raw("dump", "-", input=hexpol("deadbeef"))),
       'hex_contains = "de ad be ef" compiles as "deadbeef"')

    # warnings: exit 0, each with its line
    os.mkdir(os.path.join(tmp, "sinks"))
    warn = write("warn.conf", """version = 1;
daemon = { user = "root"; };
sinks = ( { name = "a"; file = "%(t)s/sinks/a.log"; },
  { name = "b"; file = "%(t)s/sinks/a.log"; },
  { name = "c"; file = "%(t)s/nodir/c.log"; } );
services = ( { name = "s"; ports = [ 1 ]; rules = (
  { id = 1; action = "deny"; contains = "FLUSH"; nocase = true; },
  { id = 2; action = "allow"; prefix = "flush"; },
  { id = 3; action = "redirect"; contains = "x"; sink = "a"; },
  { id = 4; action = "allow"; contains = "FLUSHX"; } ); } );
""" % {"t": tmp})
    st, _, err = pd("check", warn)
    is_(st, 0, "warnings alone: exit 0")
    is_(err, """%(w)s:8: warning: rule 2 allows what rule 1 (line 7) denies: deny wins, this allow never takes effect
%(w)s:4: warning: sink "b" writes to the same file as sink "a" (line 3): their records mix
%(w)s:4: warning: no rule redirects to sink "b"
%(w)s:5: warning: no rule redirects to sink "c"
%(w)s:5: warning: the directory of sink "c" (%(t)s/nodir) does not exist: run would fail to open %(t)s/nodir/c.log
%(w)s:2: warning: user "root" is uid or gid 0: run refuses to keep root's ids; name an unprivileged account"""
        % {"w": warn, "t": tmp},
        "check warns: a dead allow, two sinks on one file, unused sinks, a missing sink directory, user root")
    write("warn.conf", read(warn).replace('user = "root"', 'user = "no-such-user-pd"'))
    err = pd("check", warn)[2]
    ok(('%s:2: warning: user "no-such-user-pd" does not exist on this host: run would fail to drop to it'
        % warn) in err.split("\n"), "check warns about a user that does not exist", err)
    d = json.loads(pd("check", "--json", warn)[1])
    is_((d["ok"], len(d["warnings"]), d["warnings"][0]["line"]), (True, 6, 8),
        "check --json lists the warnings with their lines")
    is_(pd("check", "policy-examples/redis.conf")[2], "", "no warning for a clean profile")
    out = pd("--help")[1]
    ok(re.search(r"^Usage: policyd check", out, re.M), "--help prints usage", out)
    out = pd("--version")[1]
    ok(re.search(r"^policyd \d+\.\d+\.\d+ ", out, re.M), "--version prints the version", out)

    # 10,000 nocase contains patterns of 8-16 bytes: under 1 s, under 64 MiB
    big = os.path.join(tmp, "big.conf")
    subprocess.run(["tests/gen-patterns.py", big, "10000", "7"], check=True)
    st, out, _ = pd("check", "-c", big)
    ok(st == 0, "10,000 patterns compile")
    print("# " + out, flush=True)
    m = re.search(r" (\d+) image bytes.*compiled in ([0-9.]+) ms", out)
    size, ms = (int(m.group(1)), float(m.group(2))) if m else (None, None)
    ok(size is not None and size < 64 << 20, "image under 64 MiB (%s bytes)" % size)
    ok(ms is not None and ms < slow(1000),
       "compiled in under 1 s times PD_SLOW (%s ms; bound %g ms)" % (ms, slow(1000)))

    # without byte patterns a framing-none service reads no byte; under line
    # framing the scan still looks for the ends of lines
    len_conf = write("len.conf", """version = 1;
services = (
  { name = "len"; ports = [ 7001 ]; direction = "to"; framing = "none";
    rules = ( { id = 1; action = "deny"; longer_than = 1000; } ); },
  { name = "lenline"; ports = [ 7002 ]; direction = "to"; framing = "line";
    rules = ( { id = 2; action = "deny"; longer_than = 1000; } ); }
);
""")
    is_(re.findall(r"# scan: .*", pd("dump", "-c", len_conf)[1]),
        ["# scan: none (no byte patterns: only the length of a message counts)",
         '# scan: 8 bytes at a time, up to any of "\\n"'],
        "dump: no scan without byte patterns, unless lines are framed")
    is_([s["automaton"]["scan"] for s in json.loads(pd("dump", "--json", "-c", len_conf)[1])["services"]],
        ["none", "words"], 'dump --json: "scan": "none", then "words"')
finally:
    shutil.rmtree(tmp, ignore_errors=True)
done()
