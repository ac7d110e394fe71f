#!/usr/bin/env python3
"""make bench: policyd against no firewall and iptables -m string, in the
network namespace tests/bench/run.sh made, with clients in a child cgroup
of our own. The configurations alternate inside every round; figures are
medians over the rounds and ratios to the no-firewall baseline of the same
run. Writes tests/bench/results.md and tests/bench/*.png (gnuplot), and
the figures they are made from to $O/bench/results.json; a smoke run
(PD_BENCH_QUICK=1) all three to $O/bench/quick/ instead.

The profiles' workloads (every profile on the server it is written for,
beside the socket map alone and HAProxy, and the connection rate) are in
profiles.py and workloads.py.

Environment: PD_BENCH_ROUNDS (default 5), PD_BENCH_PROFILE_ROUNDS (default
6), PD_BENCH_QUICK=1 (1 and 2 rounds, fewer requests: a smoke run),
PD_BENCH_ONLY=SECTION[,SECTION...] (those sections only, printed, no
report): bulk, redis, conns, and the profile sections redis-all, http,
memcached, postgres, smtp, connrate, protocols ("profiles": all seven);
PD_BENCH_REPORT=1 (results.md and the plots again from the figures of
the last full run, $O/bench/results.json, measuring nothing);
PD_BENCH_SELF=1 (the profile rows also measure, in the same rounds, a
program that only redirects every message to its own socket: what that
way of passing costs in throughput);
PD_BENCH_NOTE (a paragraph for results.md about the run, e.g. that the
machine was shared).
"""
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from harness import (AFFINITY, ENV, FLOOR, OUT, PIN_CLIENT, PIN_SERVER, POLICYD, QUICK, ROOT,
                     ROUNDS, SAVED, SCALE, SOCKMAP, STEAL, Env, Policyd, calm, floor_conf,
                     free_port, log, median, paired, patterns_of, retarget, rounds, steal_line,
                     wait_listen, wait_port, with_firewall)
import profiles
import workloads

ONLY = os.environ.get("PD_BENCH_ONLY")


# --- workloads -----------------------------------------------------------

def redis_rps(env, port, pipeline, n):
    """SET and GET requests per second (the mean of the two) with 20 clients."""
    return calm(lambda: redis_rps1(env, port, pipeline, n), "redis-benchmark")


def redis_rps1(env, port, pipeline, n):
    out = env.run(PIN_CLIENT + ["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", str(n),
                                "-c", "20", "-P", str(pipeline), "-q", "--csv"], inside=True)
    rps = [float(m.group(1)) for m in re.finditer(r'^"(?:SET|GET)","([\d.]+)"', out, re.M)]
    if len(rps) != 2:
        raise RuntimeError("redis-benchmark said: " + out)
    return statistics.mean(rps)


IPT_TRIES = 4


def iperf_gbps(env, port, secs):
    return calm(lambda: iperf_gbps1(env, port, secs), "iperf3")


def iperf_gbps1(env, port, secs):
    srv = env.start(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listen(port)
        # a repeating payload: random bytes match iptables' short
        # unanchored patterns now and then, and a reset ends the run
        out = env.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(secs), "-J",
                       "--repeating-payload"] + AFFINITY, inside=True)
    finally:
        srv.terminate()
        srv.wait(timeout=30)
    j = json.loads(out)
    if "sum_received" not in j.get("end", {}):
        raise RuntimeError("iperf3: " + j.get("error", out[-300:]))
    return j["end"]["sum_received"]["bits_per_second"] / 1e9


CONNS = r'''
import resource, socket, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if hard < n + 64:
    sys.exit("RLIMIT_NOFILE allows %d descriptors, %d connections need more" % (hard, n))
def slab():
    kb = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":"); kb[k] = int(v.split()[0])
    return kb["Slab"]
before = slab(); t = time.time(); socks = []
for i in range(n):
    socks.append(socket.create_connection(("127.0.0.1", port)))
    socks[-1].send(b"x")
el = time.time() - t
time.sleep(0.5)
print(n / el, (slab() - before) * 1024.0 / n)
'''

SINK = r'''
import resource, selectors, socket, sys
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(4096); ls.setblocking(False)
sel = selectors.DefaultSelector(); sel.register(ls, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj is ls:
            try:
                while True:
                    c, _ = ls.accept(); c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ)
            except BlockingIOError:
                pass
        else:
            try:
                done = not key.fileobj.recv(4096)
            except OSError:
                done = True
            if done:
                sel.unregister(key.fileobj); key.fileobj.close()
'''


def kmalloc_class(n):
    """The slab object size kmalloc uses for n bytes."""
    for c in (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192):
        if n <= c:
            return c
    return n


def struct_sizes(btf_file, names):
    out = subprocess.run(["bpftool", "btf", "dump", "file", btf_file], capture_output=True,
                         text=True, check=True).stdout
    got = {}
    for m in re.finditer(r"^\[\d+\] STRUCT '(\w+)' size=(\d+)", out, re.M):
        if m.group(1) in names and m.group(1) not in got:
            got[m.group(1)] = int(m.group(2))
    return got


def member_offset(btf_file, struct, member):
    """Byte offset of member in struct, from the BTF."""
    out = subprocess.run(["bpftool", "btf", "dump", "file", btf_file], capture_output=True,
                         text=True, check=True).stdout
    m = re.search(r"^\[\d+\] STRUCT '%s' size=\d+ vlen=\d+\n((?:\t.*\n)*)" % struct, out, re.M)
    f = re.search(r"^\t'%s' type_id=\d+ bits_offset=(\d+)" % member, m.group(1), re.M)
    return int(f.group(1)) // 8


def per_conn_objects():
    """What the kernel allocates for one policed connection, from its BTF
    and ours: policyd's maps and socket storage, and the kernel's own
    socket-map state (psock)."""
    k = struct_sizes("/sys/kernel/btf/vmlinux", ("bpf_local_storage", "bpf_local_storage_elem",
                                                  "bpf_shtab_elem", "sk_psock", "sk_psock_link"))
    ours = struct_sizes(os.path.join(os.path.dirname(POLICYD), "policyd.bpf.o"), ("pd_sock",))
    rows = [
        ("socket storage: bpf_local_storage", kmalloc_class(k["bpf_local_storage"]), "policyd"),
        # the value follows the element's sdata (cache-line aligned) and
        # its map pointer: the kernel sizes an element as the offset of
        # sdata.data plus the value
        ("socket storage: element + pd_sock (%d bytes)" % ours["pd_sock"],
         kmalloc_class(member_offset("/sys/kernel/btf/vmlinux", "bpf_local_storage_elem",
                                     "sdata") + 8 + ours["pd_sock"]), "policyd"),
        ("socket map entry (bpf_shtab_elem + key)", kmalloc_class(k["bpf_shtab_elem"] + 8),
         "policyd"),
        ("socket map link (sk_psock_link)", kmalloc_class(k.get("sk_psock_link", 32)), "policyd"),
        ("sk_psock (the kernel's sockmap state)", kmalloc_class(k["sk_psock"]), "kernel"),
    ]
    return rows


def conns(env, port, n):
    return calm(lambda: conns1(env, port, n), "connections")


def conns1(env, port, n):
    out = env.run([sys.executable, "-c", CONNS, str(n), str(port)], inside=True)
    rate, per = map(float, out.split())
    return rate, per


# --- the run -------------------------------------------------------------

def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    def ver(cmd):
        p = subprocess.run(cmd, capture_output=True, text=True)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    return [
        "kernel %s, %s" % (platform.release(), platform.machine()),
        "%s, %d CPUs, %.0f GiB" % (cpu, os.cpu_count(), mem),
        ver([POLICYD, "--version"]),
        ver(["redis-server", "--version"]),
        ver(["iperf3", "--version"]),
        ver(["iptables", "--version"]),
        workloads.haproxy_version(),
        ver(["nginx", "-v"]),
        ver(["wrk", "--version"]).split(" Copyright")[0],
        ver(["memcached", "-V"]),
        ver(["memcaslap", "-V"]).replace("memaslap", "memaslap (memcaslap)"),
        ver([os.path.join(workloads.pg_bin(), "postgres"), "--version"]),
    ]


OLD_ONLY = {}


def only(env, redis_conf, names):
    """PD_BENCH_ONLY: the sections named, printed, no report."""
    names = [n.strip() for n in names if n.strip()]
    names = [x for n in names for x in (profiles.SECTIONS if n == "profiles" else [n])]
    bad = [n for n in names if n not in OLD_ONLY and n not in profiles.RUN]
    if bad:
        sys.exit("PD_BENCH_ONLY: no section %s; the sections: %s, %s (profiles: all of "
                 "the latter)" % (", ".join(bad), ", ".join(OLD_ONLY),
                                  ", ".join(profiles.SECTIONS)))
    for n in names:
        if n in OLD_ONLY:
            OLD_ONLY[n](env, redis_conf)
    prof = [n for n in names if n in profiles.RUN]
    if prof:
        rows, configs = profiles.run(env, prof)
        print("\n".join(profiles.report(rows, configs)))
        print(steal_line(STEAL))


def main():
    if os.environ.get("PD_BENCH_REPORT") == "1":
        if not os.path.exists(SAVED):
            sys.exit("PD_BENCH_REPORT=1: no figures to write the report from (%s): a %s run "
                     "of make bench saves them at its end" % (SAVED, "smoke" if QUICK else "full"))
        with open(SAVED) as f:
            res = json.load(f)
        # JSON keeps the pattern counts, keys of these, as strings
        res["build"] = {int(k): v for k, v in res["build"].items()}
        res["scaling"] = {c: {int(k): v for k, v in x.items()} for c, x in res["scaling"].items()}
        return report(res)
    env = Env()
    ENV.append(env)
    # the byte matcher's sections (bulk, patterns, SET/GET, connections,
    # iptables' string match) measure redis.conf's byte version: the
    # profile itself is on framing resp, which reads no byte it need not
    # and takes no `inspect` (profiles.py measures it)
    redis_conf = os.path.join(ROOT, "tests", "bench", "redis-bytes.conf")
    if ONLY:
        return only(env, redis_conf, ONLY.split(","))
    t0 = time.time()
    results = {"machine": machine(), "rounds": ROUNDS}

    # every profile on its own workload, beside the socket map alone and
    # HAProxy; the connection rate
    results["profiles"], results["haproxy"] = profiles.run(env, profiles.SECTIONS)
    results["profile_rounds"] = profiles.PROUNDS
    results["profile_secs"] = profiles.SECS

    # redis
    rport = free_port()
    red = env.start(PIN_SERVER + ["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", env.tmp],
                    stdout=subprocess.DEVNULL)
    wait_port(rport)
    rconf = retarget(redis_conf, os.path.join(env.tmp, "redis.conf"), rport)
    rpats = patterns_of(rconf)
    results["rpats"] = len(rpats)
    kinds = ["none", "iptables", "policyd", FLOOR, SOCKMAP]
    confs = {"policyd": rconf, FLOOR: floor_conf(env, rport)}
    # twice the rounds of half the requests: the machine's speed wanders
    # on the scale of a run, and more pairs make a steadier median
    for pipeline, n in ((1, 50000), (16, 500000)):
        n = int(n * SCALE)
        def one(k, r):
            v = with_firewall(env, "policyd" if k in confs else k, rport, confs.get(k),
                              rpats, lambda: redis_rps(env, rport, pipeline, n))
            log("redis -P %d round %d %-25s %10.0f req/s" % (pipeline, r + 1, k, v))
            return v
        got = results["redis_P%d" % pipeline] = rounds(kinds, one, 2 * ROUNDS)
        results["where_P%d" % pipeline] = profiles.where(
            env, rconf, lambda p: redis_rps1(env, p, pipeline, n), rport,
            paired(got["policyd"], got[SOCKMAP]) < 0.97, ["redis-benchmark", "redis-server"])

    # bulk
    bport = free_port()
    # as for request/response: twice the rounds, of shorter runs
    secs = 1 if QUICK else 2
    bconfs = dict(bulk_kinds(env, redis_conf, bport))

    results["bulk_resets"] = 0

    def iptables_run():
        # iptables searches every segment, the control connection's
        # too, and a match anywhere resets it: iperf3 then ends in error.
        # Such a run is made again (counted), up to IPT_TRIES in all.
        for k in range(IPT_TRIES):
            try:
                return iperf_gbps(env, bport, secs)
            except RuntimeError as e:
                results["bulk_resets"] += 1
                log("  iptables: iperf3 failed (%s), made again" % str(e)[-160:])
                if k + 1 == IPT_TRIES:
                    raise

    def one(name, r):
        kind = "policyd" if name.startswith("policyd") else name
        v = with_firewall(env, kind, bport, bconfs[name], rpats,
                          iptables_run if kind == "iptables" else
                          lambda: iperf_gbps(env, bport, secs))
        log("bulk round %d %-36s %6.2f Gbit/s" % (r + 1, name, v))
        return v
    got = results["bulk"] = rounds(list(bconfs), one, 2 * ROUNDS)
    results["bulk_secs"] = secs
    results["where_bulk"] = {
        name: profiles.where(env, bconfs[name], lambda p: iperf_gbps1(env, p, secs), bport,
                             paired(got[name], got[SOCKMAP]) < at_least, ["iperf3"])
        for name, at_least in BULK_TARGETS.items()}

    # scaling in the number of patterns, and compile + load
    scaling = {}
    build = {}
    confs = {}
    for npat in (10, 100, 1000, 10000):
        conf = os.path.join(env.tmp, "p%d.conf" % npat)
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "gen-patterns.py"), conf,
                        str(npat)], check=True)
        conf = retarget(conf, conf, rport)
        check = subprocess.run([POLICYD, "check", "-c", conf], capture_output=True, text=True,
                               check=True).stdout
        m = re.search(r"(\d+) automaton states, (\d+) image bytes.*compiled in ([\d.]+) ms", check)
        build[npat] = {"states": int(m.group(1)), "image": int(m.group(2)), "ready": [],
                       "compile": [], "load": [], "write": [], "reload": []}
        confs[npat] = (conf, patterns_of(conf))
    # every pattern count in every round, so that a machine slowing down
    # over the run does not pass for a cost of the larger policies; every
    # other round in the reverse order, so that one slowing down within a
    # round does not either
    for r in range(ROUNDS):
        order = list(confs.items())
        if r % 2:
            order.reverse()
        for npat, (conf, pats) in order:
            for k in ("none", "iptables", "policyd") if npat == 10 else ("iptables", "policyd"):
                n = int((3000 if k == "iptables" and npat >= 1000 else 50000) * SCALE)
                if k == "policyd":
                    pd = Policyd(env, conf)
                    t = pd.text()
                    mm = re.search(r"compiled in ([\d.]+) ms, loaded in ([\d.]+) ms, written in "
                                   r"([\d.]+) ms", t)
                    b = build[npat]
                    b["ready"].append(pd.ready * 1000)
                    b["compile"].append(float(mm.group(1)))
                    b["load"].append(float(mm.group(2)))
                    b["write"].append(float(mm.group(3)))
                    pd.p.send_signal(signal.SIGHUP)
                    deadline = time.time() + 30
                    while "reloaded:" not in pd.text() and time.time() < deadline:
                        time.sleep(0.01)
                    mm = re.search(r"compiled in ([\d.]+) ms, written in ([\d.]+) ms, switched "
                                   r"in ([\d.]+) ms", pd.text().split("reloaded:")[1])
                    b["reload"].append(tuple(map(float, mm.groups())))
                    try:
                        v = redis_rps(env, rport, 1, n)
                    finally:
                        pd.stop()
                else:
                    v = with_firewall(env, k, rport, conf, pats,
                                      lambda: redis_rps(env, rport, 1, n))
                scaling.setdefault(k if npat > 10 or k != "none" else "none", {}) \
                       .setdefault(npat, []).append(v)
                log("scaling %5d patterns round %d %-9s %10.0f req/s" % (npat, r + 1, k, v))
    results["scaling"] = scaling
    results["build"] = build
    red.terminate()

    # 10,000 connections
    cport = free_port()
    sink = env.start([sys.executable, "-c", SINK, str(cport)])
    wait_port(cport)
    ncon = int(10000 * SCALE)
    cr = {}
    cconf = retarget(redis_conf, os.path.join(env.tmp, "conns.conf"), cport)
    for r in range(max(3, ROUNDS // 2 + 1)):
        for k in ("none", "policyd"):
            v = with_firewall(env, k, cport, cconf, rpats, lambda: conns(env, cport, ncon))
            cr.setdefault(k, []).append(v)
            log("connections round %d %-8s %7.0f conn/s %7.0f B/conn" % (r + 1, k, v[0], v[1]))
    sink.terminate()
    results["conns"] = {"n": ncon, **cr}
    results["objects"] = per_conn_objects()

    results["steal"] = STEAL
    results["minutes"] = (time.time() - t0) / 60
    results["ended"] = time.time()
    os.makedirs(os.path.dirname(SAVED), exist_ok=True)
    with open(SAVED, "w") as f:
        json.dump(results, f)
    report(results)


BULK_TARGETS = {"policyd inspect=4096": 0.97, "policyd inspect=0": 0.75}


def bulk_kinds(env, redis_conf, port):
    """The bulk configurations: (name, policy file or None)."""
    d = env.tmp
    one = os.path.join(d, "bulk-1.conf")
    with open(one, "w") as f:
        # the fixed cost of a policed send: one byte looked at
        f.write('version = 1;\nservices = ({ name = "one"; ports = [ %d ]; direction = "to"; '
                'inspect = 1; rules = ({ id = 1; action = "deny"; contains = "~"; }); });\n'
                % port)
    wide = os.path.join(d, "wide.conf")
    with open(wide, "w") as f:
        # three more bytes that begin a pattern: five, too many for 8 at a time
        f.write(open(redis_conf).read().replace("rules = (", "rules = (\n" + "".join(
            '{ id = %d; action = "deny"; contains = "%s"; },\n' % (900 + k, p)
            for k, p in enumerate(("QQQQQ", "ZZZZZ", "&&&&&")))))
    return [
        ("none", None),
        (SOCKMAP, None),
        (FLOOR, floor_conf(env, port)),
        ("policyd, 1 byte inspected", one),
        ("policyd inspect=4096", retarget(redis_conf, os.path.join(d, "bulk-4096.conf"), port,
                                          inspect=4096)),
        ("policyd inspect=0", retarget(redis_conf, os.path.join(d, "bulk-0.conf"), port,
                                       inspect=0)),
        ("policyd inspect=0, 5 pattern-start bytes",
         retarget(wide, os.path.join(d, "bulk-wide.conf"), port, inspect=0)),
        ("iptables", None),
    ]


def bulk_only(env, redis_conf):
    """The bulk section alone: a quick look at the per-byte cost."""
    bport = free_port()
    rpats = patterns_of(redis_conf)
    bconfs = dict(k for k in bulk_kinds(env, redis_conf, bport) if k[0] != "iptables")
    got = rounds(list(bconfs), lambda name, r: with_firewall(
        env, "policyd" if name.startswith("policyd") else name, bport, bconfs[name], rpats,
        lambda: iperf_gbps(env, bport, 2)), ROUNDS)
    for k, v in got.items():
        print("%-36s %6.2f Gbit/s  %.3f  (rounds: %s)" % (
            k, median(v), paired(v, got["none"]), " ".join("%.1f" % x for x in v)))
    print(steal_line(STEAL))


def redis_only(env, redis_conf):
    """The request/response section alone, without iptables."""
    rport = free_port()
    env.start(PIN_SERVER + ["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no", "--dir", env.tmp],
              stdout=subprocess.DEVNULL)
    wait_port(rport)
    rconf = retarget(redis_conf, os.path.join(env.tmp, "redis.conf"), rport)
    confs = {"policyd": rconf, FLOOR: floor_conf(env, rport)}
    for pipeline, n in ((1, 50000), (16, 500000)):
        n = int(n * SCALE)
        got = rounds(["none", "policyd", FLOOR, SOCKMAP], lambda k, r: with_firewall(
            env, "policyd" if k in confs else k, rport, confs.get(k), [],
            lambda: redis_rps(env, rport, pipeline, n)), 2 * ROUNDS)
        for k, v in got.items():
            print("-P %-2d %-25s %9.0f req/s  %.3f  (rounds: %s)" % (
                pipeline, k, median(v), paired(v, got["none"]),
                " ".join("%.0f" % x for x in v)))
    print(steal_line(STEAL))


def conns_only(env, redis_conf):
    cport = free_port()
    sink = env.start([sys.executable, "-c", SINK, str(cport)])
    wait_port(cport)
    cconf = retarget(redis_conf, os.path.join(env.tmp, "conns.conf"), cport)
    got = {}
    for r in range(ROUNDS):
        for k in ("none", "policyd"):
            got.setdefault(k, []).append(
                with_firewall(env, k, cport, cconf, [], lambda: conns(env, cport, 10000)))
    for k, v in got.items():
        print("%-8s %7.0f conn/s %6.0f B/conn" % (k, median([a for a, _ in v]),
                                                   median([b for _, b in v])))
    sink.terminate()
    for row in per_conn_objects():
        print("%-50s %5d %s" % row)
    print(steal_line(STEAL))


def report(res):
    L = []
    r = paired
    L.append("# policyd benchmarks\n")
    L.append("Regenerated by `make bench` (%s, %.0f minutes). All in one private network "
             "namespace, with the policed processes in a child cgroup of the bench's. The "
             "configurations run back to back inside each round: no firewall at the start and "
             "at the end of the round (the round's no-firewall figure is the mean of the two), "
             "the others between them, in the reverse order every other round. A figure is "
             "the median over the rounds; a ratio is the median of the per-round ratios (to "
             "no firewall, to the socket map alone, or to the 10-pattern figure): on a machine "
             "whose speed wanders, that compares what ran seconds apart. Rounds: the profiles' "
             "workloads %d, Redis SET/GET and bulk %d, the others %d.\n" % (
                 # when the figures were measured, also when PD_BENCH_REPORT
                 # writes them again (a run saved before "ended": its file's time)
                 time.strftime("%Y-%m-%d %H:%M UTC",
                               time.gmtime(res.get("ended") or os.path.getmtime(SAVED))),
                 res["minutes"],
                 res["profile_rounds"], 2 * res["rounds"], res["rounds"]))
    L.append("Targets are ratios to the socket map alone in the same run (the kernel's "
             "socket-map path with a program that passes everything: what any sk_msg "
             "firewall pays before it reads a byte): every request/response row >= 0.97, "
             "bulk with `inspect = 4096` >= 0.97, bulk reading every byte >= 0.75 (iperf3, and "
             "wrk's 64 KiB replies under secrets-egress.conf as written); and the "
             "connection rate >= 0.90 of no firewall; and ahead of HAProxy on every workload "
             "it is measured on.\n")
    L.append("Machine: " + "; ".join(res["machine"]) + ".\n")
    if os.environ.get("PD_BENCH_NOTE"):
        L.append(os.environ["PD_BENCH_NOTE"] + "\n")
    L.append(steal_line(res["steal"]) + "\n")
    L.append("## The profiles on their own workloads\n")
    L.append("Each profile of `policy-examples/` with the real server and load generator it "
             "is written for, beside no firewall, the %s and HAProxy (for Redis and nginx) in "
             "the same rounds; and new connections per second, since sock_ops, socket "
             "storage and adoption are paid per connection. Client and server each on a CPU "
             "of their own (HAProxy where the scheduler puts it).\n" % SOCKMAP)
    L.extend(profiles.report(res["profiles"], res["haproxy"]))
    L.append("")
    L.append("## Redis, SET and GET, 20 clients, the Redis profile\n")
    L.append("| | -P 1 req/s | ratio | ÷ socket map alone | -P 16 req/s | ratio | "
             "÷ socket map alone |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    p1, p16 = res["redis_P1"], res["redis_P16"]

    def vs(x, k):
        v = r(x[k], x[SOCKMAP])
        if k != "policyd":
            return "%.3f" % v
        return "**%.3f** (>= 0.97: %s)" % (v, "met" if v >= 0.97 else "missed")
    for k in ("none", "iptables", "policyd", FLOOR, SOCKMAP):
        L.append("| %s | %.0f | %.3f | %s | %.0f | %.3f | %s |" % (
            k, median(p1[k]), r(p1[k], p1["none"]), vs(p1, k), median(p16[k]),
            r(p16[k], p16["none"]), vs(p16, k)))
    L.append("\n%s: the kernel's socket-map path with nothing in it, loaded with bpftool "
             "(tests/bench/pass.bpf.c): a sock_ops program puts the client's connections in a "
             "SOCKHASH and an sk_msg program passes every message untouched. It is the cost "
             "any sk_msg firewall pays before it reads a byte. %s: policyd with a policy that "
             "reads no byte, so its own fixed work on top of that path.\n" % (SOCKMAP, FLOOR))
    L.append("iptables: one `-m string --algo bm --icase --from 52` rule per distinct "
             "pattern of the profile (%d) in OUTPUT, REJECT with a TCP reset. (`--from 52` "
             "skips the IPv4 and TCP headers: searched from byte 0, random header bytes match "
             "the short patterns now and then and reset a benchmark client.)\n" % res["rpats"])
    where = [("SET/GET, -P 1", res["where_P1"]), ("SET/GET, -P 16", res["where_P16"])]
    L.append("Where the time goes:\n")
    L.extend(profiles.times_table(where))
    L.extend(profiles.perf_tables(where))
    L.append("## Bulk transfer (iperf3 --repeating-payload, one stream, %d s, the Redis "
             "profile's patterns)\n" % res["bulk_secs"])
    L.append("| | Gbit/s | ratio | ÷ socket map alone | target |")
    L.append("| --- | ---: | ---: | ---: | --- |")
    b = res["bulk"]
    tg = BULK_TARGETS
    for k in b:
        v = r(b[k], b[SOCKMAP])
        L.append("| %s | %.2f | %.3f | %.3f | %s |" % (
            k, median(b[k]), r(b[k], b["none"]), v,
            ">= %.2f: %s" % (tg[k], "met" if v >= tg[k] else "**missed**") if k in tg else ""))
    if res.get("bulk_resets"):
        L.append("\niptables reset iperf3's connections in %d runs (its rules search every "
                 "segment, the test's control connection included); each such run was made "
                 "again, up to %d times in all." % (res["bulk_resets"], IPT_TRIES))
    where = list(res["where_bulk"].items())
    L.append("\nWhere the time goes:\n")
    L.extend(profiles.times_table(where))
    L.extend(profiles.perf_tables(where))
    L.append("\n## Patterns: request/response throughput (redis-benchmark -P 1) against the "
             "number of patterns\n")
    L.append("| patterns | automaton states | image bytes | policyd req/s | ratio to 10 | "
             "iptables req/s | ratio to 10 |")
    L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    sc, bu = res["scaling"], res["build"]
    for n in sorted(bu, key=int):
        L.append("| %s | %d | %d | %.0f | %.3f | %.0f | %.3f |" % (
            n, bu[n]["states"], bu[n]["image"], median(sc["policyd"][n]),
            paired(sc["policyd"][n], sc["policyd"][10]), median(sc["iptables"][n]),
            paired(sc["iptables"][n], sc["iptables"][10])))
    L.append("\nNo firewall on the same workload: %.0f req/s. Target: 10,000 patterns >= 0.95 x "
             "the 10-pattern figure.\n" % median(sc["none"][10]))
    L.append("## Compile, load, reload\n")
    L.append("| patterns | compile ms | load (verify) ms | write ms | start to enforcing ms | "
             "reload: compile ms | write ms | switch ms |")
    L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sorted(bu, key=int):
        x = bu[n]
        rl = x["reload"]
        L.append("| %s | %.1f | %.1f | %.1f | %.0f | %.1f | %.1f | %.3f |" % (
            n, median(x["compile"]), median(x["load"]), median(x["write"]), median(x["ready"]),
            median([a for a, _, _ in rl]), median([b_ for _, b_, _ in rl]),
            median([c for _, _, c in rl])))
    L.append("\nTarget: compile + load of 10,000 patterns < 1 s (compile + load + write).\n")
    c = res["conns"]
    L.append("## %d concurrent connections\n" % c["n"])
    L.append("| | connections/s | kernel slab bytes per connection (both ends) |")
    L.append("| --- | ---: | ---: |")
    for k in ("none", "policyd"):
        L.append("| %s | %.0f | %.0f |" % (k, median([a for a, _ in c[k]]),
                                             median([b_ for _, b_ in c[k]])))
    extra = median([b_ for _, b_ in c["policyd"]]) - median([b_ for _, b_ in c["none"]])
    L.append("\nMeasured slab growth with policyd minus without: %.0f bytes per connection "
             "(noisy: it is the whole machine's slab).\n" % extra)
    L.append("What the kernel allocates per policed connection (sizes from the kernel's BTF "
             "and ours, rounded to kmalloc's size classes):\n")
    L.append("| object | bytes | whose |")
    L.append("| --- | ---: | --- |")
    mine = 0
    for name, size, whose in res["objects"]:
        L.append("| %s | %d | %s |" % (name, size, whose))
        mine += size if whose == "policyd" else 0
    L.append("\npolicyd's maps and socket storage: **%d bytes** per policed connection "
             "(target < 1 KiB); with the kernel's psock, which every socket-map user pays: "
             "%d bytes.\n" % (mine, sum(sz for _, sz, _ in res["objects"])))
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    plots(res)
    print("\n".join(L))


def plots(res):
    if not shutil.which("gnuplot"):
        log("gnuplot not installed: no plots")
        return
    tmp = tempfile.mkdtemp()
    sc = res["scaling"]
    with open(os.path.join(tmp, "scaling.dat"), "w") as f:
        for n in sorted(sc["policyd"], key=int):
            f.write("%s %f %f\n" % (n, median(sc["policyd"][n]), median(sc["iptables"][n])))
    with open(os.path.join(tmp, "bulk.dat"), "w") as f:
        for k, v in res["bulk"].items():
            f.write('"%s" %f\n' % (k, median(v)))
    script = """
set terminal pngcairo size 800,480 noenhanced
set output '%(out)s/scaling.png'
set title 'Request/response throughput against the number of patterns'
set logscale x; set xlabel 'patterns'; set ylabel 'requests per second (redis-benchmark -P 1)'
set yrange [0:*]; set key bottom left; set grid
plot '%(tmp)s/scaling.dat' using 1:2 with linespoints title 'policyd', \\
     '' using 1:3 with linespoints title 'iptables -m string', \\
     %(none)f with lines dashtype 2 title 'no firewall'
set terminal pngcairo size 900,560 noenhanced
set output '%(out)s/bulk.png'
unset logscale x
set title 'Bulk transfer (iperf3, one stream)'
set style data histograms; set style fill solid 0.6; set boxwidth 0.7
set xlabel ''; set ylabel 'Gbit/s'; set key off; set xtics rotate by -40
set bmargin 13; set rmargin 20
plot '%(tmp)s/bulk.dat' using 2:xtic(1)
""" % {"out": OUT, "tmp": tmp, "none": median(sc["none"][10])}
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    profiles.plot(res["profiles"], os.path.join(tmp, "profiles.dat"),
                  os.path.join(OUT, "profiles.png"))
    shutil.rmtree(tmp)


OLD_ONLY.update(bulk=bulk_only, redis=redis_only, conns=conns_only)

if __name__ == "__main__":
    main()
