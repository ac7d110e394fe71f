#!/usr/bin/env bash
# The BPF programs load on this kernel with maps sized from real policies
# (the example profiles and 10,000 patterns), and images land in the maps.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
[ "$(id -u)" = 0 ] || skip_all "needs root to load BPF programs"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tests/gen-patterns.py "$tmp/big.conf" 10000 3
exec "$O/tests/e2e_load_image" policy-examples/*.conf "$tmp/big.conf"
