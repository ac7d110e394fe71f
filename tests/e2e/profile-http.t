#!/usr/bin/env python3
# policy-examples/http-client.conf with a real nginx, curl and wrk: a normal
# browsing and API workload passes, with nginx's own answers, also bodies,
# headers and query values that hold what a byte profile refused ("../",
# "/etc/passwd", "${name}"); the denied methods, traversals in the path and
# the query in any encoding, ${jndi:} lookups in the path, the query (also
# encoded twice), any header or the body, secret-file requests in any case,
# h2c upgrades and malformed requests are refused before nginx sees a byte
# of them.
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pdtest import (ROOT, Env, Policyd, done, free_port, grep, is_, ok, request,  # noqa: E402
                    skip_all, start_nginx, tail)
from servers import log_lines, profile  # noqa: E402

os.chdir(ROOT)
if not all(shutil.which(t) for t in ("nginx", "curl")):
    skip_all("nginx or curl is not installed (make deps)")
env = Env("http")

port = free_port()
conf, adapted = profile(env, "http-client", "80, 8080", port)
ok(adapted, "the profile's ports are adapted to %d" % port)

www = os.path.join(env.tmp, "www")
for d in ("docs", ".well-known"):
    os.makedirs(os.path.join(www, d))
env.write("www/index.html", "<h1>home</h1>\n")
env.write("www/.well-known/security.txt", "contact: security@example.org\n")
env.write("www/docs/a..b.txt", "release notes...\n")
env.write("www/docs/environment.html", "environment page\n")
env.write("www/.env", "SECRET=hunter2\n")
big = env.write("www/big.bin", os.urandom(1048576))
ngx = start_nginx(env, port, www, http="gzip on; gzip_types text/plain;")
ok(request(port, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 "),
   "nginx serves on 127.0.0.1:%d" % port)
pd = Policyd(env, conf)
ok(pd.running(), "policyd runs the http-client profile")
access = os.path.join(ngx.dir, "access.log")
open(access, "w").close()

u = "http://127.0.0.1:%d" % port
body = os.path.join(env.tmp, "body")


def c(*args):
    """curl from inside the cgroup, the reply's body in body: "exit
    code/http code"."""
    p = env.run(["curl", "-s", "-o", body, "-w", "%{http_code}"] + list(args), inside=True)
    return "%d/%s" % (p.returncode, p.stdout)


def body_is(want):
    with open(body, "rb") as f:
        return f.read() == want


is_(c(u + "/"), "0/200", "GET /")
ok(grep(body, "<h1>home</h1>"), "... with nginx's page")
is_(c("-I", u + "/index.html"), "0/200", "HEAD")
is_(c(u + "/docs/a..b.txt?x=1&y=../notapath"), "0/200",
    "a file name with '..' and a query with '../' in a value")
is_(c(u + "/docs/environment.html"), "0/200", "a page whose name starts with 'env'")
is_(c(u + "/.well-known/security.txt"), "0/200", "/.well-known/ (a dot directory that is meant to be public)")
is_(c("-r", "100-199", u + "/big.bin"), "0/206", "a range request")
is_(os.path.getsize(body), 100, "... 100 bytes")
is_(c(u + "/big.bin"), "0/200", "a 1 MiB download")
with open(big, "rb") as f:
    ok(body_is(f.read()), "... byte for byte")
is_(c("--compressed", u + "/docs/a..b.txt"), "0/200", "gzip")
is_(c("-H", "If-Modified-Since: Wed, 01 Jan 2020 00:00:00 GMT",
      "-H", "User-Agent: Mozilla/5.0 (X11; Linux x86_64)", "-H", "Referer: http://127.0.0.1/docs/",
      u + "/index.html"), "0/200", "browser-like headers")
is_(c("-d", "name=alice&comment=hello+world%21", u + "/api/form"), "0/200", "POST a form")
ok(grep(body, "^ok POST"), "... which nginx answered")
is_(c("-H", "Content-Type: application/json", "-d", '{"user":"bob","tags":["a","b"],"price":"$5"}',
      u + "/api/json"), "0/200", "POST JSON with a '$'")
is_(c("-d", "path=../../x&file=/etc/passwd&line=TRACE / HTTP/1.1", u + "/api/form"), "0/200",
    "POST a body with '../', '/etc/passwd' and a line that starts like a denied method")
is_(c("-H", "X-Template: ${name} and /etc/passwd", "-H", "Referer: http://127.0.0.1/a/../b",
      u + "/index.html"), "0/200", "headers with '${name}', '/etc/passwd' and '/../'")
is_(c(u + "/index.html?q=%24+5&next=../index.html&p=%2Fdocs%2F"), "0/200",
    "a query with an encoded '$', a leading '../' and encoded slashes")
is_(c("--data-binary", "@" + big, u + "/api/upload"), "0/200", "POST a 1 MiB binary body")
is_(c("-X", "PUT", "-d", "x", u + "/api/item/1"), "0/200", "PUT")
is_(c("-X", "DELETE", u + "/api/item/1"), "0/200", "DELETE")
is_(c("-X", "OPTIONS", u + "/api/"), "0/200", "OPTIONS")
is_(c("--http1.0", u + "/"), "0/200", "HTTP/1.0")
out = env.run(["curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
               "-w", "%{http_code} ", u + "/", u + "/index.html", u + "/docs/a..b.txt"],
              inside=True).stdout
is_(out, "200 200 200 ", "three requests on one kept-alive connection")
is_(len(grep(access, "")), 22, "nginx logged every normal request")
is_(len(grep(pd.log, "deny rule=")), 0, "no normal request was denied")
# wrk: keep-alive GETs, then POSTs of a JSON body with '$' and '../'
lua = env.write("post.lua", 'wrk.method = "POST"\nwrk.body = \'{"a":"../x","p":"$5"}\'\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
for name, extra, path in (("GET", [], "/index.html"), ("POST", ["-s", lua], "/api/json")):
    if not shutil.which("wrk"):
        break
    p = env.run(["wrk", "-t", "1", "-c", "8", "-d", "2"] + extra + [u + path], inside=True)
    m = re.search(r"(\d+) requests in", p.stdout)
    ok(m and int(m.group(1)) > 100 and "Socket errors" not in p.stdout and
       "Non-2xx" not in p.stdout,
       "wrk %s: %s requests, none refused" % (name, m.group(1) if m else "no"), p.stdout[-400:])
is_(len(grep(pd.log, "deny rule=")), 0, "... no deny line")

open(access, "w").close()
attacks = [a.replace("$u", u) for a in (
    "-X TRACE $u/", "-X TRACK $u/", "-X CONNECT $u/", "-X DEBUG $u/",
    "--path-as-is $u/../../etc/hosts", "--path-as-is $u/docs/../../../../root/",
    "$u/%2e%2e/%2e%2e/etc/hosts", "$u/%2E%2E%2F%2E%2E%2Fetc/hosts", "$u/..%2f..%2fetc/hosts",
    "$u/static/..;/admin", "$u/%252e%252e%252fetc", "$u/%c0%ae%c0%ae/etc/hosts", "--path-as-is $u/docs/..",
    "-H User-Agent:${jndi:ldap://127.0.0.1:1389/a} $u/",
    "-H X-Api-Version:${${lower:j}ndi:ldap://127.0.0.1/a} $u/",
    "-H X-Forwarded-For:${${::-j}${::-n}di:rmi://127.0.0.1/a} $u/",
    "$u/?q=%24%7Bjndi:ldap://127.0.0.1/a%7D", "-d user=${jndi:dns://127.0.0.1/x} $u/api/login",
    "$u/.env", "$u/.git/config", "$u/.aws/credentials", "$u/wp-config.php", "$u/.htpasswd",
    "$u/home/u/.ssh/id_rsa", "$u/download?file=/etc/passwd", "$u/?f=/proc/self/environ",
    "$u/.git-credentials", "$u/.ENV",
    "-g $u/?x=${JNDI:ldap://127.0.0.1/a}", "$u/?q=%2524%257Bjndi:ldap://127.0.0.1/a",
    "-g $u/a/${jndi:ldap://127.0.0.1/a}", "-H Accept:${LOWER:j}ndi $u/",
    "$u/%2e%65nv", "$u/static../secret", "$u/download?file=..%2f..%2fetc%2fpasswd",
    "$u/x?f=..%5c..%5cwin.ini", "--http2 $u/", "-H Upgrade:h2c $u/",
    "-H Content-Length:1 -H Transfer-Encoding:chunked -d x $u/api/form")]
for a in attacks:
    is_(c(*a.split()), "55/000", "refused (curl: send failure): " + a)
# a request whose header or body line was refused reaches nginx only up to
# that line: nginx logs it as incomplete (400), or answers before the body
seen = grep(access, r"(?i)jndi|\.\.|%2e|%25|%c0|\.env|\.git|\.aws|\.ssh|passwd|environ|wp-config"
                    r"|TRACE|TRACK|CONNECT|DEBUG")
is_(len(seen), 0, "nginx saw no attack string of the %d attacks (%d requests logged up to their "
    "refused line)" % (len(attacks), len(grep(access, "")))) or print(
    "#   " + tail(access).replace("\n", "\n#   "))
is_(len(grep(access, "")), 0, "nginx logged none of them: each was refused whole, in its one send")
log_lines(pd, "deny rule=", len(attacks))
is_(len(grep(pd.log, "deny rule=")), len(attacks), "each is logged")
is_(subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", u + "/.env"],
                   capture_output=True, text=True).stdout, "200", "outside the cgroup nothing is policed")
is_(pd.stop(), 0, "policyd stops")
done()
