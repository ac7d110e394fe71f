"""Shared harness of the end-to-end tests: TAP output, a private cgroup and
pin directory (removed on every exit path), policyd under test, recording
servers on loopback, and clients run inside or outside the cgroup.

Safety: only a child cgroup we create is ever attached to; servers listen
on 127.0.0.1 and ::1 only; we stop only processes we started.
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
POLICYD = os.path.join(BUILD, "policyd")
PEER = os.path.join(ROOT, "tests", "e2e", "peer.py")

_n = 0
_failed = 0


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


def done():
    print("1..%d" % _n, flush=True)
    sys.exit(1 if _failed else 0)


def skip_all(why):
    print("1..0 # SKIP " + why, flush=True)
    sys.exit(0)


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

    def start(self, cmd, **kw):
        p = subprocess.Popen(cmd, **kw)
        self.procs.append(p)
        return p

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        # processes left in our cgroup are ours (clients we moved there)
        try:
            with open(os.path.join(self.cgroup, "cgroup.procs")) as f:
                for pid in f.read().split():
                    os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
        for _ in range(50):
            try:
                os.rmdir(self.cgroup)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)
        if os.path.isdir(self.pin_dir):
            for f in os.listdir(self.pin_dir):
                os.unlink(os.path.join(self.pin_dir, f))
            os.rmdir(self.pin_dir)
        shutil.rmtree(self.tmp, ignore_errors=True)

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
    """policyd run --foreground, its stderr kept in a file."""

    def __init__(self, env, conf, extra=()):
        self.env = env
        self.log = os.path.join(env.tmp, "policyd.log")
        self.logf = open(self.log, "ab")
        self.p = env.start([POLICYD, "run", "-c", conf, "--cgroup", env.cgroup,
                            "--pin-dir", env.pin_dir, "--foreground"] + list(extra),
                           stdout=self.logf, stderr=self.logf)
        deadline = time.time() + 20
        while time.time() < deadline and self.p.poll() is None:
            if "started:" in self.text():
                break
            time.sleep(0.05)

    def running(self):
        return self.p.poll() is None and "started:" in self.text()

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def lines(self, pattern):
        time.sleep(0.3)
        return [l for l in self.text().splitlines() if re.search(pattern, l)]

    def signal(self, sig):
        self.p.send_signal(sig)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=20)
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
    by the client's port."""

    def __init__(self, host="127.0.0.1", port=None):
        self.host = host
        self.port = port or free_port(host)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.ls = socket.socket(fam, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
        buf = b""
        with self.lock:
            self.done[port] = threading.Event()
        while True:
            try:
                chunk = c.recv(65536)
            except OSError as e:
                with self.lock:
                    self.errors[port] = e.errno
                break
            if not chunk:
                break
            buf += chunk
            with self.lock:
                self.data[port] = buf
        with self.lock:
            self.data[port] = buf
        self.done[port].set()
        c.close()

    def got(self, port, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                ev = self.done.get(port)
            if ev:
                ev.wait(max(0, deadline - time.time()))
                break
            time.sleep(0.02)
        with self.lock:
            return self.data.get(port, b"")


def client(env, port, steps, host="127.0.0.1", inside=True, linger=0.2):
    """Run a client (in the test cgroup unless inside=False); returns
    (results, local port)."""
    spec = {"host": host, "port": port, "steps": steps, "linger": linger}
    out = subprocess.run([sys.executable, PEER, "client", env.cgroup if inside else "-",
                          json.dumps(spec)], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("client failed: " + out.stderr)
    r = json.loads(out.stdout)
    return r["results"], r["port"]


def send(data):
    return ["send", data.hex()]


EACCES = -13
