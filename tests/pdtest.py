"""The test harness, for every test file (end-to-end or not): TAP output,
a private cgroup and pin directory (removed on every exit path), private
network and mount namespaces, policyd under test, the servers tests talk
to (recording servers, redis-server, nginx) on loopback, and clients run
inside or outside the cgroup.

Safety: only a child cgroup we create is ever attached to; servers listen
on 127.0.0.1 and ::1 only; we stop only processes we started.

What every test gets from Env and done(): the test runs again in network
and mount namespaces of its own (unshare), with loopback up and a bpffs of
its own on /sys/fs/bpf, so that its sockets, pins and any failure stay
out of the host's (a test that needs the host's opts out, saying why);
the kernel log is checked from Env() to done() (tests/kmsg.py); a policyd
that does not start ends the test at once with its log; the processes a
test starts write to files, never to the test's output; cleanup empties
and removes the cgroup or says loudly that it could not. Bounds on time
are multiplied by PD_SLOW (slow()). A file that cannot run says
`1..0 # SKIP reason` and exits with status SKIP (77): tests/run-test
reports it as a skip.
"""
import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, os.environ.get("O", "build"))
POLICYD = os.path.abspath(os.environ.get("PD") or os.path.join(BUILD, "policyd"))
PEER = os.path.join(ROOT, "tests", "e2e", "peer.py")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kmsg  # noqa: E402

_n = 0
_failed = 0
_kmsg_mark = None


def _slowness():
    v = os.environ.get("PD_SLOW") or "1"
    try:
        f = float(v)
    except ValueError:
        f = -1
    if f <= 0:
        sys.exit("PD_SLOW=%s is not a positive number" % v)
    return f


# How many times slower than this project's own machines the one under test
# is (an emulated guest: 5 to 35). Every bound on time a test checks or
# waits for is multiplied by it; 1 checks what it always did.
SLOW = _slowness()


def slow(x):
    """A bound on time (or a count of tries), scaled by PD_SLOW."""
    return x * SLOW


def ok(cond, name, diag=None):
    global _n, _failed
    _n += 1
    if not cond:
        _failed += 1
    print(("ok" if cond else "not ok") + " %d - %s" % (_n, name), flush=True)
    if not cond and diag is not None:
        for line in str(diag).splitlines():
            print("#   " + line, flush=True)
    return cond


def is_(got, want, name):
    return ok(got == want, name, "got:  %r\nwant: %r" % (got, want))


def kernel_log_mark():
    """From here on, a line the kernel logs that says it went wrong fails the
    test at done() (Env() takes the mark itself)."""
    global _kmsg_mark
    try:
        _kmsg_mark = kmsg.mark()
    except OSError as e:
        print("# cannot read the kernel log (%s): not checked" % e.strerror, flush=True)


def kernel_log_check():
    """The kernel log check, as a test of its own."""
    global _kmsg_mark
    if _kmsg_mark is None:
        return True
    try:
        bad = kmsg.bad_since(_kmsg_mark)
    except OSError as e:
        bad = [(-1, "cannot read the kernel log: %s" % e.strerror)]
    _kmsg_mark = None
    lines = "\n".join("kernel log #%d: %s" % b for b in bad)
    if bad:
        print(lines, file=sys.stderr, flush=True)
    return ok(not bad, "the kernel logged no warning while the test ran", lines)


def relay(text):
    """Another TAP producer's output (a C test program's) as this test's
    checks, numbered on: each of its "ok"/"not ok" lines is a check (a
    "# TODO" one stays a known failure, not counted), its comments pass
    through. Returns (the checks it had, the count its plan said, or
    None)."""
    global _n, _failed
    checks, plan = 0, None
    for line in text.splitlines():
        m = re.match(r"(not )?ok\b(?: \d+)?(?: - )?(.*)$", line)
        if m:
            checks += 1
            _n += 1
            if m.group(1) and "# TODO" not in m.group(2):
                _failed += 1
            print("%sok %d - %s" % (m.group(1) or "", _n, m.group(2)), flush=True)
        elif re.match(r"1\.\.(\d+)", line):
            plan = int(line[3:].split()[0])
        elif line.startswith("#"):
            print(line, flush=True)
        elif line.strip():
            print("# " + line, flush=True)
    return checks, plan


def done():
    kernel_log_check()
    print("1..%d" % _n, flush=True)
    sys.exit(1 if _failed else 0)


def fail_now(why, diag=None):
    """One failed check saying why, and the test ends here (cleanup runs)."""
    ok(False, why, diag)
    print("# stopped: " + why, file=sys.stderr, flush=True)
    done()


# The exit status of a file that cannot run (not root, no cgroup2, no
# namespaces, a tool or a kernel feature missing), with the plan
# "1..0 # SKIP reason": tests/run-test reports it as a skip, and fails a
# file that exits with it without that plan.
SKIP = 77


def skip_all(why):
    """The whole file is skipped, saying why (status SKIP)."""
    sys.stdout.flush()
    print("1..0 # SKIP " + why, flush=True)
    sys.exit(SKIP)


def skip(count, why):
    """The next count checks are skipped, saying why."""
    global _n
    for _ in range(count):
        _n += 1
        print("ok %d # SKIP %s" % (_n, why), flush=True)


def kernel_has(feature):
    """Whether the running kernel has feature: "sock_destroy" (the
    bpf_sock_destroy kfunc, Linux 6.5), "bpf_lsm" (BPF LSM active),
    "cgroup_kill" (Linux 5.14)."""
    if feature == "sock_destroy":
        out = subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux"],
                             capture_output=True, text=True)
        return re.search(r"^\[\d+\] FUNC 'bpf_sock_destroy'", out.stdout, re.M) is not None
    if feature == "bpf_lsm":
        try:
            with open("/sys/kernel/security/lsm") as f:
                return "bpf" in f.read().split(",")
        except OSError:
            return False
    if feature == "cgroup_kill":
        mount = cgroup2_mount()
        return bool(mount) and any(os.path.exists(os.path.join(mount, d, "cgroup.kill"))
                                   for d in os.listdir(mount))
    raise ValueError("kernel_has: no such feature: " + feature)


def require_kernel(feature, why):
    """Skip the whole test, distinctly, when the kernel lacks a feature."""
    if not kernel_has(feature):
        skip_all("kernel: no %s on %s (%s)" % (feature, os.uname().release, why))


def cgroup2_mount():
    with open("/proc/mounts") as f:
        for line in f:
            dev, path, fstype = line.split()[:3]
            if fstype == "cgroup2":
                return path
    return None


# Set in the environment of a test run again in its namespaces:
# "new:INODE" (INODE: the network namespace it was started in) until the
# namespaces are set up, then the inode of the test's network namespace,
# which the processes it starts (and tests it runs) inherit.
NS_VAR = "PD_TEST_NS"


# The mode policyd (run.c) and systemd mount a bpffs on /sys/fs/bpf with.
BPFFS_MODE = 0o700


def bpffs_mode():
    """The mode of the bpffs mounted on /sys/fs/bpf, or None where none
    is (the last file system mounted there is another, or none)."""
    fstype = None
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[1] == "/sys/fs/bpf":
                fstype = fields[2]
    return os.stat("/sys/fs/bpf").st_mode & 0o7777 if fstype == "bpf" else None


def _mount_bpffs(mode, what):
    """Mount a bpffs of mode on /sys/fs/bpf, or end the test (what: the
    check that failed)."""
    out = subprocess.run(["mount", "-t", "bpf", "-o", "mode=%o" % mode, "bpf", "/sys/fs/bpf"],
                         capture_output=True, text=True)
    if out.returncode:
        fail_now(what, out.stderr)


def _netns():
    return str(os.stat("/proc/self/ns/net").st_ino)


def _enter_namespaces():
    """Run this test again (the same interpreter, file and arguments, the
    same process: exec) in network and mount namespaces of its own, unless
    it is already in them; once there, bring loopback up and mount a bpffs
    of its own on /sys/fs/bpf. cgroup2 is the host's: the test's cgroup is
    made under its mount."""
    mark = os.environ.get(NS_VAR, "")
    here = _netns()
    if mark == here:
        return                  # set up already (by this test or the one that started it)
    if mark == "new:" + here:
        fail_now("the test's namespaces: unshare --net left it in the network namespace "
                 "it started in")
    if not mark.startswith("new:"):
        if _n:
            raise RuntimeError("a test makes its Env() before its first check: "
                               "the test runs again from the start in its namespaces")
        for tool in ("unshare", "ip", "mount"):
            if not shutil.which(tool):
                skip_all("no %s: an end-to-end test runs in network and mount namespaces "
                         "of its own" % tool)
        probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True,
                               text=True)
        if probe.returncode:
            skip_all("cannot make network and mount namespaces: %s"
                     % (probe.stderr.strip() or "unshare exited %d" % probe.returncode))
        main = os.path.abspath(sys.modules["__main__"].__file__)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execvpe("unshare", ["unshare", "--net", "--mount", "--propagation", "private", "--",
                               sys.executable, main] + sys.argv[1:],
                   dict(os.environ, **{NS_VAR: "new:" + here}))
    # the namespaces are new: what the test needs in them (a bpffs with
    # the host's mode, or the mode policyd mounts one with where the host
    # has none: the directory under it is not one)
    out = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if out.returncode:
        fail_now("the test's namespaces: ip link set lo up", out.stderr)
    mode = bpffs_mode()
    _mount_bpffs(BPFFS_MODE if mode is None else mode, "the test's namespaces: a bpffs")
    os.environ[NS_VAR] = here


class Env:
    """A private cgroup, pin directory and scratch directory, in network
    and mount namespaces of the test's own. host_ns: why this test runs
    in the host's network and mount namespaces instead (a sentence)."""

    def __init__(self, name, host_ns=None):
        if os.geteuid() != 0:
            skip_all("needs root (BPF programs, cgroups, namespaces)")
        mount = cgroup2_mount()
        if not mount:
            skip_all("no cgroup2 file system mounted")
        if host_ns is None:
            _enter_namespaces()
        else:
            print("# in the host's network and mount namespaces: " + host_ns, flush=True)
            if bpffs_mode() is None:
                # as policyd would at its start: the host has no bpffs to pin in
                _mount_bpffs(BPFFS_MODE, "a bpffs on the host's /sys/fs/bpf, where none was")
                print("# mounted a bpffs on /sys/fs/bpf (mode %o): none was" % BPFFS_MODE,
                      flush=True)
        self.own_ns = host_ns is None
        tag = "%s-%d" % (name, os.getpid())
        self.cgroup = os.path.join(mount, "policyd-test-" + tag)
        self.pin_dir = "/sys/fs/bpf/policyd-test-" + tag
        self.tmp = tempfile.mkdtemp(prefix="policyd-test-%s." % name)
        os.chmod(self.tmp, 0o755)  # policyd re-reads its policy as an unprivileged user
        self.procs = []
        self.pids = []          # processes of ours started by others (a shell's &)
        os.mkdir(self.cgroup)
        atexit.register(self.cleanup)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *a: sys.exit(130))
        kernel_log_mark()

    def in_cgroup(self, cmd):
        """cmd run as a process of the test's cgroup (it moves itself
        there before it execs: no preexec_fn in a threaded test)."""
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.cgroup] + list(cmd)

    def start(self, cmd, inside=False, **kw):
        """Start a process we stop at cleanup (in the test's cgroup if
        inside); unless told otherwise its output goes to a file in tmp,
        never to the test's output."""
        if inside:
            cmd = self.in_cgroup(cmd)
        if "stdout" not in kw or "stderr" not in kw:
            name = os.path.basename(cmd[4] if inside else cmd[0])
            log = open(os.path.join(self.tmp, "%s-%d.log" % (name, len(self.procs))), "ab")
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
        p = subprocess.Popen(cmd, **kw)
        self.procs.append(p)
        return p

    def empty_cgroup(self):
        """End every process in our cgroup (they are ours: clients we moved
        there) and remove it; False, saying what is left, if it cannot."""
        procs = os.path.join(self.cgroup, "cgroup.procs")
        kill = os.path.join(self.cgroup, "cgroup.kill")
        for _ in range(100):
            if not os.path.isdir(self.cgroup):
                return True
            try:
                if os.path.exists(kill):
                    with open(kill, "w") as f:
                        f.write("1")
                else:   # before Linux 5.14: kill what is there until it is empty
                    with open(procs) as f:
                        for pid in f.read().split():
                            os.kill(int(pid), signal.SIGKILL)
                os.rmdir(self.cgroup)
                return True
            except FileNotFoundError:
                return True
            except OSError:
                time.sleep(0.05)
        try:
            with open(procs) as f:
                left = " ".join(f.read().split())
        except OSError:
            left = "?"
        print("cannot remove the test's cgroup %s; processes left in it: %s"
              % (self.cgroup, left), file=sys.stderr, flush=True)
        return False

    def cleanup(self):
        # SIGTERM first: a server's master (nginx) ends its workers only
        # when asked to stop; what is left after a moment is killed
        live = [p for p in self.procs if p.poll() is None]
        for p in live:
            p.terminate()
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + slow(5)
        for p in live:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        bad = not self.empty_cgroup()
        # a policyd killed above may be removing its pins itself (its
        # reaper) while this does
        try:
            for f in os.listdir(self.pin_dir):
                try:
                    os.unlink(os.path.join(self.pin_dir, f))
                except FileNotFoundError:
                    pass
            os.rmdir(self.pin_dir)
        except FileNotFoundError:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        if _kmsg_mark is not None:      # the test ended before done()
            try:
                for b in kmsg.bad_since(_kmsg_mark):
                    print("kernel log #%d: %s" % b, file=sys.stderr, flush=True)
                    bad = True
            except OSError:
                pass
        if bad:
            sys.stdout.flush()
            os._exit(1)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w" if isinstance(text, str) else "wb") as f:
            f.write(text)
        return path

    def run(self, cmd, inside=False, timeout=60, **kw):
        """Run cmd to its end (in the test's cgroup if inside): the
        CompletedProcess, stdout and stderr as text unless told otherwise."""
        kw.setdefault("capture_output", "stdout" not in kw and "stderr" not in kw)
        kw.setdefault("text", True)
        return subprocess.run(self.in_cgroup(cmd) if inside else list(cmd),
                              timeout=slow(timeout), **kw)

    def python(self, code, *args, inside=True, timeout=60, input=None):
        """Python code run as a process of the test's cgroup (or not): its
        standard output. A program that fails raises, with its stderr."""
        out = self.run([sys.executable, "-c", code] + [str(a) for a in args], inside=inside,
                       timeout=timeout, input=input)
        if out.returncode:
            raise RuntimeError("python -c failed (status %d): %s" % (out.returncode,
                                                                      out.stderr[-2000:]))
        return out.stdout

    def stop(self, p, timeout=20):
        """SIGTERM to a process this test started, then its exit status
        (one that does not end within timeout x PD_SLOW s is killed: -9)."""
        if p.poll() is None:
            p.terminate()
        try:
            return p.wait(timeout=slow(timeout))
        except subprocess.TimeoutExpired:
            print("# %s did not stop on SIGTERM: killed" % p.args[0], file=sys.stderr, flush=True)
            p.kill()
            return p.wait()


def output(cmd, timeout=60, **kw):
    """Run cmd to its end: (exit status, what it wrote on stdout and
    stderr, as one text without its trailing newlines, as a shell's
    $(cmd 2>&1) gives it)."""
    out = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace", timeout=slow(timeout), **kw)
    return out.returncode, out.stdout.rstrip("\n")


def wait_until(cond, timeout=10, step=0.05):
    """Call cond() until it returns something true, for at most timeout x
    PD_SLOW seconds: its last result."""
    deadline = time.time() + slow(timeout)
    while True:
        r = cond()
        if r or time.time() >= deadline:
            return r
        time.sleep(step)


def wait_port(port, host="127.0.0.1", timeout=10):
    """Whether a server listens on host:port within timeout x PD_SLOW
    seconds (a connection that closes at once is the probe)."""
    def probe():
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            return False
    return wait_until(probe, timeout)


def grep(path, pattern):
    """The lines of a file (none if it does not exist) that match the
    regular expression pattern."""
    try:
        with open(path, errors="replace") as f:
            return [l.rstrip("\n") for l in f if re.search(pattern, l)]
    except FileNotFoundError:
        return []


def wait_file(path, pattern, timeout=10):
    """Wait for a line matching pattern in a file: the lines that match."""
    return wait_until(lambda: grep(path, pattern), timeout)


def children(pid, comm=None):
    """The PIDs of pid's child processes (named comm, if given), as
    pgrep -P: by the parent PID in /proc/*/stat."""
    out = []
    for c in os.listdir("/proc"):
        if not c.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % c) as f:
                st = f.read()
        except OSError:
            continue
        name, rest = st[st.index("(") + 1:st.rindex(")")], st[st.rindex(")") + 2:].split()
        if int(rest[1]) == pid and comm in (None, name):
            out.append(int(c))
    return sorted(out)


def proc_state(pid):
    """A process's state letter (R, S, Z...), "" if there is none."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, TypeError):
        return ""


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Policyd:
    """policyd run --foreground (binary: another policyd than the build's),
    its stderr kept in a file, environ added to its environment. One that
    does not start ends the test at once with its log (must_start=False:
    the test looks at running() itself)."""

    def __init__(self, env, conf, extra=(), must_start=True, environ=None, binary=None):
        self.env = env
        self.log = os.path.join(env.tmp, "policyd.log")
        self.logf = open(self.log, "ab")
        # the log may hold an earlier instance's lines: this one's start
        # is what follows them
        self.base = self.logf.tell()
        self.p = env.start([binary or POLICYD, "run", "-c", conf, "--cgroup", env.cgroup,
                            "--pin-dir", env.pin_dir, "--foreground"] + list(extra),
                           stdout=self.logf, stderr=self.logf,
                           env=dict(os.environ, **environ) if environ else None)
        deadline = time.time() + slow(20)
        while time.time() < deadline and self.p.poll() is None:
            if "started:" in self.own_text():
                break
            time.sleep(0.05)
        if must_start and not self.running():
            st = self.p.poll()
            fail_now("policyd starts (%s; its log:)" % (
                "it exited with status %d" % st if st is not None
                else "no 'started:' line after %.0f s" % slow(20)), self.text()[-4000:])

    @property
    def pid(self):
        return self.p.pid

    def running(self):
        return self.p.poll() is None and "started:" in self.own_text()

    def wait_log(self, pattern, timeout=10):
        """Wait for a line of this instance's log that matches pattern:
        the lines that match (none after timeout x PD_SLOW s)."""
        return wait_until(lambda: [l for l in self.own_text().splitlines()
                                   if re.search(pattern, l)], timeout)

    def reload(self, timeout=10):
        """SIGHUP, and wait for the line that says the reload was done or
        refused: that line (None if none came)."""
        pat = r"reloaded:|reload refused:"
        n = len(re.findall(pat, self.own_text()))
        self.p.send_signal(signal.SIGHUP)
        got = wait_until(lambda: [l for l in self.own_text().splitlines()
                                  if re.search(pat, l)][n:], timeout)
        return got[0] if got else None

    def kill(self):
        """SIGKILL, and wait for it."""
        self.p.kill()
        return self.p.wait()

    def own_text(self):
        """The log from this instance's start (all of it once truncated)."""
        t = self.text()
        return t[self.base:] if len(t) >= self.base else t

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def lines(self, pattern):
        """The log's lines (this instance's and those before it in the
        file) that match pattern, after a moment for the last to come."""
        time.sleep(slow(0.3))
        return [l for l in self.text().splitlines() if re.search(pattern, l)]

    def own_lines(self, pattern):
        """This instance's log lines that match pattern, now."""
        return [l for l in self.own_text().splitlines() if re.search(pattern, l)]

    def signal(self, sig):
        self.p.send_signal(sig)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=slow(20))
        except subprocess.TimeoutExpired:
            self.p.kill()
            return -1

    def stats(self):
        out = subprocess.run([POLICYD, "stats", "--pin-dir", self.env.pin_dir, "--json"],
                             capture_output=True, text=True)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def rule_count(self, rule):
        st = self.stats() or {"rules": []}
        for r in st["rules"]:
            if r["rule"] == rule:
                return r["messages"]
        return None


class BpfStats:
    """Run-time statistics of every BPF program (run_cnt, run_time_ns)
    while this is held: BPF_ENABLE_STATS, which the kernel undoes when
    the descriptor is closed (the kernel.bpf_stats_enabled sysctl is left
    alone). Adds some tens of ns to every program run (of every program
    on the machine): held only while a count or a time is measured."""

    def __enter__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        attr = ctypes.create_string_buffer(16)      # enable_stats.type = BPF_STATS_RUN_TIME (0)
        libc.syscall.restype = ctypes.c_long
        self.fd = libc.syscall(321 if os.uname().machine == "x86_64" else 280, 32, attr, 16)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "BPF_ENABLE_STATS")
        return self

    def __exit__(self, *a):
        os.close(self.fd)


class Recorder:
    """A server on loopback that keeps every byte each connection sent,
    by the client's port. rcvbuf: SO_RCVBUF set before listen(), so that
    each connection's receive window stays that small (no autotuning).
    Clearing the event reading holds every connection's reads until it
    is set again. chunk, pause: each read takes at most chunk bytes and
    is followed by a pause of that many seconds (a slow, steady reader)."""

    def __init__(self, host="127.0.0.1", port=None, rcvbuf=None, chunk=65536, pause=0):
        self.host = host
        self.chunk, self.pause = chunk, pause
        self.port = port or free_port(host)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.ls = socket.socket(fam, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.reading = threading.Event()
        self.reading.set()
        self.ls.bind((host, self.port))
        self.ls.listen(256)
        self.data = {}
        self.errors = {}    # the errno a connection ended with, if not a clean close
        self.done = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, peer = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(c, peer[1]), daemon=True).start()

    def _read(self, c, port):
        # a bytearray grows in place: appending to bytes copies all of it,
        # which for a stream of tens of MB falls behind the sender
        buf = bytearray()
        with self.lock:
            self.done[port] = threading.Event()
            self.data[port] = buf
        self.reading.wait()
        while True:
            try:
                chunk = c.recv(self.chunk)
            except OSError as e:
                with self.lock:
                    self.errors[port] = e.errno
                break
            if not chunk:
                break
            with self.lock:
                buf += chunk
            if self.pause:
                time.sleep(self.pause)
        with self.lock:
            if self.data.get(port) is buf:
                self.data[port] = bytes(buf)
            ev = self.done.get(port)
        if ev:
            ev.set()
        c.close()

    def all(self):
        """Every byte received so far, connection after connection in the
        order they were accepted."""
        with self.lock:
            return b"".join(bytes(d) for d in self.data.values())

    def clear(self):
        """Forget what was received so far."""
        with self.lock:
            self.data.clear()
            self.errors.clear()
            self.done.clear()

    def got(self, port, timeout=5):
        deadline = time.time() + slow(timeout)
        while time.time() < deadline:
            with self.lock:
                ev = self.done.get(port)
            if ev:
                ev.wait(max(0, deadline - time.time()))
                break
            time.sleep(0.02)
        with self.lock:
            return bytes(self.data.get(port, b""))


def client(env, port, steps, host="127.0.0.1", inside=True, linger=0.2):
    """Run a client (in the test cgroup unless inside=False); returns
    (results, local port)."""
    spec = {"host": host, "port": port, "steps": steps, "linger": linger}
    out = subprocess.run([sys.executable, PEER, "client", env.cgroup if inside else "-",
                          json.dumps(spec)], capture_output=True, text=True, timeout=slow(60))
    if out.returncode != 0:
        raise RuntimeError("client failed: " + out.stderr)
    r = json.loads(out.stdout)
    return r["results"], r["port"]


def request(port, data, host="127.0.0.1", quiet=0.2):
    """data on a new connection from this process (outside the test's
    cgroup: not policed): what came back until the server had been quiet
    for a moment; b"" when nothing listens yet."""
    try:
        s = socket.create_connection((host, port), timeout=5)
    except OSError:
        return b""
    s.sendall(data)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
            s.settimeout(quiet)
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return got


_SEND_CUT = r"""
import json, select, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
s.setblocking(False)
data = bytes.fromhex(sys.stdin.readline()) * int(sys.argv[2])
res = {"sent": 0, "short": 0}
deadline = time.time() + float(sys.argv[3])
while res["sent"] < len(data) and time.time() < deadline:
    select.select([], [s], [], 1)
    try:
        n = s.send(data[res["sent"]:res["sent"] + 200000])
    except BlockingIOError:
        continue
    except OSError as e:
        res["err"] = -e.errno
        break
    res["short"] += n < min(200000, len(data) - res["sent"])
    res["sent"] += n
s.setblocking(True)
try:
    res["last"] = s.send(bytes.fromhex(sys.stdin.readline()))
except OSError as e:
    res["last"] = -e.errno
time.sleep(0.3)
s.close()
print(json.dumps(res))
"""


def send_cut(env, port, data, count, last):
    """A client in the test cgroup, non-blocking with a 64 KiB send buffer,
    that offers data * count 200,000 bytes a send (so that, against a
    slow reader, the kernel cuts pushes short), then sends last blocking:
    {"sent": bytes sent, "short": sends cut short, "last": the last send's
    count or -errno, "err": -errno of a failed send}."""
    prog = ("import os\n"
            "open(os.path.join(%r, 'cgroup.procs'), 'w').write(str(os.getpid()))\n" %
            env.cgroup) + _SEND_CUT
    out = subprocess.run([sys.executable, "-c", prog, str(port), str(count), str(slow(60))],
                         input=data.hex() + "\n" + last.hex() + "\n",
                         capture_output=True, text=True, timeout=slow(120))
    if out.returncode or not out.stdout.strip():
        raise RuntimeError("client failed: %s" % out.stderr)
    return json.loads(out.stdout.splitlines()[-1])


def send(data):
    return ["send", data.hex()]


def kv_policy(port, first_id, daemon, *words):
    """A line-framed service "kv" on port that denies each of words (rule
    ids from first_id), with the daemon settings daemon (text between the
    braces) when not empty: the policy's text."""
    rules = ",\n".join('{ id = %d; action = "deny"; contains = "%s"; }' % (first_id + i, w)
                       for i, w in enumerate(words))
    return "version = 1;\n%sservices = ( { name = \"kv\"; ports = [ %d ]; framing = \"line\"; " \
        "rules = (\n%s\n); } );\n" % ("daemon = { %s };\n" % daemon if daemon else "", port, rules)


_SENDLINES = """
import socket, sys
port, count, line = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode() + b"\\n"
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    try:
        s.send(line); print(0)
    except OSError as e:
        print(e.errno)
    s.close()
"""


def sendlines(env, port, count, line):
    """count new connections to 127.0.0.1:port from the test's cgroup,
    each sending line and a newline, as fast as one process can: the
    errno of each send (0: sent)."""
    return [int(x) for x in env.python(_SENDLINES, port, count, line).split()]


def sendline(env, port, line):
    """The errno (0: sent) of sending line and a newline on a new
    connection to 127.0.0.1:port, from the test's cgroup."""
    return sendlines(env, port, 1, line)[0]


_CONN = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("connected", flush=True)
for line in sys.stdin:
    try:
        print(s.send(line.encode()), flush=True)
    except OSError as e:
        print(-e.errno, flush=True)
"""


class Conn:
    """A connection from the test's cgroup (or not) that stays open: one
    send per say(), which returns what send() did (bytes or -errno)."""

    def __init__(self, env, port, inside=True):
        self.p = env.start([sys.executable, "-u", "-c", _CONN, str(port)], inside=inside,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=open(os.path.join(env.tmp, "conn.log"), "ab"), text=True)
        self.connected = self._read() == "connected"

    def _read(self, timeout=10):
        import select
        r, _, _ = select.select([self.p.stdout], [], [], slow(timeout))
        return self.p.stdout.readline().strip() if r else None

    def say(self, line):
        """line and a newline in one send: its result (None: no answer)."""
        try:
            self.p.stdin.write(line + "\n")
            self.p.stdin.flush()
        except OSError:
            return None
        r = self._read()
        return int(r) if r and r.lstrip("-").isdigit() else None

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            try:
                self.p.wait(timeout=slow(5))
            except subprocess.TimeoutExpired:
                self.p.kill()


def start_redis(env, port, inside=False):
    """A throwaway redis-server on 127.0.0.1:port, nothing saved; the test
    ends (fail_now) if it does not answer PING within 10 s x PD_SLOW."""
    p = env.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", env.tmp], inside=inside)
    if not wait_until(lambda: redis_cli(env, port, "PING") == "PONG" or p.poll() is not None) \
            or p.poll() is not None:
        fail_now("redis-server answers on 127.0.0.1:%d" % port,
                 "exit status %s" % p.poll())
    return p


def redis_cli(env, port, *args, inside=False):
    """redis-cli -p port ARGS (from the test's cgroup if inside): what it
    printed, stdout and stderr, stripped."""
    out = env.run(["redis-cli", "-p", str(port)] + [str(a) for a in args], inside=inside,
                  timeout=30)
    return (out.stdout + out.stderr).strip()


_NGINX = """user nobody nogroup;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log;
events { worker_connections 64; }
http {
	log_format pd '$status "$request" ua="$http_user_agent" api="$http_x_api_version" xff="$http_x_forwarded_for"';
	access_log %(dir)s/access.log pd;
	client_body_temp_path %(dir)s/body;
	proxy_temp_path %(dir)s/proxy;
	fastcgi_temp_path %(dir)s/fastcgi;
	uwsgi_temp_path %(dir)s/uwsgi;
	scgi_temp_path %(dir)s/scgi;
	client_max_body_size 4m;
	%(http)s
	server {
		listen 127.0.0.1:%(port)d;
		root %(root)s;
		location /api/ { return 200 "ok $request_method $request_length\\n"; }
		%(locations)s
	}
	%(servers)s
}
"""


def start_nginx(env, port, root, inside=False, http="", locations="", servers=""):
    """A throwaway nginx on 127.0.0.1:port serving root, its files under
    env.tmp/ngx (access.log lines: status "request" ua= api= xff=), /api/
    answering any method; http: more directives of the http block,
    locations: more of the server's, servers: more server blocks. The
    process (stop it with env.stop(): its workers end with it); the test
    ends (fail_now) if nginx refuses the configuration or does not answer
    within 10 s x PD_SLOW."""
    d = os.path.join(env.tmp, "ngx")
    os.makedirs(d, exist_ok=True)
    conf = env.write("ngx/nginx.conf", _NGINX % {"dir": d, "port": port, "root": root,
                                                 "http": http, "locations": locations,
                                                 "servers": servers})
    t = env.run(["nginx", "-t", "-c", conf, "-p", d])
    if t.returncode:
        fail_now("nginx takes the test's configuration", t.stderr)
    p = env.start(["nginx", "-c", conf, "-p", d, "-g", "daemon off;"], inside=inside)
    p.dir = d

    def answers():
        return p.poll() is not None or request(port, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/")
    if not wait_until(answers) or p.poll() is not None:
        fail_now("nginx answers on 127.0.0.1:%d" % port, tail(os.path.join(d, "error.log")))
    return p


def tail(path, n=40):
    """The last n lines of a file, for a diagnostic."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "%s: %s" % (path, e.strerror)


EACCES = -13
