#!/usr/bin/env python3
# Large replies are not held up on their way out: nginx inside the
# policed cgroup (sendfile on, tcp_nopush on: Debian's defaults) serves
# 64 KiB files over keep-alive under secrets-egress, reading every byte
# and reading up to inspect = 4096. A pull that spans two of a send's
# scatterlist elements makes the kernel copy them into a page of their
# own; TCP then needs more page fragments for a full segment than an skb
# holds, sends one short of it, and holds the reply's last bytes until
# the client acknowledges it, which wrk's client delays by 40 ms, about
# a reply in five. The data plane's windows end where an element
# ends, so no walk copies.
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pdtest import Env, Policyd, done, free_port, ok, skip_all, start_nginx  # noqa: E402
from servers import profile  # noqa: E402

if not all(shutil.which(t) for t in ("nginx", "wrk")):
    skip_all("nginx or wrk is not installed (make deps)")
env = Env("layout")
port = free_port()
SIZE = 65536

w = os.path.join(env.tmp, "www")
os.makedirs(w)
page = (b"<p>Nothing to see here: an ordinary page of an ordinary shop.</p>\n" * 1100)[:SIZE]
env.write("www/64k.html", page)
os.chmod(w, 0o755)
os.chmod(os.path.join(w, "64k.html"), 0o644)
ngx = start_nginx(env, port, w, inside=True,
                  http="sendfile on; tcp_nopush on; keepalive_requests 100000;")


def replies():
    """wrk with one connection for 2 s, its requests kept alive: (requests
    answered, wrk's socket errors and non-2xx replies)."""
    out = env.run(["wrk", "-t", "1", "-c", "1", "-d", "2s",
                   "http://127.0.0.1:%d/64k.html" % port], timeout=60).stdout
    n = re.search(r"^\s*(\d+) requests in", out, re.M)
    bad = re.search(r"Socket errors|Non-2xx", out)
    return (int(n.group(1)) if n else 0), (out if bad or not n else "")


conf, adapted = profile(env, "secrets-egress", "80, 8000, 8080", port)
ok(adapted, "the profile's ports are adapted to %d" % port)
with open(conf) as f:
    text = f.read()
capped = env.write("capped.conf", text.replace("inspect = 0;", "inspect = 4096;"))
with open(capped) as f:
    ok("inspect = 4096;" in f.read(), "a copy of the profile reads up to 4096 bytes")
# alternating, twice: the better of each is compared
got = {"every byte read": [], "inspect = 4096": []}
log = os.path.join(ngx.dir, "access.log")
for r in range(2):
    for name, c in (("every byte read", conf), ("inspect = 4096", capped)):
        pd = Policyd(env, c)
        before = os.path.getsize(log)
        n, bad = replies()
        pd.stop()
        with open(log) as f:
            f.seek(before)
            lines = f.read().splitlines()
        ok(n > 0 and not bad and lines and all(l.startswith('200 "GET /64k.html') for l in lines),
           "%s, round %d: wrk's %d requests are answered, no error, each a 200 in nginx's log"
           % (name, r + 1, n), bad)
        got[name].append(n)
every, capped_n = max(got["every byte read"]), max(got["inspect = 4096"])
# reading 4096 bytes of a reply instead of all of it can only be faster;
# a reply held up by a delayed acknowledgement is 40 ms
ok(capped_n >= 0.9 * every,
   "replies read up to inspect come at least as fast as replies read whole "
   "(requests in 2 s: %d against %d)" % (capped_n, every))
env.stop(ngx)
done()
