#!/usr/bin/env bash
# fetch.sh NAME DIR: Debian's kernel package for NAME (see kernel_suites),
# downloaded with apt-get through a private apt state under DIR and
# unpacked with dpkg -x into DIR/NAME/root. Nothing is installed and the
# host's apt sources and state are not touched: the package lists, cache
# and sources of each release live under DIR/apt. Prints the kernel
# release (the modules directory's name). Also fetches busybox-static
# (for the guest's initramfs) into DIR/busybox.
set -euo pipefail

name=$1
dir=$(realpath -m "$2")
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# NAME -> the suites whose newest linux-image-amd64 is that kernel
kernel_suites() {
	case $1 in
	6.1) printf '%s\n' "debian bookworm" "debian bookworm-updates" \
		"debian-security bookworm-security" ;;
	6.12) printf '%s\n' "debian trixie" "debian trixie-updates" \
		"debian-security trixie-security" ;;
	bpo) printf '%s\n' "debian trixie-backports" ;;
	*) return 1 ;;
	esac
}

kernel_suites "$name" > /dev/null || {
	echo "fetch: unknown kernel '$name' (known: 6.1, 6.12, bpo)" >&2
	exit 2
}
[ -r "$keyring" ] || { echo "fetch: $keyring is missing (debian-archive-keyring)" >&2; exit 1; }

# state NAME: a private apt state for NAME's suites under $dir/apt/NAME,
# its lists read again after a day (KERNELS_REFRESH=1: now); sets apt_opts
state() {
	local st=$dir/apt/$1 archive suite
	mkdir -p "$st/lists/partial" "$st/cache/archives/partial" "$st/prefs" "$st/parts"
	kernel_suites "$1" | while read -r archive suite; do
		echo "deb [signed-by=$keyring] http://deb.debian.org/$archive $suite main"
	done > "$st/sources.list"
	apt_opts=(
		-o Dir::Etc::sourcelist="$st/sources.list" -o Dir::Etc::sourceparts="$st/parts"
		-o Dir::Etc::preferences=/dev/null -o Dir::Etc::preferencesparts="$st/prefs"
		-o Dir::State::lists="$st/lists" -o Dir::Cache="$st/cache"
		-o Dir::State::status=/dev/null -o APT::Sandbox::User=root
		-o APT::Architecture=amd64 -o APT::Architectures=amd64
	)
	if [ ! -e "$st/updated" ] || [ -n "${KERNELS_REFRESH:-}" ] ||
	   [ -n "$(find "$st/updated" -mmin +1440)" ]; then
		apt-get -qq "${apt_opts[@]}" update >&2
		touch "$st/updated"
	fi
}

# linux-image-amd64 depends on the versioned package, e.g.
# linux-image-6.12.118+deb13-amd64 (the modules directory's name after
# "linux-image-"); since 7.x that one depends on linux-binary-* (the
# kernel), linux-modules-* and linux-base-* (modules.builtin, config) of
# the same release
depends() {
	apt-cache "${apt_opts[@]}" show --no-all-versions "$1" |
		sed -n 's/^Depends: //p' | tr ',' '\n' | sed 's/^ *//; s/ .*//'
}
state "$name"
image=$(depends linux-image-amd64 | grep -m1 '^linux-image-')
release=${image#linux-image-}
[ -n "$release" ] || { echo "fetch: no linux-image-amd64 for $name" >&2; exit 1; }
pkgs=("$image")
for p in $(depends "$image"); do
	case $p in linux-binary-"$release" | linux-modules-"$release" | linux-base-"$release")
		pkgs+=("$p") ;;
	esac
done

out=$dir/$name
if [ "$(cat "$out/release" 2>/dev/null)" != "$release" ]; then
	rm -rf "$out"
	mkdir -p "$out/debs"
	(cd "$out/debs" && apt-get -qq "${apt_opts[@]}" download "${pkgs[@]}" >&2)
	for d in "$out"/debs/*.deb; do dpkg -x "$d" "$out/root"; done
	# the module index the packages leave to their postinst (depmod
	# reads <base>/lib/modules; 6.12 and later ship /usr/lib/modules)
	[ -e "$out/root/lib" ] || ln -s usr/lib "$out/root/lib"
	depmod -b "$out/root" "$release"
	echo "$release" > "$out/release"
	rm -rf "$out/debs"
fi

# busybox for the initramfs, from this machine's release (Debian 12)
if [ ! -x "$dir/busybox/bin/busybox" ]; then
	state 6.1
	rm -rf "$dir/busybox" "$dir/busybox.deb"
	mkdir -p "$dir/busybox.deb"
	(cd "$dir/busybox.deb" && apt-get -qq "${apt_opts[@]}" download busybox-static >&2)
	dpkg -x "$dir"/busybox.deb/busybox-static_*.deb "$dir/busybox"
	rm -rf "$dir/busybox.deb"
fi
echo "$release"
