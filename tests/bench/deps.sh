#!/usr/bin/env bash
# Install the Debian packages make bench needs on top of tests/deps.sh's
# (the user-space proxy it is compared with, perf), when they are
# missing. Quick and silent when everything is there.
set -euo pipefail

pkgs=(
	# the servers, the profiles' load generators (wrk, memaslap,
	# pgbench, redis-benchmark), iperf3, iptables and gnuplot come with
	# tests/deps.sh. The user-space proxy policyd is compared with:
	haproxy
	# where the time goes
	linux-perf
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "policyd: missing packages for make bench: ${missing[*]}; run 'make bench' as root" >&2
	exit 1
fi
echo "  DEPS     installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# the servers are the bench's peers: their packages must not start
# system-wide services (haproxy and nginx would listen on every address);
# the bench starts its own on loopback
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
