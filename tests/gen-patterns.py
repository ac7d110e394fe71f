#!/usr/bin/env python3
"""Write a policy of N nocase contains patterns of 8-16 bytes (deny rules on
port 1): the size case the compiler and loader are held to.
Usage: gen-patterns.py OUT [N [SEED]]"""
import random
import sys

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
random.seed(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_-/."
rules = ",\n".join('{ id = %d; action = "deny"; contains = "%s"; nocase = true; }'
                   % (i + 1, "".join(random.choice(alphabet) for _ in range(random.randint(8, 16))))
                   for i in range(n))
with open(out, "w") as f:
    f.write('version = 1;\nservices = ({ name = "big"; ports = [ 1 ]; rules = (\n%s\n); });\n' % rules)
