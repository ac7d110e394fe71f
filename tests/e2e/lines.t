#!/usr/bin/env python3
# Several lines in one send (framing line): the lines that pass with
# nothing to log are judged in one run of the sk_msg program and leave
# together; a line with a verdict to act on or log ends that run, and
# what follows it is judged as before. Checked: every passing line
# reaches the server once and in order and is counted; one send of many
# lines costs one run of pd_msg (the kernel's program statistics,
# BPF_ENABLE_STATS, held only while the send is made); a denied line in
# the middle of a send lets the lines before it out and none of it or
# after it; an audited line in the middle is logged with its own length
# and the lines around it arrive; a line too long for a length rule is
# judged by its own length; passing lines before an unfinished line leave
# at once, whether it is held or goes out as it comes (hold_timeout = 0),
# also after a line begun in an earlier send; a send larger than the
# send buffer's room still arrives whole; non-blocking sends of many
# lines whose pushes the kernel cuts short are followed, with a length
# rule in the policy (each line's length stays its own); a reload while a
# line is in progress: the next line of the same send obeys the new
# policy; monitor mode. (tests/e2e/small-window.t: the same into a peer
# whose small window makes small segments.)
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import BpfStats, Env, Policyd, Recorder, client, done, is_, ok, send, send_cut

env = Env("lines")
kv, slowr, nohold = Recorder(), Recorder(rcvbuf=4096), Recorder()
# pushes cut short: a 16 KiB window read 4 KiB at a time with a pause
cut = Recorder(rcvbuf=16 << 10, chunk=4096, pause=0.0005)
conf = env.write("policy.conf", """
version = 1;
daemon = { log_rate = 0; excerpt = 64; };
services = (
  { name = "kv"; ports = [ %(kv)d, %(slow)d, %(cut)d ]; framing = "line";
    rules = ( { id = 1; action = "deny"; contains = "BADWORD"; },
              { id = 2; action = "audit"; prefix = "HELP"; },
              { id = 3; action = "deny"; prefix = "KILLME"; },
              { id = 4; action = "deny"; longer_than = 200; } ); },
  { name = "nohold"; ports = [ %(nohold)d ]; framing = "line"; hold_timeout = 0;
    rules = ( { id = 10; action = "deny"; prefix = "KILLME"; } ); }
);
""" % {"kv": kv.port, "slow": slowr.port, "cut": cut.port, "nohold": nohold.port})
pd = Policyd(env, conf)
if not ok(pd.running(), "policyd runs", pd.text()):
    done()


def counts():
    st = pd.stats() or {"rules": [], "defaults": []}
    out = {r["rule"]: (r["messages"], r["bytes"]) for r in st["rules"]}
    for d in st["defaults"]:
        if d["service"] == "kv":
            out["default"] = (d["messages"], d["bytes"])
    return out


def delta(before, after, key):
    a, b = after.get(key, (0, 0)), before.get(key, (0, 0))
    return (a[0] - b[0], a[1] - b[1])


def pd_msg_runs():
    """run_cnt of this policyd's pd_msg: the program that uses the socket
    map pinned in its pin directory."""
    m = subprocess.run(["bpftool", "-j", "map", "show", "pinned",
                        os.path.join(env.pin_dir, "pd_sockets")], capture_output=True, text=True)
    mid = json.loads(m.stdout)["id"]
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True,
                                      text=True, check=True).stdout)
    return sum(p.get("run_cnt", 0) for p in progs
               if p.get("name") == "pd_msg" and mid in p.get("map_ids", []))


# --- many passing lines in one send: one run, all counted ---
lines = [b"SET key%d %s\r\n" % (i, b"v" * (i % 50)) for i in range(300)]
data = b"".join(lines)
before = counts()
with BpfStats():
    r0 = pd_msg_runs()
    res, port = client(env, kv.port, [send(data)])
    r1 = pd_msg_runs()
is_((res, kv.got(port)), ([len(data)], data), "300 lines in one send (%d bytes) all reach "
    "the server, in order" % len(data))
is_(delta(before, counts(), "default"), (300, len(data)), "... each counted as a message "
    "passed by the default, with its bytes")
ok(1 <= r1 - r0 <= 2, "... judged in one run of pd_msg (%d runs; one a line would be 300)"
   % (r1 - r0))

# --- a denied line in the middle of a send ---
head = b"".join(b"GET a%d\n" % i for i in range(20))
before = counts()
res, port = client(env, kv.port, [send(head + b"SET x BADWORD\n" + b"GET after\n"),
                                  ["sleep", 0.2], send(b"GET later\n")])
is_(kv.got(port), head, "a denied line after 20 passing ones in the same send: those 20 "
    "reach the server, nothing of the denied line or after it")
ok(res[0] < 0 or res[-1] < 0, "... the sender sees the refusal (results %r)" % res)
is_(delta(before, counts(), "default")[0], 20, "... the 20 counted as passed")
is_(delta(before, counts(), 1)[0], 1, "... the denied line counted by its rule")
ok(pd.lines(r"^policyd: deny rule=1 service=kv .* len=14 "),
   "... and logged with its own length", pd.text())

# --- an audited line in the middle ---
before = counts()
body = b"GET one\nHELP me\nGET two\nGET three\n"
res, port = client(env, kv.port, [send(body)])
is_(kv.got(port), body, "an audited line between passing ones: every line arrives")
is_((delta(before, counts(), 2)[0], delta(before, counts(), "default")[0]), (1, 4),
    "... all four counted as passed by the default, the audited one by its rule too")
ok(pd.lines(r"^policyd: audit rule=2 service=kv .* len=8 "),
   "... and logged with its own length (8 bytes)", pd.text())

# --- a length rule: the line's own length, not the send's ---
before = counts()
short = b"".join(b"SET s%d %s\n" % (i, b"x" * 150) for i in range(10))
res, port = client(env, kv.port, [send(short)])
is_(kv.got(port), short, "ten lines of 160 bytes in one send (1,600 bytes): none is longer "
    "than 200, all arrive")
is_(delta(before, counts(), 4)[0], 0, "... the length rule matched none")
before = counts()
res, port = client(env, kv.port, [send(b"GET p\nGET q\nSET long " + b"l" * 250 + b"\nGET r\n")])
is_(kv.got(port), b"GET p\nGET q\n", "a line longer than 200 after two short ones in one "
    "send: the two arrive, the long line and what follows it not")
is_(delta(before, counts(), 4)[0], 1, "... the long line denied by the length rule")

# --- passing lines before an unfinished line that is held ---
res, port = client(env, kv.port, [send(b"GET a\nGET b\nKILL"), ["sleep", 0.3],
                                  ["recv", 0], send(b"ME now\n")])
time.sleep(0.2)
is_(kv.got(port), b"GET a\nGET b\n", "two lines and the start of a held one in one send: the "
    "two reach the server, the held line, denied at its end, not")

res, port = client(env, kv.port, [send(b"GET a"), ["sleep", 0.2], send(b"bc\nGET d\nKILL"),
                                  ["sleep", 0.3], ["recv", 0], send(b"ME now\n")])
time.sleep(0.2)
is_(kv.got(port), b"GET abc\nGET d\n", "a line begun in an earlier send, a line, and the "
    "start of a held one: the two lines arrive, the held one, denied at its end, not")

res, port = client(env, nohold.port, [send(b"GET a"), ["sleep", 0.2],
                                      send(b"bc\nGET d\nKILL"), ["sleep", 0.2],
                                      send(b"ME now\n")])
is_((res, nohold.got(port)), ([5, 13, -13], b"GET abc\nGET d\nKILL"),
    "hold_timeout = 0: a line begun in an earlier send, a line and the start of a denied "
    "one: the unfinished line goes out as it comes, its deny comes with its pattern")

res, port = client(env, kv.port, [send(b"GET c\nGET d\nKIL"), ["sleep", 0.3],
                                  send(b"L not\nGET e\n")])
is_(kv.got(port), b"GET c\nGET d\nKILL not\nGET e\n", "... and a held line that turns out "
    "harmless follows them, with the line after it")

# --- a send larger than the room in the send buffer: still whole ---
big = b"".join(b"SET big%d %s\n" % (i, b"z" * 100) for i in range(20000))
path = env.write("big", big)
res, port = client(env, slowr.port, [["sendbuf", path]], linger=0.5)
got = slowr.got(port, timeout=30)
ok(res == [len(big)] and got == big, "a send of 20,000 lines (%d bytes) into a slow reader "
   "arrives whole" % len(big), "results %r, server got %d bytes" % (res, len(got)))

# --- non-blocking sends of many lines, pushes cut short ---
st0 = (pd.stats() or {}).get("troubles", {})
unit = b"".join(b"SET c%d %s\n" % (i, b"w" * (i % 60)) for i in range(40))
r = send_cut(env, cut.port, unit, 1500, b"GET y\nSET z BADWORD\n")
got = cut.got(max(cut.data) if cut.data else 0, timeout=30)
ok(r["sent"] == len(unit) * 1500 and r["short"] > 0, "%d bytes of lines sent in non-blocking "
   "sends, %d of them cut short" % (r["sent"], r["short"]), repr(r))
ok(got == unit * 1500 + b"GET y\n", "... every line arrives once, in order, then the line "
   "before the denied one", "server got %d bytes (want %d)" % (len(got), len(unit) * 1500 + 6))
st1 = (pd.stats() or {}).get("troubles", {})
ok(st1.get("resync", 0) > st0.get("resync", 0) and st1.get("aborts", 0) == st0.get("aborts", 0) + 1,
   "... the cuts were followed (resync %d), the only abort is the denied line's"
   % (st1.get("resync", 0) - st0.get("resync", 0)), repr(st1))

# --- a reload while a line is in progress ---
out = {}
t = threading.Thread(target=lambda: out.update(r=client(
    env, nohold.port, [send(b"SET x"), ["sleep", 1.0], send(b" 1\nSET NEWWORD 2\nGET z\n")])))
t.start()
time.sleep(0.4)
env.write("policy.conf", open(conf).read().replace(
    '{ id = 10; action = "deny"; prefix = "KILLME"; }',
    '{ id = 10; action = "deny"; prefix = "KILLME"; }, '
    '{ id = 11; action = "deny"; contains = "NEWWORD"; }'))
ok((pd.reload() or "").find("reloaded:") >= 0, "a reload that adds a rule", pd.text())
t.join()
res, port = out["r"]
is_(nohold.got(port), b"SET x 1\n", "a line begun before the reload and the lines after it "
    "in one send: the line ends under the old policy, the next one is denied by the new")
ok(pd.lines(r"^policyd: deny rule=11 service=nohold "), "... by the rule the reload added",
   pd.text())
is_(pd.stop(), 0, "SIGTERM: policyd exits 0")

# --- monitor mode ---
pdm = Policyd(env, conf, extra=["--monitor"])
if ok(pdm.running(), "policyd --monitor runs", pdm.text()):
    body = b"GET m1\nSET y BADWORD\nGET m2\n"
    res, port = client(env, kv.port, [send(body)])
    is_(kv.got(port), body, "monitor mode: a would-be denied line between passing ones, "
        "every line arrives")
    ok(pdm.lines(r"^policyd: would-deny rule=1 service=kv .* len=14 "),
       "... the would-be deny logged with its own length", pdm.text())
    is_(pdm.stop(), 0, "SIGTERM: policyd --monitor exits 0")
done()
