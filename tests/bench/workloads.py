"""make bench's profile workloads: the real servers and load generators
each profile of policy-examples/ is written for, the policies retargeted
to the bench's ports, and HAProxy in TCP mode with the same deny patterns
as content rules (the user-space proxy policyd is compared with).

Every server listens on 127.0.0.1 only, is started by the bench and
stopped by its PID (Env.cleanup stops whatever is left, on every exit
path). Used by tests/bench/bench.py.
"""
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
EXAMPLES = os.path.join(ROOT, "policy-examples")

from harness import PIN_CLIENT, PIN_SERVER, free_port, wait_port  # noqa: E402


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


# --- policies ------------------------------------------------------------

def _services(path, port, id_offset):
    """The services of profile path, on port, rule ids shifted by id_offset."""
    text = open(path).read()
    text = re.sub(r"ports = \[[^\]]*\]", "ports = [ %d ]" % port, text)
    if id_offset:
        text = re.sub(r"\bid = (\d+);", lambda m: "id = %d;" % (int(m.group(1)) + id_offset), text)
    i = text.index("services = (")
    j = text.rindex(");")
    return text[i + len("services = ("):j].strip()


def profile_policy(dst, port, names):
    """One policy with the services of the profiles names (policy-examples/
    NAME.conf, or a file NAME.conf elsewhere), all on port, rule ids of
    the k-th profile shifted by 1000 * k so that they stay unique; logging
    limited as in the other sections (the excess is counted, not logged)."""
    with open(dst, "w") as f:
        f.write("version = 1;\ndaemon = { log_rate = 10; };\nservices = (\n%s\n);\n" % ",\n".join(
            _services(n if n.endswith(".conf") else os.path.join(EXAMPLES, n + ".conf"), port,
                      1000 * k)
            for k, n in enumerate(names)))
    return dst


# --- HAProxy ---------------------------------------------------------------

HAPROXY_DELAY_MS = 10


def _hq(b):
    """bytes as a double-quoted HAProxy configuration word."""
    out = []
    for c in b:
        ch = chr(c)
        if ch in '"\\$#\'':
            out.append("\\" + ch)
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif 0x20 <= c < 0x7f:
            out.append(ch)
        else:
            out.append("\\x%02x" % c)
    return '"%s"' % "".join(out)


def haproxy_rules(dump):
    """The deny rules of a policy (policyd dump --json) as HAProxy content
    rules: ([lines for the request side], [lines for the response side],
    number of patterns). contains is `-m sub`, prefix `-m beg` (and, under
    line framing, `-m sub` of a newline and the prefix), nocase `-i`. A
    service of direction "to" judges what the client sends, one of
    direction "from" what the server sends back. The protocol framings'
    keys become the byte patterns an HAProxy user would write for them,
    since HAProxy in TCP mode parses no protocol: a command its name as
    sent inline and (framing resp) as a RESP bulk string with its first
    argument; a method the request's start; a path, query, header or body
    pattern a substring (a header's in any case)."""
    sides = {"to": {}, "from": {}}
    n = 0
    for s in dump["services"]:
        acls = sides[s["direction"]]
        for r in s["rules"]:
            if r["action"] != "deny" or "hex" not in r:
                continue
            b = bytes.fromhex(r["hex"])
            nocase = r["nocase"]
            words = []
            if r["match"] in ("contains", "hex_contains", "path_contains", "query_contains"):
                words.append(("sub", b))
            elif r["match"] == "prefix":
                words.append(("beg", b))
                if s["framing"] == "line":
                    words.append(("sub", b"\n" + b))
            elif r["match"] == "command":
                nocase = s["framing"] == "resp"
                words.append(("sub", b))
                if s["framing"] == "resp" and b" " in b:
                    name, arg = b.split(b" ", 1)
                    words.append(("sub", b"%s\r\n$%d\r\n%s" % (name, len(arg), arg)))
            elif r["match"] == "method":
                words.append(("beg", b + b" "))
            elif r["match"] == "path_prefix":
                words.append(("sub", b" " + b))
            elif r["match"] == "header_contains":
                nocase = True
                words.append(("sub", b))
            elif r["match"] == "header":
                nocase = True
                words.append(("sub", b"\n" + b))
            else:
                raise RuntimeError("no HAProxy equivalent for a %s rule" % r["match"])
            for how, pat in words:
                acls.setdefault((how, nocase), []).append(pat)
                n += 1
    out = []
    for side, fetch, kw in (("to", "req.payload(0,0)", "tcp-request"),
                            ("from", "res.payload(0,0)", "tcp-response")):
        lines = []
        names = []
        for (how, nocase), pats in sorted(sides[side].items()):
            name = "deny_%s_%s%s" % (side, how, "_i" if nocase else "")
            names.append(name)
            # one pattern per acl line keeps each line short; lines of the
            # same name are ORed
            for p in pats:
                lines.append("\tacl %s %s -m %s%s -- %s" % (name, fetch, how,
                                                            " -i" if nocase else "", _hq(p)))
        if names:
            lines.append("\t%s inspect-delay %dms" % (kw, HAPROXY_DELAY_MS))
            lines.append("\t%s content reject if %s" % (kw, " || ".join(names)))
        out.append(lines)
    return out[0], out[1], n


class HAProxy:
    """HAProxy (Debian's package) in TCP mode on 127.0.0.1:port in front of
    127.0.0.1:backend, one thread, with the policy's deny patterns as
    content rules. Started in the foreground (-db), stopped by its PID."""

    def __init__(self, env, policyd_bin, conf, backend):
        dump = json.loads(subprocess.run([policyd_bin, "dump", "--json", "-c", conf], check=True,
                                         capture_output=True, text=True).stdout)
        req, res, self.patterns = haproxy_rules(dump)
        self.checks = []
        self.port = free_port()
        self.config = "\n".join([
            "global",
            "\tnbthread 1",
            "\tmaxconn 8000",
            "defaults",
            "\tmode tcp",
            "\ttimeout connect 5s",
            "\ttimeout client 60s",
            "\ttimeout server 60s",
            "listen bench",
            "\tbind 127.0.0.1:%d" % self.port,
        ] + req + res + [
            "\tserver backend 127.0.0.1:%d" % backend,
            "",
        ])
        self.path = env.write("haproxy-%d.cfg" % self.port, self.config)
        chk = subprocess.run(["haproxy", "-c", "-f", self.path], capture_output=True, text=True)
        if chk.returncode != 0:
            raise RuntimeError("haproxy rejects its configuration: " +
                               (chk.stderr + chk.stdout).strip()[-800:])
        self.log = self.path[:-4] + ".log"
        with open(self.log, "w") as f:
            self.p = env.start(["haproxy", "-db", "-f", self.path], stdout=f, stderr=f)
        try:
            wait_port(self.port, proc=self.p)
        except RuntimeError as e:
            raise RuntimeError("%s: %s" % (e, open(self.log).read().strip()[-500:]))

    def check(self, denied, allowed, want, tries=10):
        """HAProxy passes allowed (the reply holds want) and refuses denied
        (the connection closes with no reply) at least once in tries: the
        row measures a proxy whose rules match. Not every time: in TCP
        mode a rule judges what has arrived when the inspect delay ends,
        counted from the connection's start (requests) or from the
        server's connection (replies); on a loaded machine a reply can
        come later than that and pass unjudged. The count goes in
        results.md."""
        got = exchange(self.port, allowed)
        if want not in got:
            raise RuntimeError("HAProxy did not pass %r: got %r" % (allowed, got[:80]))
        refused = sum(1 for _ in range(tries) if not exchange(self.port, denied))
        self.checks.append((repr(denied)[2:-1], refused, tries))
        if not refused:
            raise RuntimeError("HAProxy passed %r in %d tries out of %d" % (denied, tries, tries))

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            self.p.wait(timeout=30)


def exchange(port, payload, timeout=2.0):
    """Send payload on a new connection to 127.0.0.1:port and read what
    comes back until the peer closes or timeout passes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    try:
        s.sendall(payload)
        deadline = time.time() + timeout
        while time.time() < deadline:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except (socket.timeout, ConnectionResetError):
        pass
    finally:
        s.close()
    return got


def haproxy_version():
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout
    return "HAProxy " + out.split()[2]


# --- servers ---------------------------------------------------------------

def start_redis(env):
    port = free_port()
    p = env.start(PIN_SERVER + ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", env.tmp],
                  stdout=subprocess.DEVNULL)
    wait_port(port, proc=p)
    return p, port


def page(n, seed):
    """n bytes of HTML-like text: lower-case words, spaces and newlines
    (none of secrets-egress's patterns, which need upper case, digits or
    punctuation)."""
    words = ("the of policy server reply connection kernel socket bytes table walk state "
             "profile rule service stream request header content length cache block page "
             "window scan patterns firewall message client address").split()
    x = seed
    out = ["<html><body><p>\n"]
    size = len(out[0])
    line = 0
    while size < n:
        x = (x * 1103515245 + 12345) & 0x7fffffff
        w = words[x % len(words)]
        sep = "\n" if line > 64 else " "
        line = 0 if sep == "\n" else line + len(w) + 1
        out.append(w + sep)
        size += len(w) + 1
    s = "".join(out)[:n - len("</p></body></html>\n")] + "</p></body></html>\n"
    return s.encode()


class Nginx:
    """nginx (worker_processes 1, keep-alive, sendfile on as in Debian's
    configuration) on 127.0.0.1, serving /small (612 bytes), /64k
    (65,536 bytes) and /secret (a private key's armour). inside: a
    process of the bench's cgroup (policed when a policy of direction
    "from" is loaded)."""

    SMALL, LARGE = 612, 65536

    def __init__(self, env, inside):
        self.port = free_port()
        d = os.path.join(env.tmp, "ngx-%d" % self.port)
        www = os.path.join(d, "www")
        os.makedirs(www)
        os.chmod(d, 0o755)
        with open(os.path.join(www, "small"), "wb") as f:
            f.write(page(self.SMALL, 1))
        with open(os.path.join(www, "64k"), "wb") as f:
            f.write(page(self.LARGE, 2))
        # what secrets-egress is for, to check that a firewall stops it
        with open(os.path.join(www, "secret"), "wb") as f:
            f.write(b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAbench\n"
                    b"-----END PRIVATE KEY-----\n")
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""user nobody nogroup;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events { worker_connections 8000; }
worker_rlimit_nofile 16384;
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000000;
	keepalive_timeout 60s;
	default_type text/html;
	client_body_temp_path %(d)s/body;
	proxy_temp_path %(d)s/proxy;
	fastcgi_temp_path %(d)s/fastcgi;
	uwsgi_temp_path %(d)s/uwsgi;
	scgi_temp_path %(d)s/scgi;
	server {
		listen 127.0.0.1:%(port)d backlog=4096;
		root %(www)s;
	}
}
""" % {"d": d, "port": self.port, "www": www})
        subprocess.run(["nginx", "-t", "-q", "-c", conf, "-p", d], check=True,
                       capture_output=True)
        self.p = env.start(PIN_SERVER + ["nginx", "-c", conf, "-p", d, "-g", "daemon off;"],
                           inside=inside, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, proc=self.p)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGQUIT)     # graceful: the worker finishes and exits
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def start_memcached(env):
    port = free_port()
    p = env.start(PIN_SERVER + ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0",
                                "-t", "1", "-m", "256", "-c", "4096", "-u", "nobody"],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc=p)
    return p, port


def pg_bin():
    d = sorted((x for x in os.listdir("/usr/lib/postgresql") if x.isdigit()), key=int)
    if not d:
        raise RuntimeError("postgresql is not installed")
    return os.path.join("/usr/lib/postgresql", d[-1], "bin")


class Postgres:
    """A throwaway PostgreSQL cluster in the bench's scratch directory,
    run as the postgres user, listening on 127.0.0.1 only (and a socket
    in its own directory), fsync off; pgbench's tables at scale 4.
    Stopped by its PID (fast shutdown); the directory goes with the
    scratch directory."""

    SCALE = 4

    def __init__(self, env):
        self.bin = pg_bin()
        self.port = free_port()
        self.dir = os.path.join(env.tmp, "pg")
        os.mkdir(self.dir)
        subprocess.run(["chown", "postgres:postgres", self.dir], check=True)
        asuser = ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--clear-groups", "--"]
        subprocess.run(asuser + [os.path.join(self.bin, "initdb"), "-D", self.dir + "/data",
                                 "--auth=trust", "-U", "postgres", "--no-sync"], check=True,
                       capture_output=True)
        self.log = open(os.path.join(env.tmp, "pg.log"), "w")
        self.p = env.start(asuser + PIN_SERVER + [
            os.path.join(self.bin, "postgres"), "-D", self.dir + "/data", "-p", str(self.port),
            "-k", self.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=100", "-c", "logging_collector=off"],
            stdout=self.log, stderr=self.log)
        env.stoppers.append(self.stop)
        deadline = time.time() + 60
        while subprocess.run([os.path.join(self.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                              str(self.port)]).returncode != 0:
            if self.p.poll() is not None or time.time() > deadline:
                raise RuntimeError("postgres did not start: " + open(self.log.name).read()[-800:])
            time.sleep(0.1)
        subprocess.run([os.path.join(self.bin, "pgbench"), "-i", "-q", "-s", str(self.SCALE)]
                       + self.conn(), check=True, capture_output=True)

    def conn(self, port=None):
        return ["-h", "127.0.0.1", "-p", str(port or self.port), "-U", "postgres", "postgres"]

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)       # fast shutdown
            try:
                self.p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def start_smtp(env):
    port = free_port()
    p = env.start(PIN_SERVER + [sys.executable, os.path.join(HERE, "smtp-sink.py"), str(port),
                                os.path.join(env.tmp, "mail-%d" % port)],
                  stdout=subprocess.DEVNULL)
    wait_port(port, proc=p)
    return p, port


# --- clients -----------------------------------------------------------------
# Each returns one figure (higher is better) and raises when the client
# saw an error: a figure from a run in which requests failed is no figure.

def redis_default(env, port, pipeline, n, keepalive=True):
    """redis-benchmark's default set of tests (50 clients, n requests
    each): the geometric mean of their requests per second."""
    cmd = PIN_CLIENT + ["redis-benchmark", "-p", str(port), "-n", str(n), "-P", str(pipeline),
                        "-q", "--csv"]
    out = env.run(cmd, inside=True)
    rps = {m.group(1): float(m.group(2))
           for m in re.finditer(r'^"([^"]+)","([\d.]+)"', out, re.M)}
    if len(rps) < 15 or min(rps.values()) <= 0:
        raise RuntimeError("redis-benchmark said: " + out[-800:])
    return geomean(list(rps.values()))


def redis_connrate(env, port, n):
    """New connections per second: redis-benchmark -k 0 (a connection per
    request), SET and GET, 20 clients: the mean of the two."""
    out = env.run(PIN_CLIENT + ["redis-benchmark", "-p", str(port), "-k", "0", "-t", "set,get",
                                "-n", str(n), "-c", "20", "-q", "--csv"], inside=True)
    rps = [float(m.group(1)) for m in re.finditer(r'^"(?:SET|GET)","([\d.]+)"', out, re.M)]
    if len(rps) != 2:
        raise RuntimeError("redis-benchmark said: " + out[-800:])
    return sum(rps) / 2


def wrk(env, port, path, secs, close=False, conns=20):
    """wrk, one thread, conns connections kept alive (or a new connection
    per request with close): requests per second. Any socket error or
    non-2xx reply fails the run."""
    cmd = PIN_CLIENT + ["wrk", "-t", "1", "-c", str(conns), "-d", "%gs" % secs, "--timeout", "5s"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = env.run(cmd + ["http://127.0.0.1:%d%s" % (port, path)], inside=True)
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    done = re.search(r"^\s*(\d+) requests in", out, re.M)
    if not done or not int(done.group(1)):
        raise RuntimeError("wrk completed no request: " + out[-800:])
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if not m or bad or (err and (sum(map(int, err.groups())) if not close else
                                 int(err.group(1)) + int(err.group(3)) + int(err.group(4)))):
        raise RuntimeError("wrk said: " + out[-800:])
    return float(m.group(1))


def memaslap(env, port, secs):
    """memaslap (libmemcached-tools' memcaslap), its default mix (9 gets to
    1 set, 64-byte keys, 1 KiB values), one thread, 16 connections:
    operations per second."""
    out = env.run(PIN_CLIENT + ["memcaslap", "-s", "127.0.0.1:%d" % port, "-T", "1", "-c", "16",
                                "-t", "%ds" % secs], inside=True)
    m = re.search(r"^Run time: [\d.]+s Ops: (\d+) TPS: (\d+)", out, re.M)
    if not m or int(m.group(1)) == 0:
        raise RuntimeError("memaslap said: " + out[-800:])
    return float(m.group(2))


def pgbench(env, pg, port, secs, select_only):
    """pgbench, 4 clients, one thread: transactions per second (excluding
    connection set-up). -S: select-only; else the default TPC-B-like."""
    cmd = PIN_CLIENT + [os.path.join(pg.bin, "pgbench"), "-n", "-c", "4", "-j", "1", "-T",
                        str(secs)] + (["-S"] if select_only else []) + pg.conn(port)
    out = env.run(cmd, inside=True)
    m = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", out, re.M)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if not m or (failed and int(failed.group(1))):
        raise RuntimeError("pgbench said: " + out[-800:])
    return float(m.group(1))


def smtp_burst(env, port, workers, messages):
    """A burst of messages through the recording SMTP server: workers
    connections, each sending messages messages (smtplib): messages per
    second. The server's recording is checked for every message."""
    out = env.run(PIN_CLIENT + [sys.executable, os.path.join(HERE, "smtp-burst.py"), str(port),
                                str(workers), str(messages)], inside=True)
    return float(out.split()[0])
