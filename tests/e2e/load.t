#!/usr/bin/env python3
"""The BPF programs load on this kernel with maps sized from real policies
(the example profiles and 10,000 patterns), each with room to spare under
the verifier's limit, and images land in the maps
(tests/e2e/load_image.c: its checks are this file's)."""
import glob
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pdtest import BUILD, ROOT, Env, done, is_, ok, relay, slow  # noqa: E402

env = Env("load")
big = os.path.join(env.tmp, "big.conf")
gen = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "gen-patterns.py"), big,
                      "10000", "3"], capture_output=True, text=True)
ok(gen.returncode == 0, "tests/gen-patterns.py writes 10,000 patterns", gen.stderr)
confs = sorted(glob.glob(os.path.join(ROOT, "policy-examples", "*.conf"))) + [big]
out = subprocess.run([os.path.join(BUILD, "tests", "e2e_load_image")] + confs,
                     capture_output=True, text=True, timeout=slow(600))
checks, plan = relay(out.stdout)
for line in out.stderr.splitlines()[-20:]:
    print("# " + line, flush=True)
is_(out.returncode, 0, "e2e_load_image: exit 0")
ok(checks > 0 and plan == checks, "... its %d checks all ran (its plan: %s)" % (checks, plan))
done()
