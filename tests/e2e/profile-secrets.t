#!/usr/bin/env python3
# policy-examples/secrets-egress.conf with a real nginx inside the policed
# cgroup (direction "from") and curl outside it: pages, downloads and
# public certificates are served whole; a real private key, cloud
# credentials and a key buried 1 MiB deep in a download never leave, and
# the connection that tried is reset.
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pdtest import (ROOT, Env, Policyd, done, free_port, grep, is_, ok, skip_all,  # noqa: E402
                    start_nginx, tail)
from servers import log_lines, profile  # noqa: E402

os.chdir(ROOT)
if not all(shutil.which(t) for t in ("nginx", "curl", "openssl")):
    skip_all("nginx, curl or openssl is not installed (make deps)")
env = Env("secrets")

port = free_port()
conf, adapted = profile(env, "secrets-egress", "80, 8000, 8080", port)
ok(adapted, "the profile's ports are adapted to %d" % port)

w = os.path.join(env.tmp, "www")
for d in ("backup", "docs"):
    os.makedirs(os.path.join(w, d))
env.write("www/index.html", "<h1>shop</h1>\n")
env.write("www/docs/keys.txt", "Never share your private key. Rotate the AWS keys yearly.\n")
env.write("www/big.bin", os.urandom(3145728))
p = env.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test.local",
             "-days", "1", "-keyout", w + "/backup/server.key", "-out", w + "/cert.pem"])
ok(p.returncode == 0, "openssl made a real key pair and certificate", p.stderr)
env.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", w + "/backup/ed.key"])
env.write("www/backup/credentials", "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
          "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
env.write("www/backup/gcp.json", '{"type": "service_account", "project_id": "p", "private_key_id": "0123"}\n')
env.write("www/backup/azure.txt", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFy;"
          "EndpointSuffix=core.windows.net\n")
with open(w + "/backup/server.key", "rb") as f:
    env.write("www/backup/disk.img", os.urandom(1048573) + f.read() + os.urandom(100000))
subprocess.run(["chmod", "-R", "a+rX", w], check=True)  # the leak: readable by the web server's workers

ngx = start_nginx(env, port, w, inside=True)
with open(os.path.join(env.cgroup, "cgroup.procs")) as f:
    ok(str(ngx.pid) in f.read().split(), "nginx runs inside the policed cgroup")
pd = Policyd(env, conf)
ok(pd.running(), "policyd runs the secrets-egress profile")
open(os.path.join(ngx.dir, "access.log"), "w").close()

u = "http://127.0.0.1:%d" % port
body = os.path.join(env.tmp, "body")


def get(*args):
    """curl from outside the cgroup, the reply's body in body: "http
    code/exit code"."""
    if os.path.exists(body):
        os.unlink(body)
    p = subprocess.run(["curl", "-s", "-o", body, "-w", "%{http_code}"] + list(args),
                       capture_output=True, text=True)
    return "%s/%d" % (p.stdout, p.returncode)


def same(path):
    with open(body, "rb") as a, open(path, "rb") as b:
        return a.read() == b.read()


is_(get(u + "/"), "200/0", "a page")
is_(get(u + "/docs/keys.txt"), "200/0", "a page that talks about private keys and AWS keys")
is_(get(u + "/cert.pem"), "200/0", "a public certificate (BEGIN CERTIFICATE)")
ok(same(w + "/cert.pem"), "... byte for byte")
is_(get(u + "/big.bin"), "200/0", "a 3 MiB download")
ok(same(w + "/big.bin"), "... byte for byte")
is_(get("-r", "1000-2999", u + "/big.bin"), "206/0", "a range of it")
is_(get("-o", os.path.join(env.tmp, "body2"), u + "/", u + "/cert.pem"), "200200/0",
    "two replies on one connection")
is_(len(grep(pd.log, "deny rule=")), 0, "nothing normal was denied")

SECRET = rb"PRIVATE KEY|aws_secret|private_key_id|AccountKey"
for f in ("backup/server.key", "backup/ed.key", "backup/credentials", "backup/gcp.json",
          "backup/azure.txt", "backup/disk.img"):
    out = get(u + "/" + f)
    ok(out in ("200/18", "200/56", "000/56", "000/52"), "%s: the reply is cut (%s)" % (f, out))
    got = b""
    if os.path.exists(body):        # no file: nothing arrived
        with open(body, "rb") as b:
            got = b.read()
    ok(not re.search(SECRET, got), "... and curl got none of the secret (%d bytes before it)" % len(got))
log_lines(pd, "deny rule=", 6)
is_(len(grep(pd.log, "deny rule=")), 6, "each is logged")
ok(grep(pd.log, r"deny rule=100 service=secrets-egress pid=[0-9]+ comm=nginx uid=[0-9]+ "
                r"src=127\.0\.0\.1:%d " % port), "the log names nginx and its port as the sender")
is_([l for l in grep(pd.log, "deny rule=") if ' excerpt="" ' not in l], [],
    "no deny line quotes the reply (excerpt = 0)")
with open(pd.log, "rb") as f:
    ok(not re.search(SECRET + rb"|AKIA", f.read()), "... so no blocked secret is in the log")
error_log = os.path.join(ngx.dir, "error.log")
ok(grep(error_log, r"\(13: Permission denied\) while sending"), "nginx saw EACCES from its send",
   tail(error_log))
is_(get(u + "/"), "200/0", "the server goes on serving other connections")
is_(pd.stop(), 0, "policyd stops")
done()
