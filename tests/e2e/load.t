#!/usr/bin/env bash
# The BPF programs load on this kernel with maps sized from real policies
# (the example profiles and 10,000 patterns), and images land in the maps.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
[ "$(id -u)" = 0 ] || skip_all "needs root to load BPF programs"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/big.conf" <<'PY'
import random, sys
random.seed(3)
al = "abcdefghijklmnopqrstuvwxyz0123456789_-/."
rules = ",\n".join('{ id = %d; action = "deny"; contains = "%s"; nocase = true; }'
                   % (i + 1, "".join(random.choice(al) for _ in range(random.randint(8, 16))))
                   for i in range(10000))
open(sys.argv[1], "w").write('version = 1;\nservices = ({ name = "big"; ports = [ 1 ]; rules = (\n%s\n); });\n' % rules)
PY
exec "$O/tests/e2e_load_image" policy-examples/*.conf "$tmp/big.conf"
