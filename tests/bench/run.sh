#!/usr/bin/env bash
# make bench: policyd against no firewall and iptables -m string, in a
# network namespace of its own (the iptables rules never touch the host's),
# with the clients in a child cgroup of its own. Writes results.md and the
# plots next to this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "make bench: run as root (BPF, cgroups, namespaces)" >&2; exit 1; }
bash tests/deps.sh
bash tests/bench/deps.sh
# in the namespace only: reuse TIME_WAIT ports for new connections, so that
# the 10,000 connections of one configuration do not slow the next one down
exec unshare --net -- sh -c 'ip link set lo up &&
	sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="10000 65000" &&
	exec python3 tests/bench/bench.py'
