"""make bench's profile rows: each profile of policy-examples/ on the real
workload it is written for, with no firewall, the socket map alone,
policyd and (for Redis and HTTP) HAProxy in TCP mode with the same deny
patterns, alternating in every round; the connection rate with and
without policyd; and, for every row, where the time goes: the BPF
programs' own run time (BPF_ENABLE_STATS), and a perf profile of the
rows that miss their target. Sections: redis-all, http, memcached,
postgres, smtp, connrate, protocols (PD_BENCH_ONLY, comma-separated;
"profiles" for all of them). redis-all's profile, redis.conf, is on
framing resp; protocols adds the strict allow list on resp and HTTP
requests parsed by framing http.
"""
import json
import math
import os
import re
import signal
import subprocess
import time

import workloads as w
from pdtest import BpfStats
from harness import (POLICYD, QUICK, SELF, SOCKMAP, Policyd, SocketMap, calm, log, median, paired,
                     rounds)

SECS = 1 if QUICK else 2
PROUNDS = int(os.environ.get("PD_BENCH_PROFILE_ROUNDS", "2" if QUICK else "6"))
HAPROXY = "HAProxy"
NONE = "none"
SECTIONS = ("redis-all", "http", "memcached", "postgres", "smtp", "connrate", "protocols")

# targets: (what the figure is divided by, at least)
REQRESP = (SOCKMAP, 0.97)
# a reply the profile reads to its end (secrets-egress's inspect = 0)
EVERYBYTE = (SOCKMAP, 0.75)
# secrets-egress's inspect on a busy static file server (its comment)
INSPECT_CAP = 4096
# wrk's keep-alive rows under http-client and secrets-egress as written
# (inspect = 0: a reply is read to its end, so the 64 KiB one is held to
# the every-byte target): path, reply size, target
HTTP_ROWS = (("/small", "612-byte", REQRESP), ("/64k", "64 KiB", EVERYBYTE))
CONNRATE = (NONE, 0.90)


# --- the programs' own time ------------------------------------------------

def prog_table():
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {p["id"]: p for p in json.loads(out)}


def policyd_prog_ids(env):
    """The programs that use the maps policyd pinned (whatever programs
    the policyd in the tree loads)."""
    maps = set()
    for f in os.listdir(env.pin_dir):
        out = subprocess.run(["bpftool", "-j", "map", "show", "pinned",
                              os.path.join(env.pin_dir, f)], capture_output=True, text=True)
        if out.returncode == 0:
            maps.add(json.loads(out.stdout)["id"])
    if not maps:
        raise RuntimeError("no map pinned in " + env.pin_dir)
    ids = {i for i, p in prog_table().items() if maps & set(p.get("map_ids", []))}
    # and every program attached to the policed cgroup: the boundary's
    # cgroup programs (egress, socket creation, connect, setsockopt) keep
    # their state in socket storage, which is not pinned
    out = subprocess.run(["bpftool", "-j", "cgroup", "show", env.cgroup],
                         capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        ids |= {a["id"] for a in json.loads(out.stdout)}
    return sorted(ids)


def program_times(env, kind, conf, fn, port):
    """One run of fn(port) under kind (SOCKMAP, SELF or policyd) with the
    programs' statistics on: [(program, type, runs, ns per run)], the
    programs' total ns, and the run's wall-clock seconds."""
    fw = Policyd(env, conf) if kind == "policyd" else SocketMap(env, kind == SELF)
    try:
        ids = policyd_prog_ids(env) if kind == "policyd" else fw.prog_ids()
        with BpfStats():
            before = prog_table()
            t = time.time()
            fn(port)
            wall = time.time() - t
            after = prog_table()
    finally:
        fw.stop()
    rows = []
    total = 0
    for i in ids:
        a, b = after.get(i, {}), before.get(i, {})
        runs = a.get("run_cnt", 0) - b.get("run_cnt", 0)
        ns = a.get("run_time_ns", 0) - b.get("run_time_ns", 0)
        if runs:
            rows.append((a["name"], a["type"], runs, ns / runs))
            total += ns
    return {"programs": rows, "total_ns": total, "wall": wall}


# --- perf ----------------------------------------------------------------------

# On this kind of virtual machine a timer sample cannot land where
# interrupts are off; it lands where they come back on. Such samples are
# given to the function that turned them back on.
IRQ_ON = re.compile(r"^(pvm_irq_enable|__raw_callee_save_pvm_irq_enable|native_irq_enable|"
                    r"_raw_spin_unlock_irq(restore)?|__local_bh_enable_ip|local_bh_enable|"
                    r"finish_task_switch.*|arch_local_irq_enable)$")
SOCKMAP_PATH = re.compile(r"^(tcp_bpf_|sk_msg_|__sk_msg_|sk_psock|__sk_psock|bpf_msg_|sock_map_|"
                          r"sock_hash_|bpf_sk_|sk_skb_)")


def perf_ok():
    return subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-o", "/dev/null", "true"],
                          capture_output=True).returncode == 0


def perf_profile(env, kind, conf, fn, port, comms):
    """One run of fn(port) under kind with perf sampling every CPU (timer,
    call chains); the samples of the workload's own processes (comms),
    each given to its leaf function: {symbol: share}, and the shares of
    the BPF programs and of the kernel's socket-map functions."""
    data = os.path.join(env.tmp, "perf-%s.data" % kind.replace(" ", "-"))
    fw = None
    if kind == "policyd":
        fw = Policyd(env, conf)
    elif kind == SOCKMAP:
        fw = SocketMap(env)
    try:
        rec = env.start(["perf", "record", "-q", "-a", "-g", "-e", "cpu-clock", "-F", "1999",
                         "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        fn(port)
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=60)
    finally:
        if fw:
            fw.stop()
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym", "--comms",
                          ",".join(comms)], capture_output=True, text=True).stdout
    os.unlink(data)
    counts = {}
    n = 0
    for block in out.split("\n\n"):
        lines = block.strip("\n").split("\n")
        if len(lines) < 2:
            continue
        sym = None
        for fr in lines[1:]:
            parts = fr.split(None, 1)
            s = parts[1].strip() if len(parts) > 1 else "[unknown]"
            if not IRQ_ON.match(s):
                sym = s
                break
        sym = sym or "[irq on]"
        counts[sym] = counts.get(sym, 0) + 1
        n += 1
    if not n:
        return None
    share = {s: c / n for s, c in counts.items()}
    return {"samples": n, "share": share,
            "bpf": sum(v for s, v in share.items() if s.startswith("bpf_prog_")),
            "sockmap": sum(v for s, v in share.items() if SOCKMAP_PATH.match(s))}


# --- rows ------------------------------------------------------------------------

def calibrate(fn, n0, secs):
    """A request count for count-bounded clients such that one run takes
    about secs seconds with no firewall (measured once with n0)."""
    t = time.time()
    fn(n0)
    n = n0 * secs / max(0.05, time.time() - t)
    mag = 10 ** max(0, int(math.log10(max(n, 1))) - 1)
    return max(n0 // 10, int(round(n / mag) * mag))


# a second policyd configuration measured in the same rounds (the byte
# version of a profile beside the profile on its protocol framing)
ALT = "policyd, byte patterns"
# the redirect to itself (SELF) as a configuration of every row's rounds
# too, beside the socket map alone: what that way of passing costs in
# throughput (PD_BENCH_SELF=1; off by default, it lengthens every row)
SELF_ROWS = os.environ.get("PD_BENCH_SELF") == "1"
# what SELF is, for the report, and its short name
SELF_WHAT = ("every message let out by a redirect to the socket itself, the way policyd "
             "passes, and nothing else (tests/bench/pass.bpf.c's `self`)")
SELF_SHORT = "redirect to itself"


def measure_row(env, row, conf, fn, port, hport=None, alt=None):
    """Fill row with the rounds of fn(port) under every kind (HAProxy on
    hport; alt, a second policy, as kind ALT; SELF with PD_BENCH_SELF=1),
    the programs' own time, and perf profiles if the target is missed."""
    kinds = [NONE, SOCKMAP] + ([SELF] if SELF_ROWS else []) + ["policyd"] + \
        ([HAPROXY] if hport else []) + ([ALT] if alt else [])
    row["kinds"] = kinds
    row["troubles"] = {}
    row["judged"] = []

    def one(kind, r):
        if kind == NONE:
            v = calm(lambda: fn(port), row["title"])
        elif kind == HAPROXY:
            v = calm(lambda: fn(hport), row["title"])
        elif kind in (SOCKMAP, SELF):
            sm = SocketMap(env, kind == SELF)
            try:
                v = calm(lambda: fn(port), row["title"])
            finally:
                sm.stop()
        else:
            pd = Policyd(env, alt if kind == ALT else conf)
            try:
                v = calm(lambda: fn(port), row["title"])
                judged, troubles = pd.judged()
                row["judged"].append(judged)
                for k, x in troubles.items():
                    row["troubles"][k] = row["troubles"].get(k, 0) + x
            finally:
                pd.stop()
        log("%s round %d %-18s %12.1f %s" % (row["title"], r + 1, kind, v, row["unit"]))
        return v

    row["got"] = rounds(kinds, one, PROUNDS)
    summarize(row)
    row.update(where(env, conf, fn, port, not row["met"], row["comms"]))
    log(row_line(row))
    return row


PERF = os.environ.get("PD_BENCH_PERF", "0" if QUICK else "1") == "1"


def where(env, conf, fn, port, missed, comms):
    """Where the time goes under policyd and under the socket map alone:
    the programs' own time (always; also with every message redirected
    to its own socket and nothing else, SELF, the way policyd passes) and
    perf profiles (when a target was missed and perf works here; not in
    quick runs unless PD_BENCH_PERF=1)."""
    res = {"times": {}, "perf": {}}
    for kind in (SOCKMAP, SELF, "policyd"):
        try:
            res["times"][kind] = program_times(env, kind, conf, fn, port)
        except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
            res["times"][kind] = {"error": str(e)}
    if missed and PERF and perf_ok():
        for kind in (SOCKMAP, "policyd"):
            res["perf"][kind] = perf_profile(env, kind, conf, fn, port, comms)
    return res


def summarize(row):
    g = row["got"]
    base, at_least = row["target"]
    row["ratio"] = {k: paired(g[k], g[NONE]) for k in row["kinds"]}
    row["vs_sockmap"] = paired(g["policyd"], g[SOCKMAP])
    row["figure"] = paired(g["policyd"], g[base])
    row["met"] = row["figure"] >= at_least
    if HAPROXY in g:
        row["vs_haproxy"] = paired(g["policyd"], g[HAPROXY])
        row["met_haproxy"] = row["vs_haproxy"] > 1.0
    if ALT in g:
        row["vs_alt"] = paired(g["policyd"], g[ALT])
    if SELF in g:
        row["vs_self"] = {k: paired(g[k], g[SELF if k == "policyd" else SOCKMAP])
                          for k in (SELF, "policyd")}


def base_name(base):
    return "the socket map alone" if base == SOCKMAP else "no firewall"


def row_line(row):
    g = row["got"]
    base, at_least = row["target"]
    s = "%s: no firewall %s %s; socket map alone %.3f; policyd %.3f of no firewall, " \
        "%.3f of %s (target >= %.2f: %s)" % (
            row["title"], fmt(median(g[NONE])), row["unit"], row["ratio"][SOCKMAP],
            row["ratio"]["policyd"], row["figure"], base_name(base), at_least,
            "met" if row["met"] else "MISSED")
    if HAPROXY in g:
        s += "; HAProxy %.3f of no firewall, policyd / HAProxy %.2f (%s)" % (
            row["ratio"][HAPROXY], row["vs_haproxy"], "ahead" if row["met_haproxy"] else "BEHIND")
    if ALT in g:
        s += "; byte patterns %.3f of no firewall, policyd / byte patterns %.3f" % (
            row["ratio"][ALT], row["vs_alt"])
    if SELF in g:
        s += "; %s %.3f of the socket map alone, policyd %.3f of it" % (
            SELF_SHORT, row["vs_self"][SELF], row["vs_self"]["policyd"])
    return s


def fmt(v):
    return "{:,.0f}".format(v) if v >= 100 else "{:,.1f}".format(v)


# --- sections ------------------------------------------------------------------

def new_row(key, short, title, unit, profile, comms, target=REQRESP):
    return {"key": key, "short": short, "title": title, "unit": unit, "profile": profile,
            "comms": comms, "target": target}


def sec_redis_all(env, rows, configs):
    red, port = w.start_redis(env)
    conf = w.profile_policy(os.path.join(env.tmp, "p-redis.conf"), port, ["redis"])
    hap = w.HAProxy(env, POLICYD, conf, port)
    hap.check(b"*1\r\n$8\r\nFLUSHALL\r\n", b"*1\r\n$4\r\nPING\r\n", b"+PONG")
    configs["Redis"] = hap
    # the profile as it was on framing none, in the same rounds
    alt = w.profile_policy(os.path.join(env.tmp, "p-redis-bytes.conf"), port, [BYTES])
    try:
        for pipeline in (1, 16):
            n = calibrate(lambda k: w.redis_default(env, port, pipeline, k),
                          500 if pipeline == 1 else 5000, 1.5 * SECS)
            row = new_row("redis-default-P%d" % pipeline, "Redis -P %d" % pipeline,
                          "redis-benchmark, its default tests, -P %d" % pipeline,
                          "req/s", "redis", ["redis-benchmark", "redis-server"])
            row["detail"] = "50 clients, %d requests per test; the geometric mean of the " \
                            "tests' requests per second" % n
            rows.append(measure_row(env, row, conf,
                                    lambda p: w.redis_default(env, p, pipeline, n), port,
                                    hap.port, alt))
    finally:
        hap.stop()
        red.terminate()
        red.wait()


def secrets_egress_text():
    """secrets-egress.conf as written, which HTTP_ROWS's targets and the
    inspect = INSPECT_CAP row take to read every byte (inspect = 0)."""
    with open(os.path.join(w.EXAMPLES, "secrets-egress.conf")) as f:
        text = f.read()
    if "inspect = 0;" not in text:
        raise RuntimeError("secrets-egress.conf has no 'inspect = 0;': the http rows' targets "
                           "and the inspect = %d row take it to read every byte" % INSPECT_CAP)
    return text


def sec_http(env, rows, configs):
    text = secrets_egress_text()
    ngx = w.Nginx(env, inside=True)
    conf = w.profile_policy(os.path.join(env.tmp, "p-http.conf"), ngx.port,
                            ["http-client", "secrets-egress"])
    hap = w.HAProxy(env, POLICYD, conf, ngx.port)
    hap.check(b"GET /../etc/passwd HTTP/1.0\r\n\r\n", b"GET /small HTTP/1.0\r\n\r\n",
              b"200 OK")
    hap.check(b"GET /secret HTTP/1.0\r\n\r\n", b"GET /small HTTP/1.0\r\n\r\n", b"200 OK")
    configs["nginx"] = hap
    try:
        for path, what, target in HTTP_ROWS:
            row = new_row("http-%s" % path[1:], "nginx %s" % what.replace("-byte", " B"),
                          "wrk against nginx, keep-alive, %s replies"
                          % what, "req/s", "http-client (wrk) + secrets-egress (nginx)",
                          ["wrk", "nginx"], target)
            row["detail"] = "1 thread, 20 connections, %d s" % SECS
            rows.append(measure_row(env, row, conf,
                                    lambda p, path=path: w.wrk(env, p, path, SECS), ngx.port,
                                    hap.port))
        # the profile as its comment says to adapt it to a busy static
        # file server: inspect set, so that a large reply is read up to
        # there (in each of the sends it is made of) and not to its end
        capped = os.path.join(env.tmp, "secrets-egress-%d.conf" % INSPECT_CAP)
        with open(capped, "w") as f:
            f.write(text.replace("inspect = 0;", "inspect = %d;" % INSPECT_CAP))
        conf = w.profile_policy(os.path.join(env.tmp, "p-http-capped.conf"), ngx.port,
                                ["http-client", capped])
        row = new_row("http-64k-inspect", "nginx 64 KiB, inspect %d" % INSPECT_CAP,
                      "wrk against nginx, keep-alive, 64 KiB replies, secrets-egress with "
                      "inspect = %d" % INSPECT_CAP, "req/s",
                      "http-client (wrk) + secrets-egress, inspect = %d (nginx)" % INSPECT_CAP,
                      ["wrk", "nginx"])
        row["detail"] = "1 thread, 20 connections, %d s" % SECS
        rows.append(measure_row(env, row, conf, lambda p: w.wrk(env, p, "/64k", SECS),
                                ngx.port, hap.port))
    finally:
        hap.stop()
        ngx.stop()


def sec_memcached(env, rows, configs):
    mc, port = w.start_memcached(env)
    conf = w.profile_policy(os.path.join(env.tmp, "p-memcached.conf"), port, ["memcached"])
    try:
        row = new_row("memcached", "memcached", "memaslap against memcached", "ops/s", "memcached",
                      ["memcaslap", "memcached"])
        row["detail"] = "its default mix (9 gets to 1 set, 64-byte keys, 1 KiB values), " \
                        "1 thread, 16 connections, %d s" % SECS
        rows.append(measure_row(env, row, conf, lambda p: w.memaslap(env, p, SECS), port))
    finally:
        mc.terminate()
        mc.wait()


def sec_postgres(env, rows, configs):
    pg = w.Postgres(env)
    conf = w.profile_policy(os.path.join(env.tmp, "p-postgres.conf"), pg.port, ["postgres"])
    try:
        for sel, what in ((True, "select-only (-S)"), (False, "TPC-B-like (default)")):
            row = new_row("pgbench-%s" % ("select" if sel else "tpcb"),
                          "pgbench %s" % ("-S" if sel else "TPC-B"), "pgbench, %s" % what,
                          "tps", "postgres", ["pgbench", "postgres"])
            # at least 2 s: on a loaded machine pgbench's 4 connections
            # can take most of a second to set up
            secs = max(2, SECS)
            row["detail"] = "4 clients, 1 thread, %d s, scale %d" % (secs, pg.SCALE)
            rows.append(measure_row(env, row, conf,
                                    lambda p, sel=sel: w.pgbench(env, pg, p, secs, sel),
                                    pg.port))
    finally:
        pg.stop()


def sec_smtp(env, rows, configs):
    srv, port = w.start_smtp(env)
    conf = w.profile_policy(os.path.join(env.tmp, "p-smtp.conf"), port, ["smtp"])
    try:
        n = calibrate(lambda k: w.smtp_burst(env, port, 4, k), 50, SECS)
        row = new_row("smtp", "SMTP", "a burst of mail through an SMTP server", "msg/s", "smtp",
                      ["python3"])
        row["detail"] = "4 smtplib clients, %d messages each on one connection, 2 KiB each, " \
                        "into a recording server (Python asyncio)" % n
        rows.append(measure_row(env, row, conf, lambda p: w.smtp_burst(env, p, 4, n), port))
    finally:
        srv.terminate()
        srv.wait()


def sec_connrate(env, rows, configs):
    red, port = w.start_redis(env)
    conf = w.profile_policy(os.path.join(env.tmp, "c-redis.conf"), port, ["redis"])
    try:
        n = calibrate(lambda k: w.redis_connrate(env, port, k), 1000, SECS)
        row = new_row("conn-redis", "conn/s Redis", "new connections: redis-benchmark -k 0",
                      "conn/s", "redis", ["redis-benchmark", "redis-server"], CONNRATE)
        row["detail"] = "a connection per request, SET and GET, 20 clients, %d requests" % n
        rows.append(measure_row(env, row, conf, lambda p: w.redis_connrate(env, p, n), port))
    finally:
        red.terminate()
        red.wait()
    ngx = w.Nginx(env, inside=True)
    conf = w.profile_policy(os.path.join(env.tmp, "c-http.conf"), ngx.port,
                            ["http-client", "secrets-egress"])
    try:
        row = new_row("conn-http", "conn/s nginx", "new connections: wrk, Connection: close",
                      "conn/s", "http-client (wrk) + secrets-egress (nginx)", ["wrk", "nginx"],
                      CONNRATE)
        row["detail"] = "a connection per request, 612-byte replies, 1 thread, 20 " \
                        "connections at a time, %d s" % SECS
        rows.append(measure_row(env, row, conf,
                                lambda p: w.wrk(env, p, "/small", SECS, close=True), ngx.port))
    finally:
        ngx.stop()


BYTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "redis-bytes.conf")


def sec_protocols(env, rows, configs):
    """The protocol framings beyond redis-all: redis-strict.conf (an allow
    list of data commands on framing resp; redis-benchmark's two CONFIG
    GETs are refused, its tests run) and, to compare framing resp with
    byte patterns, redis.conf as it was on framing none
    (tests/bench/redis-bytes.conf), each with -P 1 and -P 16; and wrk's
    requests to nginx through http-strict.conf (framing http)."""
    red, port = w.start_redis(env)
    try:
        for name, key, what in (("redis-strict", "resp-strict", "framing resp allow list"),
                                (BYTES, "redis-bytes", "byte patterns (framing none)")):
            conf = w.profile_policy(os.path.join(env.tmp, "p-%s.conf" % key), port, [name])
            for pipeline in (1, 16):
                n = calibrate(lambda k: w.redis_default(env, port, pipeline, k),
                              500 if pipeline == 1 else 5000, 1.5 * SECS)
                row = new_row("%s-P%d" % (key, pipeline),
                              "Redis %s -P %d" % (key.split("-")[1], pipeline),
                              "redis-benchmark, its default tests, -P %d, %s" % (pipeline, what),
                              "req/s", os.path.basename(name).replace(".conf", ""),
                              ["redis-benchmark", "redis-server"])
                row["detail"] = "50 clients, %d requests per test; the geometric mean of the " \
                                "tests' requests per second" % n
                rows.append(measure_row(env, row, conf,
                                        lambda p: w.redis_default(env, p, pipeline, n), port))
    finally:
        red.terminate()
        red.wait()
    ngx = w.Nginx(env, inside=False)
    conf = w.profile_policy(os.path.join(env.tmp, "p-http-strict.conf"), ngx.port,
                            ["http-strict"])
    try:
        row = new_row("http-parsed-small", "nginx 612 B, http",
                      "wrk against nginx, keep-alive, 612-byte replies, requests on framing http",
                      "req/s", "http-strict (wrk)", ["wrk", "nginx"])
        row["detail"] = "1 thread, 20 connections, %d s" % SECS
        rows.append(measure_row(env, row, conf, lambda p: w.wrk(env, p, "/small", SECS),
                                ngx.port))
    finally:
        ngx.stop()


RUN = {"redis-all": sec_redis_all, "http": sec_http, "memcached": sec_memcached,
       "postgres": sec_postgres, "smtp": sec_smtp, "connrate": sec_connrate,
       "protocols": sec_protocols}


def run(env, names):
    """The sections names: (rows, the HAProxy instances' configurations)."""
    rows, configs = [], {}
    for name in names:
        t = time.time()
        RUN[name](env, rows, configs)
        log("section %s: %.0f s" % (name, time.time() - t))
    return rows, {k: (h.config, h.patterns, h.checks) for k, h in configs.items()}


# --- report -------------------------------------------------------------------

def cell(row, kind):
    return "%s (%.3f)" % (fmt(median(row["got"][kind])), row["ratio"][kind])


def also_ran(L, rows, key, text):
    """A paragraph, text(those rows), on the configurations only some
    rows ran (their figures under key), if any did."""
    got = [row for row in rows if key in row]
    if got:
        L.append("")
        L.append(text(got))


def report(rows, configs):
    L = []
    L.append("| workload | profile | no firewall | socket map alone | policyd | HAProxy | "
             "policyd ÷ baseline | target | policyd ÷ HAProxy |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for row in rows:
        g = row["got"]
        base, at_least = row["target"]
        L.append("| %s | %s | %s %s | %s | %s | %s | **%.3f** | >= %.2f x %s: %s | %s |" % (
            row["title"], row["profile"], fmt(median(g[NONE])), row["unit"], cell(row, SOCKMAP),
            cell(row, "policyd"), cell(row, HAPROXY) if HAPROXY in g else "",
            row["figure"], at_least, base_name(base), "met" if row["met"] else "**missed**",
            ("%.2f (%s)" % (row["vs_haproxy"], "ahead" if row["met_haproxy"] else "**behind**"))
            if HAPROXY in g else ""))
    L.append("")
    L.append("Each cell: the median over the rounds, and in brackets the median of the "
             "per-round ratios to no firewall. policyd ÷ baseline: the median of the per-round "
             "ratios of policyd to the baseline the target names (the socket map alone for "
             "request/response, no firewall for new connections). %d rounds of %d s runs "
             "(count-bounded clients: a request count calibrated to about that long with no "
             "firewall)." % (PROUNDS, SECS))
    also_ran(L, rows, "vs_alt", lambda alts: (
        "Framing resp against byte patterns: the rows of the redis profile also ran, in the "
        "same rounds, redis.conf as it was on framing none (tests/bench/redis-bytes.conf). "
        "The median of the per-round ratios of the profile to that byte version: %s; the "
        "byte version's own figure: %s." % (
            ", ".join("%s **%.3f**" % (row["short"], row["vs_alt"]) for row in alts),
            ", ".join("%s %s" % (row["short"], cell(row, ALT)) for row in alts))))
    also_ran(L, rows, "vs_self", lambda selfs: (
        "%s (PD_BENCH_SELF=1): %s, in the same rounds. The medians of the per-round ratios "
        "of the redirect to the socket map alone, and of policyd to the redirect: %s." % (
            SELF[0].upper() + SELF[1:], SELF_WHAT,
            "; ".join("%s **%.3f** and %.3f" % (row["short"], row["vs_self"][SELF],
                                                row["vs_self"]["policyd"]) for row in selfs))))
    L.append("")
    L.append("What each workload runs:\n")
    for row in rows:
        L.append("- %s: %s." % (row["title"], row["detail"]))
    troubles = {}
    for row in rows:
        for k, v in row["troubles"].items():
            if v:
                troubles[k] = troubles.get(k, 0) + v
    moved = ["%s (%s)" % (row["title"], ", ".join("%s %d" % kv for kv in
                                                   sorted(row["troubles"].items()) if kv[1]))
             for row in rows if any(row["troubles"].values())]
    L.append("")
    L.append("Every policyd measurement was checked to have judged messages of every service "
             "of its policy (`policyd stats`); the data plane's trouble counters summed over "
             "all of them: %s." % (", ".join("%s %d" % kv for kv in sorted(troubles.items()))
                                   if troubles else "all zero"))
    if moved:
        L.append("")
        L.append("The rows they moved in (all of the row's policyd measurements, the second "
                 "policy's included): %s." % "; ".join(moved))
    L.append("")
    L.append("### Where the time goes\n")
    L.extend(times_table([(row["title"], row) for row in rows]))
    L.extend(perf_tables([(row["title"], row) for row in rows]))
    if configs:
        L.append("")
        L.append("### HAProxy's configuration\n")
        L.append("%s, one thread, TCP mode, in front of the same server on 127.0.0.1, the "
                 "clients connecting to it instead of the server. The profile's deny rules "
                 "become content rules: `contains` is `-m sub`, `prefix` is `-m beg` (under "
                 "line framing also `-m sub` of a newline and the prefix), `nocase` is `-i`; "
                 "rules on what the client sends are `tcp-request content` rules on "
                 "`req.payload(0,0)`, rules on what the server sends back (secrets-egress) "
                 "`tcp-response content` rules on `res.payload(0,0)`. In TCP mode HAProxy "
                 "judges the bytes that have arrived when the inspect delay (%d ms) ends or a "
                 "pattern matches, once per connection and direction: what is sent after that "
                 "passes unjudged (there are no message boundaries in TCP mode, and a "
                 "substring rule on a growing buffer can only be decided by the delay). The "
                 "delay counts from the connection's start (requests) or from the server's "
                 "connection (replies), so on a loaded machine a slow reply passes unjudged "
                 "too; a longer delay holds every connection's first request and reply that "
                 "long. So HAProxy here does less than policyd, which judges every send; what "
                 "it costs is mostly the proxying itself.\n" % (
                     w.haproxy_version(), w.HAPROXY_DELAY_MS))
        for name, (text, npat, checks) in configs.items():
            L.append("In front of %s, before the rounds: %s.\n" % (name, "; ".join(
                "`%s` refused %d times in %d" % tuple(c) for c in checks)))
            L.append("<details><summary>In front of %s (%d patterns)</summary>\n" % (name, npat))
            L.append("```\n%s```\n</details>\n" % text)
    return L


def times_table(items):
    """items: [(title, {"times": ...})]: the programs' own time (the column
    of SELF only where some item measured it)."""
    has_self = any(SELF in x["times"] for _, x in items)
    kinds = [SOCKMAP] + ([SELF] if has_self else []) + ["policyd"]
    L = ["The BPF programs' own run time, from one more run of each workload with the "
         "kernel's program statistics on (`BPF_ENABLE_STATS`, which adds some tens of ns to "
         "every run): per program, its runs and ns per run; and all programs' time as a "
         "share of the run's wall-clock time (of one CPU).%s\n" % (
             " %s: the socket map with %s. What it costs over the socket map alone, any "
             "program that passes that way pays; what pd_msg costs over it is policyd's "
             "judging." % (SELF, SELF_WHAT) if has_self else ""),
         "| workload | %s | programs' time, %s |" % (
             " | ".join(kinds), " → ".join(k.replace(SELF, SELF_SHORT) for k in kinds)),
         "| --- | %s---: |" % ("--- | " * len(kinds))]
    for title, x in items:
        t = x["times"]

        def progs(k):
            v = t.get(k)
            if not v:
                return ""
            if "error" in v:
                return "(%s)" % v["error"]
            return "<br>".join("%s (%s): %s runs, %s ns" % (n, ty, "{:,}".format(r), fmt(ns))
                               for n, ty, r, ns in v["programs"])

        def share(k):
            v = t.get(k, {})
            return "%.1f %%" % (100.0 * v["total_ns"] / 1e9 / v["wall"]) if "wall" in v else "?"
        L.append("| %s | %s | %s |" % (title, " | ".join(progs(k) for k in kinds),
                                       " → ".join(share(k) for k in kinds)))
    L.append("")
    return L


def perf_tables(items):
    """items: [(title, {"perf": ...})]: the perf profiles of those that
    have one (they missed their target)."""
    items = [(t, x["perf"]) for t, x in items
             if x.get("perf") and all(x["perf"].get(k) for k in (SOCKMAP, "policyd"))]
    if not items:
        return []
    L = ["Profiled with perf where the target was missed (timer samples on every CPU, call "
         "chains; the samples of the workload's own processes, each given to the function "
         "it was in or, where interrupts were off, to the one that turned them back on): the "
         "functions with the largest shares under policyd, beside their shares under the "
         "socket map alone; and the shares of all BPF programs and of the kernel's "
         "socket-map functions (`tcp_bpf_*`, `sk_msg_*`, `sk_psock*`, ...).\n"]
    for title, pf in items:
        a, b = pf[SOCKMAP], pf["policyd"]
        L.append("%s (%d and %d samples):\n" % (title, a["samples"], b["samples"]))
        L.append("| function | socket map alone | policyd |")
        L.append("| --- | ---: | ---: |")
        L.append("| BPF programs, all | %.1f %% | %.1f %% |" % (100 * a["bpf"], 100 * b["bpf"]))
        L.append("| the kernel's socket-map functions, all | %.1f %% | %.1f %% |" % (
            100 * a["sockmap"], 100 * b["sockmap"]))
        for s, v in sorted(b["share"].items(), key=lambda kv: -kv[1])[:12]:
            L.append("| `%s` | %.1f %% | %.1f %% |" % (s,
                                                    100 * a["share"].get(s, 0), 100 * v))
        L.append("")
    return L


def plot(rows, dat, png):
    """profiles.png: each workload's figures as ratios to no firewall."""
    with open(dat, "w") as f:
        for row in rows:
            f.write('"%s" %s\n' % (row["short"], " ".join(
                "%f" % row["ratio"][k] if k in row["ratio"] else "?"
                for k in (SOCKMAP, "policyd", HAPROXY))))
    script = """
set terminal pngcairo size 1000,520 noenhanced
set output '%(png)s'
set title 'The profiles on their own workloads, against no firewall (= 1)'
set style data histograms; set style histogram clustered gap 1
set style fill solid 0.7; set boxwidth 0.9
set datafile missing '?'
set ylabel 'ratio to no firewall (median of per-round ratios)'
set yrange [0:1.4]; set grid ytics; set key top left horizontal
set xtics rotate by -30; set bmargin 7
plot '%(dat)s' using 2:xtic(1) title 'socket map alone', '' using 3 title 'policyd', \\
     '' using 4 title 'HAProxy (TCP mode)', 1 with lines dashtype 2 lc 'black' notitle
""" % {"png": png, "dat": dat}
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
