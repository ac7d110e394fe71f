#!/usr/bin/env python3
# policy-examples/memcached.conf against a real memcached: a client's
# normal text-protocol workload passes untouched; the administrative
# commands, in the forms memcached accepts, are refused and the cache
# survives them.
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pdtest import (ROOT, Env, Policyd, done, free_port, grep, is_, ok, skip_all,  # noqa: E402
                    wait_port, wait_until)
from servers import log_lines, profile, start_memcached  # noqa: E402

os.chdir(ROOT)
if not shutil.which("memcached"):
    skip_all("memcached is not installed (make deps)")
env = Env("memcached")

port = free_port()
conf, adapted = profile(env, "memcached", "11211", port)
ok(adapted, "the profile's port is adapted to %d" % port)
start_memcached(env, port, "-B", "ascii")
ok(wait_port(port), "memcached listens on 127.0.0.1:%d" % port)
pd = Policyd(env, conf)
ok(pd.running(), "policyd runs the memcached profile")

# a text-protocol session, one send per argument (with \r, \n escapes):
# each reply (its repr), or -errno
MC = r'''
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(3)
for req in sys.argv[2:]:
    req = req.encode().decode("unicode_escape").encode("latin-1")
    try:
        s.sendall(req)
    except OSError as e:
        print(-e.errno); break
    time.sleep(0.05)
    try:
        print(repr(s.recv(65536))[2:-1])
    except socket.timeout:
        print("(no reply)")
'''


def mc(*reqs, inside=True):
    """A session from inside the cgroup (or not): its replies, one a line."""
    return env.python(MC, port, *reqs, inside=inside).rstrip("\n")


out = mc(r"set watchlist 0 0 5\r\nhello\r\n", r"get watchlist\r\n",
         r"add user:shutdown_at 0 0 2\r\n42\r\n", r"replace watchlist 0 0 3\r\nbye\r\n",
         r"append watchlist 0 0 1\r\n!\r\n", r"prepend watchlist 0 0 1\r\n<\r\n",
         r"set n 0 0 1\r\n5\r\n", r"incr n 10\r\n", r"decr n 3\r\n", r"touch n 100\r\n",
         r"gat 100 n\r\n", r"set lru_cache 0 0 12\r\n12 slabs, ok\r\n", r"get lru_cache stats_key\r\n",
         r"ms meta 2\r\nhi\r\n", r"mg meta v\r\n", r"md meta\r\n", r"mn\r\n", r"delete n\r\n",
         r"stats\r\n", r"version\r\n").split("\n")
want = r"""STORED\r\n
VALUE watchlist 0 5\r\nhello\r\nEND\r\n
STORED\r\n
STORED\r\n
STORED\r\n
STORED\r\n
STORED\r\n
15\r\n
12\r\n
TOUCHED\r\n
VALUE n 0 2\r\n12\r\nEND\r\n
STORED\r\n
VALUE lru_cache 0 12\r\n12 slabs, ok\r\nEND\r\n
HD\r\n
VA 2\r\nhi\r\n
HD\r\n
MN\r\n
DELETED\r\n"""
is_("\n".join(out[:18]), want, "a normal workload (set, get, add, replace, append, prepend, incr, "
    "decr, touch, gat, meta, delete) passes with memcached's own replies")
ok(len(out) > 18 and out[18].startswith("STAT pid "), "plain stats passes (audited)")
ok(len(out) > 19 and out[19].startswith("VERSION "), "version passes")
ok(wait_until(lambda: grep(pd.log, r"audit rule=40[0-5] service=memcached"), 2),
   "... and stats is audited in the log")
is_(mc(r"get watchlist\r\n", r"set gets 0 0 1\r\nx\r\n", r"gets watchlist gets\r\n").split("\n")[0],
    r"VALUE watchlist 0 5\r\n<bye!\r\nEND\r\n", "keys named like commands' prefixes pass on a second connection")

for attack in (r"flush_all\r\n", r"flush_all 0\r\n", r"flush_all noreply\r\n", r"  flush_all\r\n",
               r"flush_all\n", r"shutdown\r\n", r"shutdown graceful\r\n", r"verbosity 1\r\n",
               r"lru_crawler metadump all\r\n", r"lru mode segmented\r\n", r"watch fetchers mutations\r\n",
               r"stats cachedump 1 0\r\n", r"stats detail on\r\n", r"stats reset\r\n",
               r"slabs automove 2\r\n", r"cache_memlimit 1\r\n", r"misbehave\r\n", r"debugtime 100\r\n",
               r"   verbosity 0\r\n"):
    is_(mc(attack), "-13", "'%s' is refused (EACCES)" % attack)
is_(mc(r"get watchlist\r\n", r"flush_all\r\n").replace("\n", "|") + "|",
    r"VALUE watchlist 0 5\r\n<bye!\r\nEND\r\n|-13|", "pipelined after a get, flush_all is refused")
log_lines(pd, "deny rule=", 20)
is_(len(grep(pd.log, "deny rule=")), 20, "each refusal is logged")

is_(mc(r"get watchlist user:shutdown_at\r\n", inside=False),
    r"VALUE watchlist 0 5\r\n<bye!\r\nVALUE user:shutdown_at 0 2\r\n42\r\nEND\r\n",
    "the cache survived every attack (read from outside the cgroup)")
ok("STAT verbosity 0" in mc(r"stats settings\r\n", inside=False), "verbosity unchanged")
ok("STAT lru_segmented yes" in mc(r"stats settings\r\n", inside=False), "LRU mode unchanged")
is_(mc(r"flush_all\r\n", inside=False), r"OK\r\n",
    "outside the cgroup nothing is policed (the same flush_all works)")
is_(pd.stop(), 0, "policyd stops")
done()
