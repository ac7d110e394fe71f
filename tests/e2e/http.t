#!/usr/bin/env python3
"""framing = "http" against a real nginx with policy-examples/http-strict.conf:
every way the protocol issue lists of reaching a secret file past a byte
profile (percent-encoded dots and slashes in either case, the absolute
form, HTTP/1.0, h2c prior knowledge, the alias off-by-one-slash "..") and
the malformed request lines that other servers run ("TRACE\\t/",
" TRACE /") are refused, and nginx serves no byte of the file; a body
that begins like a denied method passes without being held; curl's
normal workload and wrk run with no refusal. Then header rules (a name in
any case, a value with spaces and tabs around and inside it, a name split
across sends) and a body's contains rule (across sends, across chunks of
one byte, in a Content-Length body) refuse before nginx sees the request;
the same bytes in another header, a value, the path or a chunk extension
pass. After a reload into the other slot of the maps, header, body,
query_contains and header_contains rules deny (each section's start
state is the new policy's), the query decoded and across sends; the same
bytes in the path, split over two headers or behind a false escape
pass."""
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import (EACCES, Env, Policyd, client, done, free_port, is_, ok,  # noqa: E402
                    request, send, skip_all, start_nginx)

if not shutil.which("nginx") or not shutil.which("curl"):
    skip_all("nginx or curl is not installed (make deps)")

env = Env("http")
port, port2, port3 = free_port(), free_port(), free_port()
www = os.path.join(env.tmp, "www")
for d in (www + "/.git", www + "/api", env.tmp + "/static"):
    os.makedirs(d, exist_ok=True)
files = {www + "/index.html": "<h1>home</h1>\n", www + "/.env": "SECRET=hunter2\n",
         www + "/.git/config": "[core]\n\tsecretcore = 1\n", env.tmp + "/secret.txt": "topsecret\n",
         env.tmp + "/static/app.js": "app();\n", www + "/big.bin": "x" * 1048576}
for path, text in files.items():
    with open(path, "w") as f:
        f.write(text)
os.chmod(env.tmp, 0o755)
nginx = start_nginx(env, port, www, locations="location /static { alias %s/static/; }" % env.tmp,
                    # port3: /api/ alone; h2c prior knowledge (a listener of
                    # its own: nginx 1.22 speaks only HTTP/2 on a plain
                    # "listen ... http2")
                    servers="server { listen 127.0.0.1:%d; location /api/ { return 200 "
                            "\"ok $request_method $request_length\\n\"; } }\n"
                            "server { listen 127.0.0.1:%d http2; root %s; }" % (port3, port2, www))


def raw(req):
    """One request from outside the cgroup (not policed): the reply."""
    return request(port, req, quiet=0.3)


for _ in range(100):
    if raw(b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200"):
        break
    time.sleep(0.05)
ok(raw(b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200"), "nginx on 127.0.0.1:%d" % port)

# what the attacks reach without policyd: each form serves a secret
HOST = b"\r\nHost: a\r\n\r\n"
forms = [(line + (b"\r\n\r\n" if line.endswith(b"1.0") else HOST), secret) for line, secret in [
    (b"GET /%2eenv HTTP/1.1", b"hunter2"), (b"GET /.%65nv HTTP/1.1", b"hunter2"),
    (b"GET /%2Egit/config HTTP/1.1", b"secretcore"), (b"GET /.git%2fconfig HTTP/1.1", b"secretcore"),
    (b"GET /.git%2Fconfig HTTP/1.0", b"secretcore"), (b"GET http://a/%2eenv HTTP/1.1", b"hunter2"),
    (b"GET HTTP://a/.git/config HTTP/1.0", b"secretcore"), (b"GET //.env HTTP/1.1", b"hunter2"),
    (b"GET /./.env HTTP/1.1", b"hunter2"), (b"GET /static../secret.txt HTTP/1.1", b"topsecret"),
    (b"GET /static%2e%2e/secret.txt HTTP/1.1", b"topsecret"),
    (b"GET /x/%2e%2e/.env HTTP/1.1", b"hunter2")]]
h2c = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
h2 = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "http://127.0.0.1:%d/.env" % port2],
                    capture_output=True).stdout
ok(all(secret in raw(req) for req, secret in forms) and b"hunter2" in h2,
   "without policyd every form serves its secret, and so does h2c prior knowledge",
   "\n".join("%r: %r" % (req, raw(req)[:60]) for req, secret in forms if secret not in raw(req)))

conf = env.write("http.conf", re.sub(r"ports = \[ 80, 8080 \]", "ports = [ %d, %d ]" % (port, port2),
                                     open("policy-examples/http-strict.conf").read()))
pd = Policyd(env, conf)
ok(pd.running(), "policyd runs the http-strict profile (framing http)")
access = os.path.join(nginx.dir, "access.log")
open(access, "w").close()


def attempt(name, steps, want, to=None):
    try:
        results, _ = client(env, to or port, steps)
    except RuntimeError as e:
        results = [str(e)]
    match = len(results) == len(want) and all(w is None or w == g for w, g in zip(want, results))
    ok(match, "refused: %s" % name, "results %r, want %r" % (results, want))


def nginx_saw_none(paths, name="nginx saw none of them"):
    """nginx's access log holds no request for paths (a pattern)."""
    time.sleep(0.3)
    logged = open(access).read()
    ok(not re.search(paths, logged), name, logged[-800:])


def passes(cases, to):
    """Each (name, request) is answered by nginx on port to."""
    for name, req in cases:
        results, _ = client(env, to, [send(req), ["recv", 15]])
        is_(results, [len(req), b"HTTP/1.1 200 OK".hex()], "passed: %s" % name)


for req, secret in forms:
    attempt("%r" % req.split(b"\r\n")[0], [send(req)], [EACCES])
for req in [h2c, b"TRACE\t/ HTTP/1.1\r\nHost: a\r\n\r\n", b" TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", b"PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\n"]:
    attempt("%r" % req[:40], [send(req)], [EACCES])
attempt("split GET /.e | nv", [send(b"GET /.e"), ["sleep", 0.2], send(b"nv HTTP/1.1\r\n\r\n")],
        [7, EACCES])
out = subprocess.run(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', env.cgroup,
                      "curl", "-s", "--http2-prior-knowledge", "http://127.0.0.1:%d/.env" % port2],
                     capture_output=True, timeout=30)
ok(b"hunter2" not in out.stdout and out.returncode != 0, "curl --http2-prior-knowledge is refused",
   "exit %d, %r" % (out.returncode, out.stdout[:80]))
time.sleep(0.3)
logged = open(access).read()
ok(not re.search(r'(?m)^200 ', logged), "nginx served nothing to the refused requests",
   logged[-800:])

# ---- what passes ----
ok_before = len(pd.lines(r"deny "))


def curl(*args):
    out = subprocess.run(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', env.cgroup,
                          "curl", "-s", "-o", "-", "-w", "\n%{http_code}"] + list(args),
                         capture_output=True, timeout=60)
    body, _, code = out.stdout.rpartition(b"\n")
    return out.returncode, code.decode(), body


u = "http://127.0.0.1:%d" % port
is_(curl(u + "/")[1:], ("200", b"<h1>home</h1>\n"), "GET /")
is_(curl(u + "/static/app.js")[1:], ("200", b"app();\n"), "GET /static/app.js (the alias)")
is_(curl("-I", u + "/")[1], "200", "HEAD")
is_(curl("--http1.0", u + "/index.html")[1], "200", "HTTP/1.0")
r = curl("-d", "TRACE / HTTP/1.1", u + "/api/form")
ok(r[1] == "200" and r[2].startswith(b"ok POST "), "a POST body that begins like a denied method",
   repr(r))
is_(curl("-H", "Transfer-Encoding: chunked", "-d", "GET /.env HTTP/1.1", u + "/api/c")[1], "200",
    "a chunked body that holds a denied path")
is_(curl("--data-binary", "@" + www + "/big.bin", u + "/api/upload")[1], "200",
    "a 1 MiB body")
is_(curl("-X", "DELETE", u + "/api/item/1")[1], "200", "DELETE")
ok(curl(u + "/big.bin")[2] == files[www + "/big.bin"].encode(), "a 1 MiB download")
head = b"POST /api/a HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\nTRACE"
results, _ = client(env, port, [send(head), ["sleep", 1.0], send(b" / HTTP/1.1\r\n\r\nGET"),
                                ["recv", 17]])
is_(results, [len(head), 18, b"HTTP/1.1 200 OK\r\n".hex()],
    "a body in pieces is not held: its first piece leaves, then nginx answers")
is_(len(pd.lines(r"deny ")), ok_before, "no normal request was refused")
wrk = shutil.which("wrk") and subprocess.run(
    ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', env.cgroup,
     "wrk", "-t", "2", "-c", "8", "-d", "2", u + "/index.html"], capture_output=True, text=True,
    timeout=60)
if wrk:
    m = re.search(r"(\d+) requests in", wrk.stdout)
    ok(m and int(m.group(1)) > 100 and "Non-2xx" not in wrk.stdout and "Socket errors" not in
       wrk.stdout, "wrk: %s requests, all answered 200" % (m.group(1) if m else "no"),
       wrk.stdout[-400:])
is_(len(pd.lines(r"deny ")), ok_before, "wrk met no refusal")
deny = pd.lines(r"deny rule=200 service=http ")
ok(any("%2eenv" in l for l in deny), "a deny line names rule 200 for /%2eenv", "\n".join(deny[:3]))
ok(pd.lines(r"deny rule=400 service=http .*static\.\./"), "the alias traversal is denied by rule 400")
is_(len(pd.lines(r"deny rule=malformed service=http ")), 7,
    "h2c (the preface, and curl's), the bad request lines, the '..' segment, Upgrade: h2c and "
    "two lengths are malformed")
ok(pd.lines(r"deny rule=default service=http .*TRACE / HTTP"), "TRACE is refused by the allow list")
ok(pd.stop() == 0, "policyd stops")

# ---- header and body rules ----
conf2 = env.write("http2.conf", """version = 1;
services = ( { name = "web"; ports = [ %d ]; direction = "to"; framing = "http";
  rules = (
    { id = 1; action = "deny"; header = "X-Debug"; },
    { id = 2; action = "deny"; header = "Transfer-Encoding: chunked"; },
    { id = 3; action = "deny"; header = "X-Mode: debug on"; }
  ); },
  { name = "web2"; ports = [ %d ]; direction = "to"; framing = "http";
  rules = ( { id = 4; action = "deny"; contains = "${jndi:"; nocase = true; } ); } );
""" % (port, port3))
pd = Policyd(env, conf2)
ok(pd.running(), "policyd runs a policy with header and body rules")
open(access, "w").close()
# the log goes on from the first policyd's
denied = len(pd.lines(r"deny "))
for name, req in [
        ("X-Debug", b"GET /api/h1 HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\n\r\n"),
        ("x-dEBUG, no space", b"GET /api/h2 HTTP/1.1\r\nHost: a\r\nx-dEBUG:1\r\n\r\n"),
        ("X-Debug with an empty value", b"GET /api/h3 HTTP/1.1\r\nX-Debug:\r\nHost: a\r\n\r\n"),
        ("Transfer-Encoding: CHUNKED, a tab before, spaces after",
         b"POST /api/h4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tCHUNKED  \r\n\r\n0\r\n\r\n"),
        ("transfer-encoding: Chunked", b"POST /api/h5 HTTP/1.1\r\nHost: a\r\n"
         b"transfer-encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("X-Mode:  Debug \\t ON", b"GET /api/h6 HTTP/1.1\r\nHost: a\r\nX-Mode:  Debug \t ON\r\n\r\n")]:
    attempt("header %s" % name, [send(req)], [EACCES])
head = b"GET /api/h7 HTTP/1.1\r\nHost: a\r\nX-De"
attempt("a header name split across sends (held, then refused)",
        [send(head), ["sleep", 0.3], send(b"bug: 1\r\n\r\n")], [len(head), EACCES])
nginx_saw_none(r"/api/h\d", "nginx saw none of the refused requests")
is_(len(pd.lines(r"deny rule=(1|2|3) service=web ")), 7, "each is logged as denied by its rule")
denied += 7
# passed: the same bytes in other headers, values, names, the path, the body
for name, req, extra in [
        ("X-Debugger, X-Debu and X-Debug in a value",
         b"GET /api/p1 HTTP/1.1\r\nHost: a\r\nX-Debugger: 1\r\nX-Debu: 1\r\nReferer: X-Debug: 1\r\n\r\n", b""),
        ("X-Mode: debug only, X-Mode: debug once",
         b"GET /api/p2 HTTP/1.1\r\nHost: a\r\nX-Mode: debug\r\nX-Mode: debug once\r\n\r\n", b""),
        ("x-debug in the path", b"GET /api/x-debug:1 HTTP/1.1\r\nHost: a\r\n\r\n", b""),
        ("a body of header lines", b"POST /api/p4 HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\n",
         b"X-Debug: 1\r\nTransfer-Encoding: chunked\r\n")]:
    results, _ = client(env, port, [send(req + extra), ["recv", 15]])
    is_(results, [len(req + extra), b"HTTP/1.1 200 OK".hex()], "passed: %s" % name)
is_(len(pd.lines(r"deny ")), denied, "... with no deny line")

# contains within the body (service web2): across sends, across chunks
open(access, "w").close()
chunked = b"POST /api/b1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
attempt("${jndi: across two chunks and two sends",
        [send(chunked + b"5\r\nab${J\r\n"), ["sleep", 0.3], send(b"3\r\nnDi\r\n3\r\n:x}\r\n0\r\n\r\n")],
        [len(chunked) + 10, EACCES], port3)
attempt("${jndi: in chunks of one byte, one send each",
        [send(chunked.replace(b"b1", b"b2"))] +
        [send(b"1\r\n%s\r\n" % bytes([c])) for c in b"${jndi"] + [send(b"1\r\n:\r\n")],
        [len(chunked)] + [6] * 6 + [EACCES], port3)
cl = b"POST /api/b3 HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\nuser=${jn"
attempt("${jndi: in a Content-Length body across sends",
        [send(cl), ["sleep", 0.3], send(b"di:ldap://x}")], [len(cl), EACCES], port3)
nginx_saw_none(r"/api/b\d")
is_(len(pd.lines(r"deny rule=4 service=web2 ")), 3, "each is logged as denied by rule 4")
passes([
        ("${jndi: in a header value", b"GET /api/q1 HTTP/1.1\r\nHost: a\r\nX-Api: ${jndi:ldap://x}\r\n\r\n"),
        ("${jndi: in the path and query", b"GET /api/${jndi:x}?${jndi:y} HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("${jn|di: in two chunk size extensions, not in the data",
         chunked.replace(b"b1", b"q3") + b"2;${jn\r\nab\r\n2;di:\r\ncd\r\n0\r\n\r\n")], port3)
r = subprocess.run(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', env.cgroup, "curl", "-s",
                    "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@" + www + "/big.bin",
                    "http://127.0.0.1:%d/api/big" % port3], capture_output=True, text=True, timeout=60)
is_(r.stdout, "200", "a 1 MiB body without the pattern (longer than can be held: it leaves as it "
    "comes)")
is_(len(pd.lines(r"deny ")), denied + 3, "... no other deny line")
denied += 3

# ---- after a reload (the other slot of the maps), with query and
# header_contains rules: each section starts where its own rules are ----
env.write("http2.conf", open(conf2).read().replace(
    'nocase = true; } ); } );',
    'nocase = true; },\n'
    '    { id = 5; action = "deny"; query_contains = "${jndi:"; nocase = true; },\n'
    '    { id = 6; action = "deny"; header_contains = "${JNDI:"; } ); } );'))
ok(re.search(r"reloaded: .*generation 2 ", pd.reload() or ""), "reloaded with query and "
   "header_contains rules (generation 2: the other slot)")
open(access, "w").close()
attempt("after the reload, a header rule: X-Debug",
        [send(b"GET /api/r1 HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\n\r\n")], [EACCES])
cl = b"POST /api/r2 HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\nuser=${jn"
attempt("... a body rule: ${jndi: in a Content-Length body across sends",
        [send(cl), ["sleep", 0.3], send(b"di:ldap://x}")], [len(cl), EACCES], port3)
for name, req in [
        ("${jndi: in the query", b"GET /api/r3?a=1&b=${jndi:x} HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("${JnDi: encoded in the query", b"GET /api/r4?b=%24%7BJnDi:x%7D HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("${JNDI: in a header value, any case, after a tab",
         b"GET /api/r5 HTTP/1.1\r\nHost: a\r\nX-Api:\t${JNDI:ldap://x}\r\n\r\n"),
        ("${JnDi: 300 bytes into a long header value, after spaces and tabs",
         b"GET /api/r7 HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\t "
         + b"Gecko/20100101" * 20 + b" ${JnDi:ldap://x}\r\nAccept: */*\r\n\r\n")]:
    attempt("... %s" % name, [send(req)], [EACCES], port3)
q = b"GET /api/r6?a=${j"
attempt("... ${jndi: in the query across sends (held, then refused)",
        [send(q), ["sleep", 0.3], send(b"ndi:x} HTTP/1.1\r\nHost: a\r\n\r\n")], [len(q), EACCES], port3)
nginx_saw_none(r"/api/r\d")
is_([len(pd.lines(r"deny rule=%d service=web2? " % i)) for i in (1, 4, 5, 6)], [5, 4, 3, 2],
    "each is logged as denied by its rule (1: header, 4: body, 5: query, 6: header_contains; "
    "with the ones before the reload)")
passes([
        ("${jndi: in the path only", b"GET /api/${jndi:x}/p1 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("an escape that is not one before jndi", b"GET /api/p2?a=$%{jndi:x} HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("${jndi: split across two headers", b"GET /api/p3 HTTP/1.1\r\nHost: a\r\nX-A: ${\r\n"
         b"X-B: jndi:x\r\n\r\n"),
        ("long header values with ${ and jndi: apart",
         b"GET /api/p4 HTTP/1.1\r\nHost: a\r\nCookie: " + b"k=${v}; " * 40 + b"jndi:x\r\n"
         b"User-Agent: " + b"x" * 500 + b" ${ jndi:\r\n\r\n")], port3)
is_(len(pd.lines(r"deny ")), denied + 7, "... no other deny line")
ok(pd.stop() == 0, "policyd stops")
ok(env.stop(nginx) == 0, "nginx stops")
done()
