#!/usr/bin/env python3
# The scan's fast paths on a real kernel. Where no pattern has begun, the
# data plane passes over 8 bytes at a time (services whose patterns begin
# with up to four different bytes: blocks of 64 words with one bounds
# check, or word by word near a window's end; one test of a word when
# those bytes are all below 0x80, another when not) or one byte at a time
# by a table (more such bytes), or, when more bytes begin a pattern and the
# shortest has 5 bytes or more, by the gram filter (3 of every stride
# bytes tested against the patterns' 3-byte sequences, strides 3 and 8
# here); it reads the message in 4 KiB windows,
# and sends of up to 128 bytes in one pass without windows. A
# pattern is placed at every offset that matters for these steps (word,
# block and window edges, straddling each) in sends of up to 64 KiB, for
# each kind of service: every one is refused and the server never sees
# it; the same sends without it arrive whole. Patterns split across two
# sends (also over three, with one or two bytes in the middle), and ones
# that begin in a carried-over walk, are found too. A
# service without byte patterns reads no byte and still judges lengths.
# Where the walk goes through the table, it walks two parts of a send at
# once, the second from the resume state, and keeps the second only when
# the two agree where they overlap: patterns longer than the overlap and a
# long prefix rule, whose progress only the first walk knows, are found
# wherever they fall, and near misses of them pass.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import json
import subprocess

from pdtest import EACCES, POLICYD, Env, Policyd, Recorder, client, done, is_, ok, send

env = Env("scan")
two, four, many, line, length = Recorder(), Recorder(), Recorder(), Recorder(), Recorder()
high, long_ = Recorder(), Recorder()
grams, grams8 = Recorder(), Recorder()

# two:  '$' and '\n' begin every pattern (the Redis profile's shape)
# four: four bytes, one of them a nocase letter (both cases count)
# many: six bytes: the byte table
# line: line framing, where '\n' also stops the scan
# length: no byte pattern, no scan
# high: a pattern begins with a byte above 0x7f (the other word test)
# long: patterns longer than the two walks' overlap, and a long prefix
# grams: the gram filter, stride 3 (the shortest pattern has 5 bytes)
# grams8: the gram filter, stride 8 (10 bytes or more)

# long patterns made of the noisy filler's bytes, so that a walk through
# it is deep in one of them at times (see NOISY below)
LONG = b"$6\r\nCONFIX#EVI%BA&AM@roo-$6\r\nCONFIX#EVI%BA&AM@roo-end"
PREFIX = b"$6\r\nCONFIX#EVI%BA&AM@roo" * 4 + b"!"


def esc(b):
    return b.decode().replace("\r", "\\r").replace("\n", "\\n")


conf = env.write("policy.conf", """
version = 1;
daemon = { log_rate = 10000; };
services = (
  { name = "two"; ports = [ %d ]; direction = "to"; framing = "none";
    rules = ( { id = 1; action = "deny"; contains = "$6\\r\\nCONFIG"; nocase = true; },
              { id = 2; action = "deny"; contains = "\\nCONFIG "; nocase = true; } ); },
  { name = "four"; ports = [ %d ]; direction = "to"; framing = "none";
    rules = ( { id = 11; action = "deny"; contains = "#EVIL"; },
              { id = 12; action = "deny"; contains = "%%BAD%%"; },
              { id = 13; action = "deny"; contains = "qux!"; nocase = true; } ); },
  { name = "many"; ports = [ %d ]; direction = "to"; framing = "none";
    rules = ( { id = 21; action = "deny"; contains = "#EVIL"; },
              { id = 22; action = "deny"; contains = "%%BAD%%"; },
              { id = 23; action = "deny"; contains = "qux!"; nocase = true; },
              { id = 24; action = "deny"; contains = "&AMP&"; },
              { id = 25; action = "deny"; contains = "@root@"; } ); },
  { name = "line"; ports = [ %d ]; direction = "to"; framing = "line";
    rules = ( { id = 31; action = "deny"; contains = "FLUSHALL"; nocase = true; } ); },
  { name = "length"; ports = [ %d ]; direction = "to"; framing = "none";
    rules = ( { id = 41; action = "deny"; longer_than = 30000; } ); },
  { name = "high"; ports = [ %d ]; direction = "to"; framing = "none";
    rules = ( { id = 51; action = "deny"; hex_contains = "ff00aa55"; },
              { id = 52; action = "deny"; contains = "#EVIL"; } ); },
  { name = "long"; ports = [ %d ]; direction = "to"; framing = "none";
    rules = ( { id = 61; action = "deny"; contains = "%s"; },
              { id = 62; action = "deny"; prefix = "%s"; },
              { id = 63; action = "deny"; contains = "$6\\r\\nCONFIG"; } ); },
  { name = "grams"; ports = [ %d ]; direction = "to"; framing = "none";
    rules = ( { id = 71; action = "deny"; contains = "xoxb-"; },
              { id = 72; action = "deny"; contains = "#EVIL"; },
              { id = 73; action = "deny"; contains = "aws_secret_access_key"; nocase = true; },
              { id = 74; action = "deny"; contains = "&AMP&"; },
              { id = 75; action = "deny"; contains = "@root@"; nocase = true; },
              { id = 76; action = "deny"; hex_contains = "ff00aa55ee"; } ); },
  { name = "grams8"; ports = [ %d ]; direction = "to"; framing = "none";
    rules = ( { id = 81; action = "deny"; contains = "github_pat_"; },
              { id = 82; action = "deny"; contains = "aws_session_token"; nocase = true; },
              { id = 83; action = "deny"; contains = "client-key-data:"; },
              { id = 84; action = "deny"; contains = "AccountKey="; },
              { id = 85; action = "deny"; prefix = "xyz"; },
              { id = 86; action = "deny"; contains = "-----BEGIN PRIVATE"; } ); }
);
""" % (two.port, four.port, many.port, line.port, length.port, high.port, long_.port,
       esc(LONG), esc(PREFIX), grams.port, grams8.port))

# the services scanned by the gram filter are, and with these strides
dump = json.loads(subprocess.run([POLICYD, "dump", "--json", "-c", conf], capture_output=True,
                                 text=True, check=True).stdout)
is_([(s["name"], s["automaton"]["scan"], s["automaton"].get("gram_stride"))
     for s in dump["services"] if s["name"].startswith("grams") or s["name"] == "many"],
    [("many", "bytes", None), ("grams", "grams", 3), ("grams8", "grams", 8)],
    "dump: the gram filter scans grams (stride 3) and grams8 (stride 8), not many")

pd = Policyd(env, conf)
if not ok(pd.running(), "policyd run starts", pd.text()):
    done()

cases = {
    "two": (two, [b"$6\r\nCONFIG", b"\nconfig "]),
    "four": (four, [b"#EVIL", b"%BAD%", b"QuX!"]),
    "many": (many, [b"&AMP&", b"@root@", b"qUx!"]),
    "high": (high, [b"\xff\x00\xaa\x55", b"#EVIL"]),
    "grams": (grams, [b"xoxb-", b"@RoOt@", b"\xff\x00\xaa\x55\xee"]),
    "grams8": (grams8, [b"github_pat_", b"AccountKey="]),
}
# Filler none of whose bytes begins a pattern of any service, a 'noisy'
# filler full of bytes that do, so that the walk leaves and re-enters the
# state where it skips, and one of bytes above 0x7f, which the word test
# for keys below 0x80 must tell apart by their high bit.
FILL = (b"0123456789abcdefghijklmnop" * 3000)
NOISY = (b"$6\r\nCONFIX#EVI%BA&AM@roo\nconfi \xff\x00\xaa" * 3000)
HIGH = bytes(range(0x80, 0xff)) * 600
# near misses of the gram services' patterns, at every alignment to the
# strides: the filter stops at them and the walk goes through them
GNOISY = (b"xoxb_aws_secret_access_ke#EVI github_pat@roo client-key-data-----BEGIN PRIVAT"
          b"\xff\x00\xaa\x54\xee AccountKey aws_session_toke " * 1000)
OFFSETS = [0, 1, 7, 8, 9, 15, 16, 63, 64, 505, 511, 512, 513, 1023, 1024, 1025, 2047, 4088,
           4092, 4095, 4096, 4097, 8190, 8192, 12289, 20000, 65000]


def big(data):
    """A step sending data in one send(), through a file: 64 KiB do not fit
    on a command line."""
    path = os.path.join(env.tmp, "msg-%d" % len(os.listdir(env.tmp)))
    with open(path, "wb") as f:
        f.write(data)
    return ["sendbuf", path]


def message(filler, pat, off, size):
    m = filler[:off] + pat
    return m + filler[len(m):size]


for name, (srv, pats) in cases.items():
    fillers = [(FILL, "quiet"), (NOISY, "noisy"), (HIGH, "high-byte")]
    if name.startswith("grams"):
        fillers = [(FILL, "quiet"), (GNOISY, "near-miss")]
    for filler, fname in fillers:
        # whole sends pass untouched
        m = filler[:65536]
        res, port = client(env, srv.port, [big(m)])
        ok(res == [len(m)] and srv.got(port) == m,
           "%s, %s filler: 64 KiB without a pattern arrive whole" % (name, fname),
           "results %r, got %d bytes" % (res, len(srv.got(port))))
        bad = []
        for pat in (pats if filler is FILL else pats[:1]):
            for off in OFFSETS:
                size = max(off + len(pat) + 37, 5000) if off < 65000 else 65536
                m = message(filler, pat, off, size)
                res, port = client(env, srv.port, [big(m)], linger=0)
                got = srv.got(port)
                if res != [EACCES] or pat.lower() in got.lower():
                    bad.append((pat, off, res, len(got)))
        ok(not bad, "%s, %s filler: %s at %d offsets (word, block and window "
           "edges) refused, the server sees none" % (
               name, fname, "each pattern" if filler is FILL else "a pattern", len(OFFSETS)),
           "missed (pattern, offset, results, bytes received): %r" % bad[:10])

# split across two sends: the carried-over walk, then the skipping again
bad = []
for name, (srv, pats) in cases.items():
    for pat in pats:
        for cut in range(1, len(pat)):
            for pre in (0, 5, 4096 - cut):
                first = FILL[:pre] + pat[:cut]
                second = pat[cut:] + FILL[:3000]
                res, port = client(env, srv.port, [send(first), ["sleep", 0.05], send(second)],
                                   linger=0)
                got = srv.got(port)
                if res != [len(first), EACCES] or got != first:
                    bad.append((name, pat, cut, pre, res, len(got)))
ok(not bad, "a pattern split across two sends, at every cut, is refused in the second "
   "send; the first arrives", "missed: %r" % bad[:10])

# small sends (up to 128 bytes, walked in one pass without windows), and
# the first sizes past them
bad = []
for name, (srv, pats) in cases.items():
    for pat in pats:
        for size, off in ((len(pat), 0), (40, 1), (40, 17), (128, 0), (128, 128 - len(pat)),
                          (129, 129 - len(pat))):
            m = message(FILL, pat, off, size)
            res, port = client(env, srv.port, [send(m)], linger=0)
            if res != [EACCES] or pat.lower() in srv.got(port).lower():
                bad.append((name, pat, size, off, res))
        m = FILL[:128]
        res, port = client(env, srv.port, [send(m), send(m[:1]), send(m[:60])])
        if res != [128, 1, 60] or srv.got(port) != m + m[:1] + m[:60]:
            bad.append((name, "clean", res))
ok(not bad, "small sends: a pattern anywhere in sends of 4 to 129 bytes is refused, the server "
   "sees none; sends without one arrive whole", "missed: %r" % bad[:10])

# the carried-over walk through small sends: a pattern split with a small
# rest, over three sends with one or two bytes in the middle, and a near
# miss that leaves nothing behind
bad = []
for name, (srv, pats) in cases.items():
    for pat in pats:
        for cut in range(1, len(pat)):
            first, second = FILL[:5] + pat[:cut], pat[cut:] + FILL[:20]
            res, port = client(env, srv.port, [send(first), ["sleep", 0.05], send(second)],
                               linger=0)
            if res != [len(first), EACCES] or srv.got(port) != first:
                bad.append((name, pat, cut, res))
        for a, b in ((1, 2), (len(pat) - 3, len(pat) - 1), (1, 3)):
            parts = [FILL[:5] + pat[:a], pat[a:b], pat[b:] + FILL[:3]]
            res, port = client(env, srv.port, [send(parts[0]), ["sleep", 0.05], send(parts[1]),
                                               ["sleep", 0.05], send(parts[2])], linger=0)
            if res != [len(parts[0]), len(parts[1]), EACCES] or \
                    srv.got(port) != parts[0] + parts[1]:
                bad.append((name, pat, (a, b), res))
        near = [FILL[:5] + pat[:-1], bytes([pat[-1] ^ 1]) + FILL[:10], FILL[:7] + pat]
        res, port = client(env, srv.port, [send(near[0]), ["sleep", 0.05], send(near[1]),
                                           ["sleep", 0.05], send(near[2])], linger=0)
        if res != [len(near[0]), len(near[1]), EACCES] or srv.got(port) != near[0] + near[1]:
            bad.append((name, pat, "near miss", res))
ok(not bad, "small sends: a pattern split with a small rest, over three sends, and after a near "
   "miss is refused; what came before arrives", "missed: %r" % bad[:10])

# two walks at once: a pattern longer than their overlap at every offset of
# the first 260 bytes of a send (two blocks of the two walks: across where
# the second walk begins and where the next block does), its near miss
# repeated at every alignment, and a long prefix rule
bad = []
for off in range(0, 260):
    m = message(NOISY, LONG, off, 1200)
    res, port = client(env, long_.port, [send(m)], linger=0)
    if res != [EACCES] or long_.got(port) != b"":
        bad.append((off, res))
for off in range(0, len(LONG) + 5):
    m = NOISY[:off] + (LONG[:-1] + b"?" + NOISY[:5]) * 30
    res, port = client(env, long_.port, [send(m)])
    if res != [len(m)] or long_.got(port) != m:
        bad.append((off, "near miss", res))
ok(not bad, "long pattern: refused at each of 260 offsets in a send walked by two walks at "
   "once; its near miss, again and again, arrives whole", "missed: %r" % bad[:10])
bad = []
for m, want in ((PREFIX + NOISY[:2000], EACCES), (PREFIX[:-1] + b"?" + NOISY[:2000], None),
                (b"x" + PREFIX + NOISY[:2000], None)):
    res, port = client(env, long_.port, [send(m)], linger=0)
    if res != [want or len(m)] or long_.got(port) != (b"" if want else m):
        bad.append((m[:8], res))
ok(not bad, "long prefix: refused at a send's start, its near miss and the same one byte in "
   "arrive whole", "wrong: %r" % bad)

# line framing: '\n' ends a line wherever it falls, the next line is judged
lines = b"".join(b"%s\n" % FILL[:n] for n in (0, 1, 7, 8, 9, 511, 512, 4095, 4096, 4097))
res, port = client(env, line.port, [send(lines)])
ok(res == [len(lines)] and line.got(port) == lines,
   "line framing: lines ending at word, block and window edges pass whole")
bad = []
for off in OFFSETS[:-1]:
    m = FILL[:off] + b"\n" + FILL[:off] + b"flushall\n"
    res, port = client(env, line.port, [send(m), send(b"PING\n")], linger=0)
    # the send reports the bytes passed before the denied line; the next
    # send fails
    if res != [off + 1, EACCES] or line.got(port) != FILL[:off] + b"\n":
        bad.append((off, res, len(line.got(port))))
ok(not bad, "line framing: a denied line after a line of any length is refused, the line "
   "before it arrives", "missed: %r" % bad[:10])

# no byte patterns: nothing is read, the length still decides
m = NOISY[:30000]
res, port = client(env, length.port, [big(m)])
ok(res == [len(m)] and length.got(port) == m,
   "no byte patterns: a send of 30000 bytes (not longer than 30000) arrives whole",
   "results %r, got %d bytes" % (res, len(length.got(port))))
m = NOISY[:30001]
res, port = client(env, length.port, [big(m)], linger=0)
ok(res == [EACCES] and length.got(port) == b"",
   "no byte patterns: a send of 30001 bytes is refused, the server sees none",
   "results %r, got %d bytes" % (res, len(length.got(port))))
is_(pd.rule_count(41), 1, "no byte patterns: the length rule counted one message")

pd.stop()
done()
