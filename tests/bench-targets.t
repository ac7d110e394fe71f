#!/usr/bin/env python3
# make bench's targets, as issue 21 sets them against the socket map
# alone: every request/response row >= 0.97, a reply its profile reads to
# the end >= 0.75 (every byte), with inspect = 4096 >= 0.97, new
# connections >= 0.90 of no firewall. Checks which target each wrk row
# gets, that the profile is as those targets take it (inspect = 0), and
# that a figure is judged and reported against its row's own target; and
# that where the time goes is measured beside a program that only passes
# the way policyd does (a redirect to the socket itself), and reported so;
# and that a smoke run writes nothing over the published results, and a
# report with no figures saved says so.
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "bench"), HERE]
import profiles as p  # noqa: E402
from pdtest import done, is_, ok  # noqa: E402

rows = {path: (what, target) for path, what, target in p.HTTP_ROWS}
is_(sorted(rows), ["/64k", "/small"], "wrk's keep-alive rows: 612-byte and 64 KiB replies")
is_(rows["/small"][1], (p.SOCKMAP, 0.97), "612-byte replies: >= 0.97 of the socket map alone")
is_(rows["/64k"][1], (p.SOCKMAP, 0.75),
    "64 KiB replies, read to their end: the every-byte target, >= 0.75 of the socket map alone")
is_(p.REQRESP, (p.SOCKMAP, 0.97), "request/response rows: >= 0.97 of the socket map alone")
is_(p.CONNRATE, (p.NONE, 0.90), "new connections: >= 0.90 of no firewall")
try:
    p.secrets_egress_text()
    err = None
except RuntimeError as e:
    err = str(e)
is_(err, None, "secrets-egress.conf reads every byte (inspect = 0), as the 64 KiB row's "
    "target takes it")

def row(target):
    """A row of 3 rounds, policyd at 0.784 of the socket map alone."""
    r = p.new_row("t", "t", "a workload", "req/s", "a profile", [], target)
    r["kinds"] = [p.SOCKMAP, "policyd"]
    r["got"] = {p.NONE: [1000.0] * 3, p.SOCKMAP: [850.0] * 3, "policyd": [666.4] * 3}
    r.update(detail="d", troubles={}, times={k: {"error": "-"} for k in r["kinds"]}, perf={})
    p.summarize(r)
    return r


every, reqresp = row(p.EVERYBYTE), row(p.REQRESP)
ok(abs(every["figure"] - 0.784) < 1e-9, "the figure is policyd over the socket map alone",
   every["figure"])
ok(every["met"], "0.784 meets the every-byte target")
ok(not reqresp["met"], "0.784 misses the request/response target")
lines = p.report([every, reqresp], {})
ok(any(">= 0.75 x the socket map alone: met" in l for l in lines),
   "the report names the every-byte target, met", "\n".join(lines[:4]))
ok(any(">= 0.97 x the socket map alone: **missed**" in l for l in lines),
   "and the request/response one, missed", "\n".join(lines[:4]))

# where the time goes: the programs' own time under the socket map alone,
# the redirect to itself, and policyd
timed = []
real, p.program_times = p.program_times, lambda env, kind, *a: timed.append(kind) or {}
got = p.where(None, "c.conf", None, 1, False, [])
p.program_times = real
is_(timed, [p.SOCKMAP, p.SELF, "policyd"],
    "where() times the programs under the socket map alone, the redirect to itself and policyd")
is_(sorted(got["times"]), sorted(timed), "and keeps each one's figures")
times = {p.SOCKMAP: {"programs": [("pass", "sk_msg", 1000, 114.0)], "total_ns": 114000,
                     "wall": 1.0},
         p.SELF: {"programs": [("self", "sk_msg", 1000, 384.0)], "total_ns": 384000,
                  "wall": 1.0},
         "policyd": {"programs": [("pd_msg", "sk_msg", 1000, 714.0)], "total_ns": 714000,
                     "wall": 1.0}}
t = p.times_table([("w", {"times": times})])
head = [l for l in t if l.startswith("| workload")]
is_(head, ["| workload | socket map alone | %s | policyd | programs' time, socket map alone "
           "→ redirect to itself → policyd |" % p.SELF],
    "the table has a column for the redirect to itself, between the two")
row_ = [l for l in t if l.startswith("| w |")]
ok(len(row_) == 1 and "self (sk_msg): 1,000 runs, 384 ns" in row_[0] and
   row_[0].index("384 ns") < row_[0].index("714 ns"), "its figure, before policyd's", row_)
ok(all(l.count("|") == head[0].count("|") for l in t if l.startswith("|")),
   "every line of the table has its columns")
old = p.times_table([("w", {"times": {k: v for k, v in times.items() if k != p.SELF}})])
ok(not any(p.SELF in l for l in old),
   "figures saved before it was measured: the table has no such column", old)

# PD_BENCH_SELF=1: the redirect to itself in every row's rounds, and
# reported beside the socket map alone and policyd
seen = []
saved = p.SELF_ROWS, p.rounds, p.where, p.log
p.SELF_ROWS = True
p.rounds = lambda kinds, one, n: seen.append(list(kinds)) or {
    p.NONE: [1000.0] * 3, p.SOCKMAP: [900.0] * 3, p.SELF: [891.0] * 3,
    "policyd": [846.45] * 3}
p.where = lambda *a: {"times": {}, "perf": {}}
p.log = lambda *a: None
r = p.measure_row(None, p.new_row("s", "Redis -P 1", "a workload", "req/s", "redis", []),
                  "c.conf", None, 1)
p.SELF_ROWS, p.rounds, p.where, p.log = saved
r["detail"] = "d"
is_(seen, [[p.NONE, p.SOCKMAP, p.SELF, "policyd"]],
    "with PD_BENCH_SELF=1 a row's rounds run the redirect to itself beside the others")
ok(abs(r["vs_self"][p.SELF] - 0.99) < 1e-9 and abs(r["vs_self"]["policyd"] - 0.95) < 1e-9,
   "its ratio to the socket map alone, and policyd's to it", r.get("vs_self"))
ok(abs(r["figure"] - 0.9405) < 1e-9, "the row's figure is still policyd over the socket map "
   "alone", r["figure"])
lines = p.report([r], {})
ok(any("Redis -P 1 **0.990** and 0.950" in l for l in lines),
   "the report gives both", [l for l in lines if "itself" in l])
ok(not any("PD_BENCH_SELF" in l for l in p.report([every], {})),
   "and says nothing of it for rows that did not measure it")

# where a run writes: a smoke run (PD_BENCH_QUICK=1) never over the
# published results.md and plots, nor over the last full run's figures
def where_to(**environ):
    """harness's OUT and SAVED under environ, relative to the tree."""
    code = ("import os, sys; sys.path.insert(0, %r); import harness; "
            "print(os.path.relpath(harness.OUT, harness.ROOT)); "
            "print(os.path.relpath(harness.SAVED, harness.ROOT))" % os.path.join(HERE, "bench"))
    env = {k: v for k, v in os.environ.items() if k not in ("PD_BENCH_QUICK", "O")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(env, **environ))
    return out.stdout.split()


is_(where_to(), ["tests/bench", "build/bench/results.json"],
    "a full run: results.md and the plots in tests/bench, its figures in build/bench")
is_(where_to(PD_BENCH_QUICK="1"), ["build/bench/quick", "build/bench/quick/results.json"],
    "a smoke run (PD_BENCH_QUICK=1): all of it in build/bench/quick")
is_(where_to(PD_BENCH_QUICK="1", O="out"), ["out/bench/quick", "out/bench/quick/results.json"],
    "... under the build directory O names")

# PD_BENCH_REPORT=1 where no run saved its figures: an error that says so
with tempfile.TemporaryDirectory(prefix="policyd-test-bench-targets.") as empty:
    r = subprocess.run([sys.executable, os.path.join(HERE, "bench", "bench.py")],
                       capture_output=True, text=True,
                       env=dict(os.environ, O=empty, PD_BENCH_REPORT="1", PD_BENCH_QUICK=""))
    is_((r.returncode, r.stdout, r.stderr.strip(), os.listdir(empty)),
        (1, "", "PD_BENCH_REPORT=1: no figures to write the report from (%s/bench/results.json): "
         "a full run of make bench saves them at its end" % empty, []),
        "PD_BENCH_REPORT=1 with no figures saved: status 1 and why, nothing written")
done()
