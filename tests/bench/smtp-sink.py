#!/usr/bin/env python3
"""make bench's SMTP server: enough of RFC 5321 for smtplib, on
127.0.0.1:PORT, every message appended to FILE. The reply to a message
says how many bytes of it arrived, so that the client can check that
each arrived whole. Usage: smtp-sink.py PORT FILE"""
import asyncio
import sys


async def serve(reader, writer, out):
    def reply(s):
        writer.write(s + b"\r\n")
    reply(b"220 bench.local ESMTP")
    data = None
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if data is not None:
                if line in (b".\r\n", b".\n"):
                    msg = b"".join(data)
                    out.write(msg + b"--END--\n")
                    reply(b"250 2.0.0 queued %d bytes" % len(msg))
                    data = None
                else:
                    data.append(line[1:] if line.startswith(b"..") else line)
                continue
            verb = line.split(b" ")[0].strip().upper()
            if verb == b"EHLO":
                reply(b"250-bench.local\r\n250-PIPELINING\r\n250 8BITMIME")
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                reply(b"250 2.0.0 ok")
            elif verb == b"DATA":
                data = []
                reply(b"354 go ahead")
            elif verb == b"QUIT":
                reply(b"221 bye")
                await writer.drain()
                break
            else:
                reply(b"502 5.5.2 not implemented")
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def main(port, path):
    out = open(path, "ab")
    srv = await asyncio.start_server(lambda r, w: serve(r, w, out), "127.0.0.1", port,
                                     backlog=1024)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
