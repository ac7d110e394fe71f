#!/usr/bin/env python3
# The essentials on the running kernel, the kernel matrix's short run
# (make check-kernels SMOKE=1): policyd starts and names what this kernel
# lacks; the real redis-cli's FLUSHALL is refused and logged with its
# sender; a denied connection is aborted where sock_diag can destroy it
# and stays open with its sends failing where not, as the start line
# says; a reload takes effect; on_exit = "keep" enforces with no daemon,
# and a new policyd takes over; a stop detaches everything. Waits scale
# with PD_SLOW (an emulated guest is 5-35x slower).
import os
import re
import shutil
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pdtest import (ROOT, Env, Policyd, done, free_port, is_, ok, redis_cli,  # noqa: E402
                    skip_all, slow, start_redis)

os.chdir(ROOT)
if not shutil.which("redis-server"):
    skip_all("redis-server is not installed")
env = Env("kernels-smoke")

port = free_port()
with open("policy-examples/redis.conf") as f:
    redis_conf = f.read()


def conf(name, on_exit, rule=""):
    """The Redis profile on port with on_exit, and rule added first."""
    text = re.sub(r"\b6379\b", str(port), redis_conf)
    text = re.sub(r"^daemon = \{", 'daemon = { on_exit = "%s";' % on_exit, text, flags=re.M)
    text = re.sub(r"^    rules = \(", "    rules = ( " + rule, text, flags=re.M)
    return env.write(name, text)


def rc(*args):
    return redis_cli(env, port, *args, inside=True)


start_redis(env, port)
is_(redis_cli(env, port, "PING"), "PONG", "redis-server on 127.0.0.1:%d" % port)
pd = Policyd(env, conf("keep.conf", "keep"), must_start=False)
if not ok(pd.running(), "policyd starts on " + os.uname().release, pd.own_text()):
    print("Bail out! policyd did not start: nothing else can be tested", flush=True)
    sys.exit(1)

# aborts go through sock_diag (CONFIG_INET_DIAG_DESTROY, tcp_diag): where
# the kernel lacks them, the start says what is lost
old = bool(pd.own_lines(r"^policyd: warning: kernel .* cannot destroy a TCP socket through sock_diag "
                        r".* a denied connection is not aborted"))
ok(not pd.own_lines(r"warning: .*lacks"), "the start names no missing kernel feature", pd.own_text())

is_(rc("SET", "k", "v"), "OK", "SET passes")
is_(rc("FLUSHALL"), "Error: Permission denied", "FLUSHALL from redis-cli is refused")
is_(redis_cli(env, port, "DBSIZE"), "1", "... and the data is still there")
ok(pd.wait_log(r"^policyd: deny rule=100 service=redis pid=[0-9]+ comm=redis-cli uid=0 "),
   "the deny line names rule, sender and its comm", pd.own_text())

# a denied connection: the send fails with EACCES; then it is aborted
# (ECONNABORTED) or, where the kernel cannot destroy a socket, stays open
got = env.python('''
import errno, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
try:
    s.send(b"*1\\r\\n$8\\r\\nFLUSHALL\\r\\n"); print("sent")
except OSError as e:
    print(errno.errorcode[e.errno])
s.settimeout(float(sys.argv[2]))
try:
    print("read", s.recv(100))
except socket.timeout:
    print("open")
except OSError as e:
    print(errno.errorcode[e.errno])
''', port, slow(5)).replace("\n", " ")
if old:
    is_(got, "EACCES open ", "a denied send fails with EACCES and, without SOCK_DESTROY, the connection stays open")
else:
    is_(got, "EACCES ECONNABORTED ", "a denied send fails with EACCES, then the connection is aborted")

conf("keep.conf", "keep", '{ id = 900; action = "deny"; command = "GET"; },')
pd.signal(signal.SIGHUP)
ok(pd.wait_log(r"reloaded: policy .* is generation 2"), "SIGHUP reloads (generation 2)", pd.own_text())
is_(rc("GET", "k"), "Error: Permission denied", "... and the new rule refuses GET")
is_(rc("SET", "k", "w"), "OK", "... while SET still passes")

is_(pd.stop(), 0, "SIGTERM with on_exit = keep: exit 0")
ok("stopped: the pins under %s keep enforcing policy generation 2" % env.pin_dir in pd.own_text(),
   "... saying the pins keep enforcing", pd.own_text())
is_(rc("FLUSHALL"), "Error: Permission denied", "with no daemon, FLUSHALL is still refused")
is_(rc("GET", "k"), "Error: Permission denied", "... and GET, by the kept policy")

pd = Policyd(env, conf("detach.conf", "detach"), must_start=False)
ok(pd.running(), "a new policyd starts over the kept pins", pd.own_text())
ok("took over the enforcement kept under %s (policy generation 2" % env.pin_dir in pd.own_text(),
   "... and takes over the kept enforcement", pd.own_text())
is_(rc("GET", "k"), "w", "its policy applies: GET passes again")
is_(rc("FLUSHALL"), "Error: Permission denied", "... and FLUSHALL is still refused")

is_(pd.stop(), 0, "SIGTERM with on_exit = detach: exit 0")
ok(not os.path.exists(env.pin_dir), "pins removed")
is_(env.run(["bpftool", "cgroup", "show", env.cgroup]).stdout.strip(), "", "nothing attached to the cgroup")
is_(rc("FLUSHALL"), "OK", "after the stop nothing is refused")
done()
