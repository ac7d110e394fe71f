"""Shared harness of the end-to-end tests: TAP output, a private cgroup and
pin directory (removed on every exit path), policyd under test, recording
servers on loopback, and clients run inside or outside the cgroup.

Safety: only a child cgroup we create is ever attached to; servers listen
on 127.0.0.1 and ::1 only; we stop only processes we started.

What every test gets from Env and done(), as the shell harness does
(tests/lib.sh, tests/e2e/env.sh): the kernel log is checked from Env() to
done() (tests/kmsg.py); a policyd that does not start ends the test at
once with its log; the processes a test starts write to files, never to
the test's output; cleanup empties and removes the cgroup or says loudly
that it could not. Bounds on time are multiplied by PD_SLOW (slow()).
"""
import atexit
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

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, os.environ.get("O", "build"))
POLICYD = os.path.abspath(os.environ.get("PD") or os.path.join(BUILD, "policyd"))
PEER = os.path.join(ROOT, "tests", "e2e", "peer.py")

sys.path.insert(0, os.path.join(ROOT, "tests"))
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


def done():
    kernel_log_check()
    print("1..%d" % _n, flush=True)
    sys.exit(1 if _failed else 0)


def fail_now(why, diag=None):
    """One failed check saying why, and the test ends here (cleanup runs)."""
    ok(False, why, diag)
    print("# stopped: " + why, file=sys.stderr, flush=True)
    done()


def skip_all(why):
    print("1..0 # SKIP " + why, flush=True)
    sys.exit(0)


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


class Env:
    """A private cgroup, pin directory and scratch directory."""

    def __init__(self, name):
        if os.geteuid() != 0:
            skip_all("needs root (BPF programs, cgroups)")
        mount = cgroup2_mount()
        if not mount:
            skip_all("no cgroup2 file system mounted")
        tag = "%s-%d" % (name, os.getpid())
        self.cgroup = os.path.join(mount, "policyd-test-" + tag)
        self.pin_dir = "/sys/fs/bpf/policyd-test-" + tag
        self.tmp = tempfile.mkdtemp(prefix="policyd-test-")
        os.chmod(self.tmp, 0o755)  # policyd re-reads its policy as an unprivileged user
        self.procs = []
        os.mkdir(self.cgroup)
        atexit.register(self.cleanup)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *a: sys.exit(130))
        kernel_log_mark()

    def start(self, cmd, **kw):
        """Start a process we stop at cleanup; unless told otherwise its
        output goes to a file in tmp, never to the test's output."""
        if "stdout" not in kw or "stderr" not in kw:
            log = open(os.path.join(self.tmp, "%s-%d.log" % (os.path.basename(cmd[0]),
                                                              len(self.procs))), "ab")
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
        for p in self.procs:
            if p.poll() is None:
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


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Policyd:
    """policyd run --foreground, its stderr kept in a file. One that does not
    start ends the test at once with its log (must_start=False: the test
    looks at running() itself)."""

    def __init__(self, env, conf, extra=(), must_start=True):
        self.env = env
        self.log = os.path.join(env.tmp, "policyd.log")
        self.logf = open(self.log, "ab")
        # the log may hold an earlier instance's lines: this one's start
        # is what follows them
        self.base = self.logf.tell()
        self.p = env.start([POLICYD, "run", "-c", conf, "--cgroup", env.cgroup,
                            "--pin-dir", env.pin_dir, "--foreground"] + list(extra),
                           stdout=self.logf, stderr=self.logf)
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

    def running(self):
        return self.p.poll() is None and "started:" in self.own_text()

    def own_text(self):
        """The log from this instance's start (all of it once truncated)."""
        t = self.text()
        return t[self.base:] if len(t) >= self.base else t

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def lines(self, pattern):
        time.sleep(slow(0.3))
        return [l for l in self.text().splitlines() if re.search(pattern, l)]

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


class Recorder:
    """A server on loopback that keeps every byte each connection sent,
    by the client's port. rcvbuf: SO_RCVBUF set before listen(), so that
    each connection's receive window stays that small (no autotuning).
    Clearing the event reading holds every connection's reads until it
    is set again."""

    def __init__(self, host="127.0.0.1", port=None, rcvbuf=None):
        self.host = host
        self.port = port or free_port(host)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.ls = socket.socket(fam, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.reading = threading.Event()
        self.reading.set()
        self.ls.bind((host, self.port))
        self.ls.listen(64)
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
                chunk = c.recv(65536)
            except OSError as e:
                with self.lock:
                    self.errors[port] = e.errno
                break
            if not chunk:
                break
            with self.lock:
                buf += chunk
        with self.lock:
            self.data[port] = bytes(buf)
        self.done[port].set()
        c.close()

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


def send(data):
    return ["send", data.hex()]


EACCES = -13
