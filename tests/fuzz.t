#!/usr/bin/env python3
# A short libFuzzer run over parse + compile (make fuzz runs longer).
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdtest import BUILD, ROOT, done, ok  # noqa: E402

os.chdir(ROOT)
corpus = tempfile.mkdtemp(prefix="policyd-fuzz.")
try:
    for f in glob.glob("policy-examples/*.conf") + glob.glob("tests/policies/bad/*.conf") + \
            glob.glob("tests/fuzz/*.conf"):
        shutil.copy(f, corpus)
    secs = os.environ.get("FUZZ_SMOKE_SECONDS") or "20"
    log = os.path.join(corpus, "log")
    with open(log, "wb") as out:
        st = subprocess.run([os.path.join(BUILD, "fuzz_policy"), "-max_total_time=" + secs,
                             "-timeout=10", "-dict=tests/fuzz/policy.dict",
                             "-artifact_prefix=%s/" % corpus, corpus],
                            stdout=out, stderr=out,
                            env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1",
                                     LSAN_OPTIONS="suppressions=tests/fuzz/lsan.supp:"
                                                  "print_suppressions=0")).returncode
    with open(log, errors="replace") as f:
        text = f.read()
    found = sorted(f for f in os.listdir(corpus) if re.match(r"(crash|leak|timeout)", f))
    ok(st == 0, "fuzzing parse + compile for %ss finds no crash, leak or hang" % secs,
       "\n".join(text.splitlines()[-30:] + found))
    for line in re.findall(r"^Done \d+ runs.*$", text, re.M):
        print("# " + line, flush=True)
finally:
    shutil.rmtree(corpus, ignore_errors=True)
done()
