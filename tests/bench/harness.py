"""make bench's harness: the private cgroups, pins and scratch directory,
the firewalls measured (policyd, the socket map alone, iptables), the
rounds in which they alternate, and the retries of measurements the
machine disturbed. Used by tests/bench/bench.py and profiles.py.
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, os.environ.get("O", "build"))
POLICYD = os.path.join(BUILD, "policyd")
QUICK = os.environ.get("PD_BENCH_QUICK") == "1"
# where results.md and the plots (OUT) and every figure they are made
# from (SAVED, which PD_BENCH_REPORT=1 writes them again from) go: a
# smoke run's never replace the published ones or the last full run's
if QUICK:
    OUT = FIGURES = os.path.join(BUILD, "bench", "quick")
else:
    OUT, FIGURES = os.path.join(ROOT, "tests", "bench"), os.path.join(BUILD, "bench")
SAVED = os.path.join(FIGURES, "results.json")
ROUNDS = int(os.environ.get("PD_BENCH_ROUNDS", "1" if QUICK else "5"))
SCALE = 0.1 if QUICK else 1.0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


sys.path.insert(0, os.path.join(ROOT, "tests"))
import pdtest                     # noqa: E402  (the end-to-end tests' cgroup and cleanup)


def _kill_cgroup(path):
    """SIGKILL every process left in cgroup path (ours), then remove it."""
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            for pid in f.read().split():
                os.kill(int(pid), signal.SIGKILL)
    except OSError:
        pass
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


class Env(pdtest.Env):
    """The tests' private cgroup (the policed one: programs are attached
    to it), pins and scratch directory, and a second cgroup of ours
    beside it, with nothing attached, for everything else the bench
    starts (servers, proxies, policyd itself): with the two, the CPU time
    of everything the bench runs is known, and what the rest of the
    machine took during a measurement too. Servers that need stopping
    in a particular way register a stopper; every exit path runs them,
    then stops what is left, removes the iptables rules, the pins and
    both cgroups."""

    def __init__(self):
        self.stoppers = []
        super().__init__("bench", host_ns="tests/bench/run.sh runs the bench in a network "
                         "namespace of its own already, with its sysctls")
        self.others = self.cgroup + "-servers"
        os.mkdir(self.others)

    def start(self, cmd, inside=False, **kw):
        where = self.cgroup if inside else self.others
        cmd = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', where] + cmd
        return super().start(cmd, **kw)

    def run(self, cmd, inside=False, timeout=600):
        p = self.start(cmd, inside, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("%s failed: %s" % (cmd[0] if cmd[0] != "taskset" else cmd[3],
                                                  (err.strip() or out.strip())[-800:]))
        return out

    def cpu_usec(self):
        """CPU time used so far by the processes of both our cgroups."""
        total = 0
        for cg in (self.cgroup, self.others):
            with open(os.path.join(cg, "cpu.stat")) as f:
                total += int(f.readline().split()[1])      # usage_usec
        return total

    def cleanup(self):
        ENV.clear()
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception as e:          # noqa: BLE001  (the rest must still go)
                log("cleanup: %s" % e)
        iptables_flush()
        super().cleanup()
        _kill_cgroup(self.others)
        # the socket map's pins, if a run stopped while it was attached
        # (the cgroup it was attached to is gone by now)
        shutil.rmtree(self.pin_dir + "-pass", ignore_errors=True)


def wait_port(port, timeout=10, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError("%s exited (%d) before it listened on %d" % (
                    " ".join(proc.args[4:]), proc.returncode, port))
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


def wait_listen(port, timeout=10):
    """Wait until a socket listens on 127.0.0.1:port, without connecting
    to it (/proc/net/tcp): iperf3's server takes any connection for a
    test's control connection, and a probe racing the client's own makes
    the client fail now and then on a loaded machine."""
    want = "0100007F:%04X" % port
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                x = line.split()
                if x[1] == want and x[3] == "0A":
                    return
        time.sleep(0.02)
    raise RuntimeError("nothing listens on %d" % port)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# Client and server each on a CPU of their own (iperf3 pins itself):
# left to the scheduler, they share one in some runs and not in others,
# and one configuration's figures differ by a third.
TWO_CPUS = (os.cpu_count() or 1) >= 2
AFFINITY = ["-A", "0,1"] if TWO_CPUS else []
PIN_CLIENT = ["taskset", "-c", "0"] if TWO_CPUS else []
PIN_SERVER = ["taskset", "-c", "1"] if TWO_CPUS else []


# --- the firewalls -----------------------------------------------------

def iptables_flush():
    subprocess.run(["iptables", "-F", "OUTPUT"], capture_output=True)


def iptables_string(port, patterns):
    """One OUTPUT rule per pattern, as users write them: -m string --algo
    bm --icase, reset the connection. Loaded with iptables-restore. The
    search starts past the IPv4 and TCP headers (52 bytes with the
    timestamp option Linux sends): searched from 0, random header bytes
    match the 4-byte patterns now and then and reset a client."""
    lines = ["*filter", ":OUTPUT ACCEPT [0:0]"]
    for p in patterns:
        lines.append("-A OUTPUT -p tcp --dport %d -m string --algo bm --icase --from 52 --hex-string "
                     "\"|%s|\" -j REJECT --reject-with tcp-reset" % (port, p.hex()))
    lines.append("COMMIT")
    subprocess.run(["iptables-restore"], input="\n".join(lines) + "\n", text=True, check=True)


class Policyd:
    def __init__(self, env, conf):
        self.env = env
        self.log = os.path.join(env.tmp, "policyd.log")
        self.logf = open(self.log, "w")
        self.t0 = time.time()
        self.p = env.start([POLICYD, "run", "-c", conf, "--cgroup", env.cgroup, "--pin-dir",
                            env.pin_dir, "--foreground"], stdout=self.logf, stderr=self.logf)
        deadline = time.time() + 60
        while time.time() < deadline:
            if "started:" in self.text():
                self.ready = time.time() - self.t0
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.01)
        self.logf.close()
        raise RuntimeError("policyd did not start: " + self.text())

    def text(self):
        with open(self.log) as f:
            return f.read()

    def stats(self):
        """policyd stats --json, from the pins of this instance."""
        return json.loads(subprocess.run([POLICYD, "stats", "--pin-dir", self.env.pin_dir,
                                          "--json"], check=True, capture_output=True,
                                         text=True).stdout)

    def judged(self):
        """Messages judged per service (rules and default together), and
        the data plane's trouble counters; raises if a service judged
        none: the figure would be that of no firewall."""
        st = self.stats()
        n = {}
        for d in st["defaults"]:
            n[d["service"]] = n.get(d["service"], 0) + d["messages"]
        for r in st["rules"]:
            n[r["service"]] = n.get(r["service"], 0) + r["messages"]
        idle = [s for s, v in n.items() if not v]
        if idle:
            raise RuntimeError("policyd judged no message of service %s: the figure would be "
                               "that of no firewall" % ", ".join(idle))
        return n, st["troubles"]

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=30)
        self.logf.close()


def patterns_of(conf):
    """The distinct byte strings a policy matches (contains and prefix)."""
    d = json.loads(subprocess.run([POLICYD, "dump", "--json", "-c", conf], check=True,
                                  capture_output=True, text=True).stdout)
    seen = []
    for s in d["services"]:
        for r in s["rules"]:
            if "hex" in r:
                b = bytes.fromhex(r["hex"])
                if b not in seen:
                    seen.append(b)
    return seen


def retarget(src, dst, port, **settings):
    """A copy of policy src on port, with service settings replaced."""
    text = open(src).read()
    text = re.sub(r"ports = \[[^\]]*\]", "ports = [ %d ]" % port, text)
    for k, v in settings.items():
        if re.search(r"\b%s = [^;]*;" % k, text):
            text = re.sub(r"\b%s = [^;]*;" % k, "%s = %s;" % (k, v), text)
        else:
            text = text.replace("ports = [ %d ];" % port, "ports = [ %d ]; %s = %s;" % (port, k, v))
    text = re.sub(r"daemon = \{[^}]*\};", "", text)
    text = text.replace("version = 1;", "version = 1;\ndaemon = { log_rate = 10; };", 1)
    with open(dst, "w") as f:
        f.write(text)
    return dst


FLOOR = "policyd, no byte patterns"
SOCKMAP = "socket map alone"
PASS_OBJ = os.path.join(BUILD, "bench", "pass.bpf.o")


SELF = "socket map, redirect to itself"


class SocketMap:
    """The kernel's socket-map path with nothing in it (tests/bench/pass.bpf.c),
    loaded and attached to the bench's cgroup with bpftool: the part of a
    policed send's cost that no sk_msg program can avoid. With redirect,
    every message goes out by a redirect to its own socket instead, as
    policyd lets out what it passes (SELF)."""

    def __init__(self, env, redirect=False):
        self.cgroup = env.cgroup
        self.dir = env.pin_dir + "-pass"
        self.names = ("add_self", "self") if redirect else ("add", "pass")
        os.makedirs(self.dir)
        try:
            self.bpftool("prog", "loadall", PASS_OBJ, self.dir + "/p", "pinmaps", self.dir + "/m")
            self.bpftool("prog", "attach", "pinned", self.dir + "/p/" + self.names[1],
                         "msg_verdict", "pinned", self.dir + "/m/socks")
            self.bpftool("cgroup", "attach", self.cgroup, "sock_ops", "pinned",
                         self.dir + "/p/" + self.names[0])
        except RuntimeError:
            self.stop(measured=False)
            raise

    @staticmethod
    def bpftool(*args, check=True):
        p = subprocess.run(["bpftool", "-j"] + list(args), capture_output=True, text=True)
        if check and p.returncode != 0:
            raise RuntimeError("socket map alone: bpftool %s %s: %s" % (
                args[0], args[1], (p.stderr or p.stdout).strip()))
        return p.stdout

    def added(self):
        """Connections the sock_ops program put in the socket map."""
        out = json.loads(self.bpftool("map", "lookup", "pinned", self.dir + "/m/added",
                                      "key", "0", "0", "0", "0"))
        return int(out["formatted"]["value"])

    def prog_ids(self):
        return [json.loads(self.bpftool("prog", "show", "pinned", self.dir + "/p/" + n))["id"]
                for n in self.names]

    def stop(self, measured=True):
        try:
            add = self.dir + "/p/" + self.names[0]
            if os.path.exists(add):
                n = self.added() if measured else 1
                self.bpftool("cgroup", "detach", self.cgroup, "sock_ops", "pinned", add,
                             check=False)
                if not n:
                    raise RuntimeError("socket map alone: no connection was put in the socket "
                                       "map; the figure would be that of no firewall")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def floor_conf(env, port):
    """A policy that reads no byte (no byte pattern, framing none): what is
    left is the kernel's socket-map path and the program's fixed work."""
    path = os.path.join(env.tmp, "floor-%d.conf" % port)
    with open(path, "w") as f:
        f.write('version = 1;\nservices = ({ name = "floor"; ports = [ %d ]; direction = "to"; '
                'rules = ({ id = 1; action = "deny"; longer_than = 1000000000; }); });\n' % port)
    return path


def with_firewall(env, kind, port, conf, patterns, fn):
    """Run fn() under one configuration: 'none', 'iptables', 'policyd' or
    SOCKMAP."""
    pd = None
    if kind == "iptables":
        iptables_string(port, patterns)
    elif kind == "policyd":
        pd = Policyd(env, conf)
    elif kind == SOCKMAP:
        pd = SocketMap(env)
    try:
        v = fn()
        if kind == "policyd":
            pd.judged()
        return v
    finally:
        if pd:
            pd.stop()
        iptables_flush()


# --- measurements the machine disturbed ----------------------------------

# On a virtual machine the host runs other guests on the same cores, and
# the time it takes from ours ("steal") comes and goes in phases of
# seconds: iperf3 on loopback measured 28 Gbit/s with none stolen and
# 17-22 with 15-26 % stolen, minutes apart, with nothing else changed. On
# a machine shared with other users, their processes take CPU time from
# the bench's in the same way. A measurement during which more than
# STEAL_MAX % of the CPU time was stolen, or more than BUSY_MAX % of it
# went to processes that are not the bench's, is made again, up to TRIES
# times in all, a little later, and the least disturbed one kept. On a
# machine that others keep busy for long, that would make every
# measurement TRIES times: measurements made again are at most a quarter
# of those made (AGAIN_SHARE), so that a run takes at most that much
# longer, and results.md says how disturbed the kept ones were.
STEAL_MAX = float(os.environ.get("PD_BENCH_STEAL_MAX", "5"))
BUSY_MAX = float(os.environ.get("PD_BENCH_BUSY_MAX", "10"))
TRIES = int(os.environ.get("PD_BENCH_TRIES", "3"))
AGAIN_SHARE = 0.25
STEAL = {"kept": [], "again": 0, "busy": [], "busy_again": 0}
ENV = []        # the Env whose cgroups hold the bench's processes


def cpu_ticks():
    """(all CPU time, stolen, busy outside interrupts) so far, in ticks,
    from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    return sum(v[:8]), steal, user + nice + system


def own_usec():
    """CPU time of the bench's own processes so far (both cgroups and this
    one), in microseconds."""
    t = os.times()
    return (ENV[0].cpu_usec() if ENV else 0) + int((t.user + t.system) * 1e6)


TICK = os.sysconf("SC_CLK_TCK")


def calm(fn, what):
    """fn() made again while the machine disturbed it (above); the least
    disturbed result. Interrupt time (the loopback's packets) is counted
    as the bench's."""
    best = None
    for k in range(TRIES):
        t0, s0, b0 = cpu_ticks()
        o0 = own_usec()
        v = fn()
        t1, s1, b1 = cpu_ticks()
        o1 = own_usec()
        span = max(1, t1 - t0)
        st = 100.0 * (s1 - s0) / span
        busy = max(0.0, 100.0 * ((b1 - b0) - (o1 - o0) * TICK / 1e6) / span)
        worse = st / STEAL_MAX + busy / BUSY_MAX
        if best is None or worse < best[3]:
            best = (v, st, busy, worse)
        if st <= STEAL_MAX and busy <= BUSY_MAX:
            break
        again = STEAL["again"] + STEAL["busy_again"]
        if k + 1 < TRIES and again < AGAIN_SHARE * (len(STEAL["kept"]) + 1) + 2:
            if st > STEAL_MAX:
                STEAL["again"] += 1
            else:
                STEAL["busy_again"] += 1
            log("  %s: %.0f %% of the CPU time stolen, %.0f %% used by other processes, "
                "measured again" % (what, st, busy))
            time.sleep(2)       # phases of steal last seconds
    STEAL["kept"].append(best[1])
    STEAL["busy"].append(best[2])
    return best[0]


def steal_line(st):
    s = ("Time the hypervisor took from this machine's CPUs (steal, /proc/stat) during the "
         "%d measurements kept: median %.1f %%, at most %.1f %%." % (
             len(st["kept"]), median(st["kept"]), max(st["kept"])))
    if st.get("busy"):
        s += (" CPU time used by processes other than the bench's (other users of the machine; "
              "/proc/stat less the bench's cgroups and interrupts): median %.1f %%, at most "
              "%.1f %%." % (median(st["busy"]), max(st["busy"])))
    s += (" A measurement during which more than %.0f %% was stolen or more than %.0f %% went "
          "to other processes was made again, up to %d times in all, keeping the least "
          "disturbed, while those made again were fewer than a quarter of all: %d were "
          "made again for steal, %d for other processes." % (
              STEAL_MAX, BUSY_MAX, TRIES, st["again"], st.get("busy_again", 0)))
    return s


# --- rounds ----------------------------------------------------------------

def median(xs):
    return statistics.median(xs) if xs else float("nan")


def rounds(kinds, measure, n):
    """n rounds of measure(kind, round) for every kind. 'none' is measured
    at the start and at the end of each round, and its figure for the
    round is the mean of the two: every ratio of the round is then taken
    against the baseline on both sides of it in time. The kinds between
    run in the reverse order every other round."""
    got = {k: [] for k in kinds}
    mid = [k for k in kinds if k != "none"]
    for r in range(n):
        a = measure("none", r)
        for k in (mid if r % 2 == 0 else mid[::-1]):
            got[k].append(measure(k, r))
        got["none"].append((a + measure("none", r)) / 2)
    return got


def paired(xs, base):
    """The median of the per-round ratios xs[i] / base[i]."""
    return median([x / b for x, b in zip(xs, base)])
