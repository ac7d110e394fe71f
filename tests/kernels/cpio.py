#!/usr/bin/env python3
"""cpio.py DIR OUT: DIR as an initramfs (the kernel's "newc" cpio format),
files owned by root, plus /dev/console (the kernel opens it for init's
standard streams before any /dev is mounted)."""
import os
import stat
import sys


def entry(out, ino, name, mode, data=b"", rdev=(0, 0), nlink=1):
    name_b = name.encode() + b"\0"
    hdr = "070701" + "".join("%08X" % v for v in (
        ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
        len(name_b), 0))
    out.write(hdr.encode() + name_b)
    out.write(b"\0" * (-(110 + len(name_b)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def main():
    top, dest = sys.argv[1], sys.argv[2]
    ino = 1
    with open(dest, "wb") as out:
        entry(out, ino, "dev", stat.S_IFDIR | 0o755, nlink=2)
        ino += 1
        entry(out, ino, "dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for n in sorted(dirs) + sorted(files):
                path = os.path.join(root, n)
                rel = os.path.relpath(path, top)
                st = os.lstat(path)
                ino += 1
                if stat.S_ISLNK(st.st_mode):
                    entry(out, ino, rel, st.st_mode, os.readlink(path).encode())
                elif stat.S_ISDIR(st.st_mode):
                    if rel != "dev":
                        entry(out, ino, rel, st.st_mode, nlink=2)
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        entry(out, ino, rel, st.st_mode, f.read())
        entry(out, 0, "TRAILER!!!", 0)


if __name__ == "__main__":
    main()
