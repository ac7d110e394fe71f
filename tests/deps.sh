#!/usr/bin/env bash
# Install the Debian packages policyd needs to build, test and demo, when
# they are missing. Quick and silent when everything is there. With
# "kernels": what make check-kernels needs besides (qemu to boot Debian's
# kernels, kmod to index their modules, xz to unpack them).
set -euo pipefail

if [ "${1:-}" = kernels ]; then
	pkgs=(qemu-system-x86 kmod xz-utils dpkg apt debian-archive-keyring python3 perl)
else
pkgs=(
	# build
	make gcc clang llvm libbpf-dev libconfig-dev libcap-dev libelf-dev zlib1g-dev
	linux-libc-dev bpftool pkg-config libclang-rt-14-dev libsystemd-dev
	# tests and demo: the peers of the profiles' end-to-end tests
	perl iproute2 procps util-linux redis-server redis-tools python3 rsyslog man-db
	memcached libmemcached-tools nginx-light curl openssl postgresql swaks wrk
	# packaging (make deb, tests/e2e/package.t), the unit's tests, metrics
	debhelper lintian dpkg-dev strace python3-prometheus-client prometheus-node-exporter
	bash-completion logrotate
	# make bench
	iperf3 iptables gnuplot-nox
)
fi
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "policyd: missing packages: ${missing[*]}; run 'make deps' as root" >&2
	exit 1
fi
echo "  DEPS     installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# the servers are test peers: their packages must not start system-wide
# services (nginx would listen on every address); the tests start their
# own on loopback
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
