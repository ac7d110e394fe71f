"""What the profile tests share besides tests/pdtest.py: an example
profile moved to the test's port, and the servers they talk to beyond
pdtest's (redis, nginx, recorders): memcached, a throwaway PostgreSQL
cluster and an SMTP server that keeps every command it receives. Each
server listens on 127.0.0.1 only, writes to files in the test's scratch
directory, is stopped at cleanup, and ends the test at once (fail_now) if
it does not come up.
"""
import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pdtest import ROOT, fail_now, grep, slow, tail, wait_port, wait_until  # noqa: E402


def profile(env, name, ports, port):
    """policy-examples/NAME.conf with its port list "ports = [ PORTS ]"
    made "ports = [ PORT ]", in env.tmp: its path, and whether the copy
    now polices port (the test's first check)."""
    with open(os.path.join(ROOT, "policy-examples", name + ".conf")) as f:
        text = f.read().replace("ports = [ %s ]" % ports, "ports = [ %d ]" % port)
    return env.write("p.conf", text), "ports = [ %d ]" % port in text


def log_lines(pd, pattern, want):
    """The lines of policyd's log that match pattern, once want of them are
    there (at most 2 s x PD_SLOW) and 0.5 s x PD_SLOW more have passed, so
    that a line too many is seen too."""
    wait_until(lambda: len(grep(pd.log, pattern)) >= want, 2)
    time.sleep(slow(0.5))
    return grep(pd.log, pattern)


def start_memcached(env, port, *args):
    """memcached on 127.0.0.1:port, 16 MB, no UDP, as nobody; args: more
    options. The process."""
    p = env.start(["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-u", "nobody",
                   "-m", "16"] + list(args))
    if not wait_port(port) or p.poll() is not None:
        fail_now("memcached listens on 127.0.0.1:%d" % port, "exit status %s" % p.poll())
    return p


def postgres_bin():
    """The newest PostgreSQL's bin directory (None if there is none)."""
    def version(d):
        return [int(x) if x.isdigit() else 0 for x in d.split("/")[-2].split(".")]
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)
    return dirs[-1] if dirs and os.access(os.path.join(dirs[-1], "initdb"), os.X_OK) else None


def start_postgres(env, port):
    """A throwaway PostgreSQL cluster (initdb into env.tmp/pg, trust, user
    postgres) on 127.0.0.1:port, every statement in env.tmp/pg/server.log.
    The process; it is stopped with SIGINT (a fast shutdown, which does
    not wait for sessions to end) before the test's cleanup."""
    pgbin = postgres_bin()
    d = os.path.join(env.tmp, "pg")
    os.mkdir(d)
    shutil.chown(d, "postgres", "postgres")
    out = env.run(["runuser", "-u", "postgres", "--", os.path.join(pgbin, "initdb"),
                   "-D", os.path.join(d, "data"), "--auth=trust", "-U", "postgres"], timeout=120)
    if out.returncode:
        fail_now("initdb makes a throwaway cluster", out.stdout + out.stderr)
    log = os.path.join(d, "server.log")
    p = env.start(["setpriv", "--reuid", "postgres", "--regid", "postgres", "--clear-groups", "--",
                   os.path.join(pgbin, "postgres"), "-D", os.path.join(d, "data"), "-p", str(port),
                   "-k", d, "-c", "listen_addresses=127.0.0.1", "-c", "log_statement=all",
                   "-c", "logging_collector=off", "-c", "fsync=off", "-c", "max_connections=40"],
                  stdout=open(log, "ab"), stderr=subprocess.STDOUT)

    def stop():
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=slow(20))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    atexit.register(stop)     # runs before the cleanup Env registered earlier
    p.log = log
    p.bin = pgbin

    def ready():
        return p.poll() is not None or env.run([os.path.join(pgbin, "pg_isready"), "-q", "-h",
                                                "127.0.0.1", "-p", str(port)]).returncode == 0
    if not wait_until(ready, 30, 0.1) or p.poll() is not None:
        fail_now("postgres listens on 127.0.0.1:%d" % port, tail(log))
    return p


class SmtpServer:
    """An SMTP server on 127.0.0.1:port, RFC 5321 enough for swaks and
    smtplib, in this process: lines holds every command line it received
    (not the lines of a message), mails every message's text. VRFY, EXPN
    and HELP are answered as a server that allows them would."""

    def __init__(self, port):
        self.lines = []
        self.mails = []
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            c, _ = self.ls.accept()
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self._session(c)
        except ConnectionError:     # a denied client is reset
            pass
        c.close()

    def _session(self, c):
        f = c.makefile("rb")

        def w(s):
            c.sendall(s.encode() + b"\r\n")
        w("220 test.local ESMTP")
        data = None
        for line in f:
            if data is not None:
                if line in (b".\r\n", b".\n"):
                    with self.lock:
                        self.mails.append(b"".join(data))
                    data = None
                    w("250 2.0.0 queued")
                else:
                    data.append(line)
                continue
            with self.lock:
                self.lines.append(line)
            verb = line.split(b" ")[0].strip().upper()
            if verb == b"EHLO":
                w("250-test.local\r\n250-PIPELINING\r\n250 8BITMIME")
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                w("250 2.0.0 ok")
            elif verb == b"DATA":
                data = []
                w("354 go ahead")
            elif verb == b"QUIT":
                w("221 bye")
                break
            elif verb == b"VRFY":
                w("252 2.0.0 root")
            elif verb == b"EXPN":
                w("250 2.0.0 staff: alice, bob")
            elif verb == b"HELP":
                w("214 2.0.0 see RFC 5321")
            else:
                w("502 5.5.2 not implemented")
