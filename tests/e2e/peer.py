#!/usr/bin/env python3
"""Test peers for the end-to-end tests.

client CGROUP SPEC_JSON   join the cgroup (or "-" for none), connect, run the
                          steps, print {"port": local port, "results": [...]}
                          where each result is the byte count or -errno.
server CGROUP HOST PORT SPEC_JSON
                          join the cgroup, accept one connection, run the steps
                          on it (replies), print the results the same way.

Steps: ["send", hex], ["sendmsg", [hex, ...]], ["sendfile", path],
["sendbuf", path] (one send() of the file's bytes, for data too long for
the command line),
["recv", n] (result: received bytes as hex), and, without a result,
["sleep", seconds] and ["wait", path] (until the file exists).
"""
import json
import os
import socket
import sys
import time


def join(cgroup):
    if cgroup != "-":
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))


def run_steps(sock, steps):
    results = []
    for step in steps:
        op = step[0]
        try:
            if op == "send":
                results.append(sock.send(bytes.fromhex(step[1])))
            elif op == "sendmsg":
                results.append(sock.sendmsg([bytes.fromhex(x) for x in step[1]]))
            elif op == "sendbuf":
                with open(step[1], "rb") as f:
                    results.append(sock.send(f.read()))
            elif op == "sendfile":
                with open(step[1], "rb") as f:
                    results.append(os.sendfile(sock.fileno(), f.fileno(), 0,
                                               os.fstat(f.fileno()).st_size))
            elif op == "shutdown":
                sock.shutdown(socket.SHUT_WR)
                results.append(0)
            elif op == "sleep":
                time.sleep(step[1])
            elif op == "wait":
                deadline = time.time() + 20
                while not os.path.exists(step[1]) and time.time() < deadline:
                    time.sleep(0.02)
                if not os.path.exists(step[1]):
                    raise SystemExit("timed out waiting for " + step[1])
            elif op == "recv":
                sock.settimeout(5)
                data = b""
                while len(data) < step[1]:
                    try:
                        chunk = sock.recv(step[1] - len(data))
                    except OSError:
                        if not data:
                            raise
                        break       # what arrived before a reset
                    if not chunk:
                        break
                    data += chunk
                results.append(data.hex())
            else:
                raise SystemExit("unknown step " + op)
        except OSError as e:
            results.append(-e.errno)
    return results


def main():
    role = sys.argv[1]
    join(sys.argv[2])
    if role == "client":
        spec = json.loads(sys.argv[3])
        family = socket.AF_INET6 if ":" in spec["host"] else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.connect((spec["host"], spec["port"]))
        port = s.getsockname()[1]
        results = run_steps(s, spec["steps"])
        time.sleep(spec.get("linger", 0.2))
        s.close()
    else:
        host, port, spec = sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        ls = socket.socket(family, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, port))
        ls.listen(1)
        if spec.get("ready"):
            open(spec["ready"], "w").close()
        s, peer = ls.accept()
        port = peer[1]
        results = run_steps(s, spec["steps"])
        time.sleep(spec.get("linger", 0.2))
        s.close()
    print(json.dumps({"port": port, "results": results}))


if __name__ == "__main__":
    main()
