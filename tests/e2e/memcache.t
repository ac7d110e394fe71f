#!/usr/bin/env python3
"""framing = "memcache" against a real memcached: every way the protocol
issue lists of getting an administrative command past a byte profile (a
NUL after the name, repeated spaces, a name split across sends, a
storage line whose data block memcached does not take as data, the
binary protocol) is refused, and the cache, the server and its settings
survive; what merely spells a command (a key, an item's value) passes;
memcached's own load generator (memcslap) and a text-protocol workload
run with no refusal, under the deny-list profile and under the strict
allow-list one."""
import os
import re
import shutil
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (EACCES, Env, Policyd, client, done, free_port, is_, ok,  # noqa: E402
                    request, send, skip_all)

if shutil.which("memcached") is None:
    skip_all("memcached is not installed (make deps)")
env, port = Env("memcache"), free_port()
# -A: shutdown is enabled, so that a shutdown that got through would stop it
srv = env.start(["memcached", "-A", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-u", "nobody",
                 "-m", "16"])


def mc(req, inside=False):
    """One request on a fresh connection: its reply (from outside the
    cgroup, not policed), or, from inside, what the send returned."""
    if not inside:
        return request(port, req)
    try:
        results, _ = client(env, port, [send(req), ["sleep", 0.2]], inside=True)
    except RuntimeError:
        return None
    return results[0]


for _ in range(100):
    if mc(b"version\r\n").startswith(b"VERSION"):
        break
    time.sleep(0.05)
ok(mc(b"version\r\n").startswith(b"VERSION"), "memcached on 127.0.0.1:%d" % port)


def setting(name):
    m = re.search(rb"STAT %s (\S+)" % name.encode(), mc(b"stats settings\r\n") or b"")
    return m.group(1).decode() if m else None


CANARY = b"VALUE canary 0 5\r\nalive\r\nEND\r\n"


def alive():
    """The canary is there and the server answers."""
    return mc(b"get canary\r\n") == CANARY


def profile(name):
    with open(os.path.join("policy-examples", name)) as f:
        text = f.read()
    return env.write(name, re.sub(r"\b11211\b", str(port), text))


def attempt(name, steps, want):
    """A raw client inside the cgroup; the canary must survive it. want:
    the results of the steps (bytes sent, received as hex, or -errno;
    None for a result not checked)."""
    mc(b"set canary 0 0 5\r\nalive\r\n")
    try:
        results, _ = client(env, port, steps)
    except RuntimeError as e:
        results = [str(e)]
    match = len(results) == len(want) and all(w is None or w == g for w, g in zip(want, results))
    ok(match and alive(), "refused: %s" % name, "results %r, want %r; alive %r" % (
        results, want, alive()))


verbosity, lru = setting("verbosity"), setting("lru_segmented")
pd = Policyd(env, profile("memcached.conf"))
ok(pd.running(), "policyd runs the memcached profile (framing memcache)")

# ---- the forms of the issue ----
for form in [b"flush_all\0\r\n", b"flush_all\0junk\r\n", b"  flush_all \r\n", b"flush_all\n",
             b"flush_all noreply\r\n", b"shutdown\0\r\n", b"shutdown\0", b"watch\0\r\n",
             b"watch\0 fetchers mutations\r\n", b"stats  cachedump 1 0\r\n",
             b"  stats   cachedump\0 1 0\r\n", b"stats detail on\r\n", b"stats reset\r\n",
             b"verbosity\0 1\r\n", b"lru_crawler  metadump all\r\n", b"lru mode segmented\r\n",
             b"cache_memlimit 1\r\n", b"slabs automove 2\r\n"]:
    attempt("%r" % form, [send(form)], [EACCES])
attempt("split flush | _all\\r\\n", [send(b"flush"), ["sleep", 0.2], send(b"_all\r\n")],
        [5, EACCES])
attempt("split in the spaces of stats  cachedump", [send(b"stats  "), ["sleep", 0.2],
                                                    send(b"cache"), ["sleep", 0.2],
                                                    send(b"dump 1 0\r\n")], [7, 5, EACCES])
# the refusal aborts the connection, maybe before a reply is read: the
# command before it shows by its effect
attempt("pipelined after a set", [send(b"set piped 0 0 1\r\n1\r\nflush_all\r\n")], [None])
is_(mc(b"get piped\r\n"), b"VALUE piped 0 1\r\n1\r\nEND\r\n", "... the set before it ran")
attempt("a get, then flush_all in the next send",
        [send(b"get canary\r\n"), ["recv", len(CANARY)], send(b"flush_all\r\n")],
        [12, CANARY.hex(), EACCES])
# a storage line memcached refuses reads its data block as commands
attempt("a data block behind a length that is not a number",
        [send(b"set k 0 0 abc\r\nflush_all\r\n")], [EACCES])
attempt("a data block behind a storage line with a field too many",
        [send(b"set k 0 0 9 noreply x\r\nflush_all\r\n")], [EACCES])
attempt("a data block behind a key of 251 bytes",
        [send(b"set " + b"k" * 251 + b" 0 0 9\r\nflush_all\r\n")], [EACCES])
attempt("a meta set whose length is not a number", [send(b"ms k x\r\nflush_all\r\n")],
        [EACCES])
attempt("a data block longer than its length", [send(b"set k 0 0 2\r\nabflush_all\r\n")],
        [EACCES])
attempt("the binary protocol (a flush)",
        [send(struct.pack(">BBHBBHIIQ", 0x80, 0x08, 0, 0, 0, 0, 0, 0, 0))], [EACCES])
ok(srv.poll() is None, "memcached is still running (no shutdown got through)")
is_((setting("verbosity"), setting("lru_segmented")), (verbosity, lru),
    "verbosity and LRU mode unchanged")

# ---- what merely spells a command is data ----


def exchange(*pairs):
    """Requests and their replies on one connection from inside the
    cgroup: (results, want)."""
    steps, want = [], []
    for req, reply in pairs:
        steps += [send(req), ["recv", len(reply)]]
        want += [len(req), reply.hex()]
    try:
        results, _ = client(env, port, steps)
    except RuntimeError as e:
        results = [str(e)]
    return results, want


is_(*exchange((b"set k 0 0 11\r\nflush_all\r\n\r\n", b"STORED\r\n"),
              (b"get flush_all k\r\n", b"VALUE k 0 11\r\nflush_all\r\n\r\nEND\r\n"),
              (b"set flush_all 0 0 1 noreply\r\nx\r\nms shutdown 2 T0\r\nhi\r\nmg shutdown v\r\n",
               b"HD\r\nVA 2\r\nhi\r\n"),
              (b"FLUSH_ALL\r\nflush_all\t\r\n", b"ERROR\r\nERROR\r\n")),
    "values and keys that spell a command, and names memcached does not know, pass")
ok(alive(), "... and the cache is still there")

deny = pd.lines(r"deny rule=100 service=memcached ")
ok(len(deny) >= 8, "a deny line per refused flush_all (%d)" % len(deny))
ok(any('excerpt="flush_all\\x00junk\\r\\n"' in l for l in deny),
   "the NUL form's line shows the bytes sent", "\n".join(deny[:3]))
ok(pd.lines(r"deny rule=300 service=memcached "), "stats cachedump is denied by its rule")
ok(pd.lines(r"deny rule=110 service=memcached "), "shutdown is denied by its rule")
is_(len(pd.lines(r"deny rule=malformed service=memcached ")), 6,
    "the storage lines memcached would not take, and the binary protocol, are malformed")
ok(pd.lines(r"audit rule=400 service=memcached ") == [] and
   mc(b"stats\r\n", inside=True) == 7 and
   len(pd.lines(r"audit rule=400 service=memcached ")) == 1, "plain stats passes, audited")


def slap(label):
    """memcslap's set and get tests from the cgroup: both ran, with no
    refusal."""
    denies = len(pd.lines(r"deny "))
    for test in ("set", "get"):
        out = subprocess.run(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', env.cgroup,
                              "memcslap", "-s", "127.0.0.1:%d" % port, "-t", test, "-c", "4",
                              "-e", "500"], capture_output=True, text=True, timeout=300)
        ok(out.returncode == 0 and re.search(r"Time to %s +2000 keys" % test, out.stdout),
           "%smemcslap -t %s: 2000 requests by 4 threads" % (label, test),
           out.stdout[-300:] + out.stderr[-300:])
    is_(len(pd.lines(r"deny ")), denies, "%smemcslap met no refusal" % label)


slap("")
ok(alive(), "the data survived every attempt")
ok(pd.stop() == 0, "policyd stops")

# ---- the strict allow-list variant ----
os.rename(pd.log, pd.log + ".memcached")
pd = Policyd(env, profile("memcached-strict.conf"))
ok(pd.running(), "policyd runs the strict memcached profile")
is_(*exchange((b"set s 0 0 1\r\nv\r\nget s\r\nincr n 1\r\nms m 2\r\nhi\r\nmg m v\r\nmn\r\n",
               b"STORED\r\nVALUE s 0 1\r\nv\r\nEND\r\nNOT_FOUND\r\nHD\r\nVA 2\r\nhi\r\nMN\r\n")),
    "strict: set, get, incr and the meta commands pass")
for form in [b"stats\r\n", b"flush_all\r\n", b"me canary\r\n", b"version2\r\n",
             b"verbosity 1\r\n", b"  gett k\r\n", b"ge\0t k\r\n"]:
    attempt("strict: %r" % form, [send(form)], [EACCES])
attempt("strict: a data command's name in pieces, then a denied one",
        [send(b"se"), ["sleep", 0.2], send(b"t piece 0 0 1\r\n1\r\nstats\r\n")], [2, None])
is_(mc(b"get piece\r\n"), b"VALUE piece 0 1\r\n1\r\nEND\r\n", "strict: ... the set in pieces ran")
slap("strict: ")
ok(alive(), "strict: the data survived")
ok(pd.stop() == 0, "policyd stops")
done()
