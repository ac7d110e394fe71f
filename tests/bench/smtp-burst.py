#!/usr/bin/env python3
"""make bench's SMTP client: WORKERS processes, each on one connection
sending MESSAGES messages with smtplib; prints messages per second. Each
message must be answered 250 with its own length in bytes (smtp-sink.py),
or the run fails. Usage: smtp-burst.py PORT WORKERS MESSAGES"""
import multiprocessing
import re
import smtplib
import sys
import time

BODY = ("Subject: nightly report\r\nFrom: app@example.org\r\nTo: ops@example.org\r\n\r\n"
        + "".join("line %03d of the report: the verify step and the expand step are fine.\r\n" % i
                  for i in range(28)))


def worker(port, n, start):
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("bench.local")
    start.wait()
    for _ in range(n):
        s.mail("app@example.org")
        code, _ = s.rcpt("ops@example.org")
        if code != 250:
            sys.exit("RCPT answered %d" % code)
        code, msg = s.data(BODY)
        m = re.match(rb"2\.0\.0 queued (\d+) bytes", msg)
        if code != 250 or not m or int(m.group(1)) != len(BODY):
            sys.exit("DATA answered %d %r (sent %d bytes)" % (code, msg, len(BODY)))
    s.quit()


def main():
    port, workers, n = map(int, sys.argv[1:4])
    start = multiprocessing.Barrier(workers + 1)
    ps = [multiprocessing.Process(target=worker, args=(port, n, start)) for _ in range(workers)]
    for p in ps:
        p.start()
    start.wait()
    t = time.monotonic()
    for p in ps:
        p.join()
    el = time.monotonic() - t
    if any(p.exitcode for p in ps):
        sys.exit("a client failed")
    print(workers * n / el)


if __name__ == "__main__":
    main()
