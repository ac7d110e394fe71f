#!/usr/bin/env python3
# Which service judges a connection whose remote port names a "to"
# service and whose local port names a "from" one: the side that made it
# decides, never the port the peer chose. A client that connects to a
# policed server from another service's "to" port (a source port any
# client may bind) gets the server's replies judged by the server's own
# "from" service, whether the connection was set up by sock_ops or
# adopted at the start; a connection the cgroup made from a bound local
# port is judged by the "to" service of the port it connected to.
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import Env, Policyd, Recorder, done, free_port, is_, ok

env = Env("direction")
web, web2, db = free_port(), free_port(), free_port()
conf = env.write("policy.conf", """
version = 1;
daemon = { log_rate = 0; };
services = (
  { name = "egress"; ports = [ %d, %d ]; direction = "from";
    rules = ( { id = 1; action = "deny"; contains = "PRIVATE KEY"; } ); },
  { name = "db"; ports = [ %d ]; direction = "to";
    rules = ( { id = 2; action = "deny"; contains = "DROP"; } ); }
);
""" % (web, web2, db))

# a server of the cgroup on the "from" port: it answers each connection
# with a key once the client said something
SERVER = r"""
import json, os, socket, sys
open(os.path.join(sys.argv[1], "cgroup.procs"), "w").write(str(os.getpid()))
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[2])))
ls.listen(8)
print("ready", flush=True)
while True:
    c, a = ls.accept()
    c.settimeout(10)                # a client that says nothing does not stop the others
    try:
        c.recv(100)
    except OSError:
        pass
    try:
        r = c.send(b"-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n")
    except OSError as e:
        r = -e.errno
    print(json.dumps({"peer": a[1], "send": r}), flush=True)
"""
server = subprocess.Popen([sys.executable, "-c", SERVER, env.cgroup, str(web)],
                          stdout=subprocess.PIPE, text=True)
env.procs.append(server)
ok(server.stdout.readline().strip() == "ready", "the server of the cgroup listens")


def client(sport, sock=None):
    """A client outside the cgroup asks from source port sport (0: any);
    what it received, and what the server's send returned."""
    c = sock or socket.socket()
    if not sock:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind(("127.0.0.1", sport))
        c.connect(("127.0.0.1", web))
    c.sendall(b"GET /key\n")
    c.settimeout(3)
    got = b""
    try:
        while True:
            d = c.recv(4096)
            if not d:
                break
            got += d
    except OSError:
        pass
    c.close()
    return got, json.loads(server.stdout.readline())


# a connection open before policyd starts, from the "to" port: adopted
early = socket.socket()
early.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
early.bind(("127.0.0.1", db))
early.connect(("127.0.0.1", web))
time.sleep(0.2)
pd = Policyd(env, conf)
ok(pd.running(), "policyd runs", pd.text())

# (the server answers its connections in the order it accepted them)
got, srv = client(0, early)
ok(b"PRIVATE KEY" not in got and srv["send"] < 0,
   "a connection from the db service's \"to\" port as source port, adopted at the start: "
   "the server's key is denied (send returned %d)" % srv["send"], got)
got, srv = client(0)
ok(b"PRIVATE KEY" not in got and srv["send"] < 0,
   "from an ephemeral source port: denied (send returned %d)" % srv["send"])
got, srv = client(db)
ok(b"PRIVATE KEY" not in got and srv["send"] < 0,
   "from the db service's \"to\" port as source port: denied all the same (send returned %d)"
   % srv["send"], got)
is_(len(pd.lines(r"^policyd: deny rule=1 service=egress ")), 3,
    "each is logged as denied by the egress service's rule")

# the other way round: the cgroup connects from a "from" port (bound, no
# server on it) to the db port, as a client; the db service judges what
# it sends
rec = Recorder(port=db)
PEER = r"""
import json, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.connect(("127.0.0.1", int(sys.argv[2])))
out = {"port": s.getsockname()[1]}
for i, m in enumerate([b"PRIVATE KEY ok here\n", b"DROP TABLE t\n"]):
    try:
        out[str(i)] = s.send(m)
    except OSError as e:
        out[str(i)] = -e.errno
    __import__("time").sleep(0.3)
print(json.dumps(out))
"""
out = subprocess.run(env.in_cgroup([sys.executable, "-c", PEER, str(web2), str(db)]),
                     capture_output=True, text=True, timeout=60)
r = json.loads(out.stdout or "{}") if out.returncode == 0 else {}
ok(r.get("0", 0) > 0 and r.get("1", 0) < 0,
   "a connection the cgroup made from the \"from\" port to the db port is judged by db's rules "
   "(the key line passes, DROP is denied)", out.stderr or r)
ok(rec.got(r.get("port", 0), timeout=5) == b"PRIVATE KEY ok here\n",
   "... the db server received the passed line only")
ok(pd.stop() == 0, "policyd stops")
done()
