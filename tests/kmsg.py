#!/usr/bin/env python3
"""The kernel log check of the test harness: a test takes a mark (the
sequence number of the last record in the kernel's log buffer) when it
starts, and at its end every record after the mark that says the kernel
went wrong fails the test.

    kmsg.py mark         print the mark
    kmsg.py check MARK   print every bad record after MARK; exit 1 if any

Records are read from /dev/kmsg ("PRIORITY,SEQUENCE,TIME,FLAGS;TEXT", one
read per record). PD_KMSG names a file of such records to read instead:
the harness's own tests use it to feed recorded logs; nothing writes to
the kernel's log.
"""
import errno
import os
import re
import sys

# what a kernel says when something went wrong: WARN(), BUG(), refcount
# saturation and underflow, KASAN/KFENCE, oopses
BAD = re.compile(r"WARNING:|BUG:|refcount_t:|use-after-free|general protection")


def source():
    return os.environ.get("PD_KMSG") or "/dev/kmsg"


def _parse(record):
    """(sequence, text) of one record, or None for a continuation line."""
    head, sep, text = record.partition(";")
    if not sep or record.startswith(" "):
        return None
    fields = head.split(",")
    if len(fields) < 3:
        return None
    try:
        seq = int(fields[1])
    except ValueError:
        return None
    return seq, text.rstrip("\n")


def records(path=None):
    """Every (sequence, text) in the log buffer, oldest first."""
    path = path or source()
    out = []
    if path != "/dev/kmsg":
        with open(path, errors="replace") as f:
            for line in f:
                r = _parse(line)
                if r:
                    out.append(r)
        return out
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                buf = os.read(fd, 8192)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    break
                if e.errno == errno.EPIPE:   # overwritten while we read: go on
                    continue
                raise
            if not buf:
                break
            r = _parse(buf.decode(errors="replace").split("\n", 1)[0])
            if r:
                out.append(r)
    finally:
        os.close(fd)
    return out


def mark():
    """The sequence number of the newest record (-1 when the log is empty)."""
    recs = records()
    return recs[-1][0] if recs else -1


def bad_since(since, recs=None):
    """The records after the mark that say the kernel went wrong."""
    if recs is None:
        recs = records()
    return [(s, t) for s, t in recs if s > since and BAD.search(t)]


def main(argv):
    try:
        if len(argv) == 2 and argv[1] == "mark":
            print(mark())
            return 0
        if len(argv) == 3 and argv[1] == "check":
            bad = bad_since(int(argv[2]))
            for s, t in bad:
                print("kernel log #%d: %s" % (s, t))
            return 1 if bad else 0
    except OSError as e:
        print("cannot read the kernel log %s: %s" % (source(), e.strerror), file=sys.stderr)
        return 2
    print("usage: kmsg.py mark | check MARK", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
