#!/usr/bin/env python3
# The man pages: clean under man --warnings, installed by make install, and
# complete: every option of --help, every policy key the parser knows, the
# exit codes and signals; the example in policyd.conf(5) is a valid policy.
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdtest import POLICYD, ROOT, done, is_, ok, skip_all  # noqa: E402

os.chdir(ROOT)
if not shutil.which("man"):
    skip_all("man is not installed (make deps)")
tmp = tempfile.mkdtemp(prefix="policyd-man.")


def sh(cmd, **kw):
    """cmd to its end: the CompletedProcess, output as text."""
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", **kw)


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def section(text, start, end):
    """The lines from the first that matches start to the next that
    matches end, both included (sed -n '/start/,/end/p')."""
    out = []
    for line in text.split("\n"):
        if out or re.search(start, line):
            out.append(line)
            if len(out) > 1 and re.search(end, line):
                break
    return out


try:
    pages = {}
    for page in ("policyd/policyd.8", "policyd/policyd.conf.5"):
        warn = sh(["man", "--warnings", "-E", "UTF-8", "-l", page],
                  env=dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")).stderr.rstrip("\n")
        is_(warn, "", page + ": man --warnings is clean")
        text = sh(["man", "-l", page], env=dict(os.environ, MANWIDTH="80")).stdout
        pages[page] = sh(["col", "-bx"], input=text).stdout
    p8, p5 = pages["policyd/policyd.8"], pages["policyd/policyd.conf.5"]

    helptext = sh([POLICYD, "--help"]).stdout
    for opt in sorted(set(re.findall(r"--[a-z-]*", helptext))):
        ok(opt in p8, "policyd(8) documents " + opt)
    # and the other way: every option policyd(8) lists is in --help
    opts8 = [re.search(r"--[a-z-]+", m.group(0)).group(0) for m in
             (re.match(r"     (-[a-zA-Z], )?--[a-z-]+", l)
              for l in section(p8, r"^     The options are:", r"^[A-Z]")) if m]
    ok(len(opts8) >= 10, "policyd(8) lists its options (%d)" % len(opts8))
    for opt in opts8:
        ok(opt in helptext, "--help lists %s, which policyd(8) documents" % opt)
    for cmd in ("check", "dump", "test", "run", "reload", "stats"):
        ok(re.search(r"^     %s " % cmd, p8, re.M), "policyd(8) documents the command " + cmd)
    for sig in ("SIGHUP", "SIGTERM", "SIGINT", "SIGKILL"):
        ok(sig in p8, "policyd(8) documents " + sig)
    status = "\n".join(section(p8, r"^EXIT STATUS", r"^FILES"))
    for code in range(5):
        ok(re.search(r"^     %d +[A-Z]" % code, status, re.M),
           "policyd(8) documents exit status %d" % code)
    ok("Linux 6.13 or later" in p8, "policyd(8) states the kernel floor")
    ok("UDP" in p8 and "kTLS" in p8, "policyd(8) states the UDP and TLS limits")

    # every key in the parser's key lists, and every word it accepts
    listed = []
    for line in read("policyd/parse.c").split("\n"):
        m = re.match(r".*keys\[\] = \{(.*)", line)
        if m:
            line = m.group(1)
            listed.append(line)
        if re.match(r'\t*"[a-z_]*", ', line):
            listed.append(line.lstrip("\t"))
    keys = sorted(set(re.findall(r'"([a-z_]*)"', "\n".join(listed))))
    ok(keys, "the parser's keys are found (%d)" % len(keys))
    for k in keys:
        ok(re.search(r"^     %s( |$)|^%s$" % (k, k), p5, re.M | re.I),
           "policyd.conf(5) documents the key " + k)
    for w in ("detach", "keep", "enforce", "monitor", "to", "from", "both", "none", "line",
              "allow", "deny", "audit", "redirect"):
        ok('"%s"' % w in p5, 'policyd.conf(5) documents "%s"' % w)
    flat = re.sub(r"\s+", " ", re.sub("\u2010\n\\s*", "", p5))
    for d in ('"nobody"', '"/sys/fs/bpf/policyd"', "Default: 100", "Default: 64", "(the default)"):
        ok(d in flat, "policyd.conf(5) states the default " + d)

    example = os.path.join(tmp, "example.conf")
    with open(example, "w") as f:
        f.write("".join(l.replace("/var/lib/policyd", tmp) + "\n"
                        for l in section(p5, r"^EXAMPLES", r"^SEE ALSO")[1:-1]))
    out = sh([POLICYD, "check", "-c", example])
    ok(out.returncode == 0, "the example in policyd.conf(5) passes check: "
       + (out.stdout + out.stderr).rstrip("\n"))

    def install(destdir, prefix):
        return sh(["make", "-s", "install", "DESTDIR=" + destdir, "PREFIX=" + prefix])
    out = install(os.path.join(tmp, "root"), "/usr/local")
    ok(out.returncode == 0, "make install runs", out.stderr[-2000:])
    for f in ("sbin/policyd", "share/man/man8/policyd.8", "share/man/man5/policyd.conf.5",
              "lib/systemd/system/policyd.service", "share/policyd/examples/redis.conf",
              "lib/sysusers.d/policyd.conf", "lib/tmpfiles.d/policyd.conf",
              "share/bash-completion/completions/policyd"):
        ok(os.path.isfile(os.path.join(tmp, "root/usr/local", f)), "make install puts " + f)
    for f in ("policyd/policy.conf", "logrotate.d/policyd"):
        ok(os.path.isfile(os.path.join(tmp, "root/etc", f)), "make install puts /etc/" + f)
    usr = os.path.join(tmp, "usr")
    install(usr, "/usr")
    man8 = read(os.path.join(usr, "usr/share/man/man8/policyd.8"))
    ok("ExecStart=/usr/sbin/policyd run" in read(os.path.join(usr, "usr/lib/systemd/system/policyd.service"))
       and re.search(r"^\.It Pa /usr/share/policyd/examples/", man8, re.M)
       and re.search(r"^\.It Pa /usr/lib/systemd/system/policyd\.service", man8, re.M)
       and sh(["grep", "-rq", "/usr/local", usr]).returncode == 1,
       "make install PREFIX=/usr: the unit and the man pages name /usr paths, none /usr/local")
    with open(os.path.join(usr, "etc/policyd/policy.conf"), "w") as f:
        f.write("# local policy\n")
    install(usr, "/usr")
    is_(read(os.path.join(usr, "etc/policyd/policy.conf")), "# local policy\n",
        "make install keeps an existing policy")
    # the starter policy is what the generator makes of the profiles
    starter = os.path.join(tmp, "starter.conf")
    sh([sys.executable, "tests/gen-audit-all.py", POLICYD, starter, "starter"])
    ok(os.path.exists(starter) and read(starter) == read("policyd/policy.conf"),
       "policyd/policy.conf is up to date with the profiles (tests/gen-audit-all.py starter)")
    ok(re.search(r'^  mode = "monitor";.*$', read("policyd/policy.conf"), re.M),
       "the starter policy is in monitor mode")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
done()
