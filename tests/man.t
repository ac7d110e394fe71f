#!/usr/bin/env bash
# The man pages: clean under man --warnings, installed by make install, and
# complete: every option of --help, every policy key the parser knows, the
# exit codes and signals; the example in policyd.conf(5) is a valid policy.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
command -v man >/dev/null || skip_all "man is not installed (make deps)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for page in policyd/policyd.8 policyd/policyd.conf.5; do
	warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null)
	is "$warn" "" "$page: man --warnings is clean"
	MANWIDTH=80 man -l "$page" 2>/dev/null | col -bx > "$tmp/$(basename "$page").txt"
done
p8="$tmp/policyd.8.txt"; p5="$tmp/policyd.conf.5.txt"

for opt in $("$PD" --help | grep -o -- '--[a-z-]*' | sort -u); do
	grep -q -- "$opt" "$p8"; ok $? "policyd(8) documents $opt"
done
# and the other way: every option policyd(8) lists is in --help
opts8=$(sed -n '/^     The options are:/,/^[A-Z]/p' "$p8" | grep -oE -- '^     (-[a-zA-Z], )?--[a-z-]+' | grep -oE -- '--[a-z-]+')
[ "$(echo "$opts8" | wc -w)" -ge 10 ]; ok $? "policyd(8) lists its options ($(echo $opts8 | wc -w))"
for opt in $opts8; do
	"$PD" --help | grep -q -- "$opt"; ok $? "--help lists $opt, which policyd(8) documents"
done
for cmd in check dump test run reload stats; do
	grep -qE "^     $cmd " "$p8"; ok $? "policyd(8) documents the command $cmd"
done
for sig in SIGHUP SIGTERM SIGINT SIGKILL; do
	grep -q "$sig" "$p8"; ok $? "policyd(8) documents $sig"
done
for code in 0 1 2 3 4; do
	sed -n '/^EXIT STATUS/,/^FILES/p' "$p8" | grep -qE "^     $code +[A-Z]"
	ok $? "policyd(8) documents exit status $code"
done
grep -q 'Linux 6.13 or later' "$p8"; ok $? "policyd(8) states the kernel floor"
grep -q 'UDP' "$p8" && grep -q 'kTLS' "$p8"; ok $? "policyd(8) states the UDP and TLS limits"

# every key in the parser's key lists, and every word it accepts
keys=$(sed -n 's/.*keys\[\] = {\(.*\)/\1/p; s/^\t*\("[a-z_]*", \)/\1/p' policyd/parse.c |
	grep -o '"[a-z_]*"' | tr -d '"' | sort -u)
[ -n "$keys" ]; ok $? "the parser's keys are found ($(echo $keys | wc -w))"
for k in $keys; do
	grep -qiE "^     $k( |$)|^$k$" "$p5"; ok $? "policyd.conf(5) documents the key $k"
done
for w in detach keep enforce monitor to from both none line allow deny audit redirect; do
	grep -q "\"$w\"" "$p5"; ok $? "policyd.conf(5) documents \"$w\""
done
for d in '"nobody"' '"/sys/fs/bpf/policyd"' 'Default: 100' 'Default: 64' '(the default)'; do
	perl -CSD -0pe 's/\x{2010}\n\s*//g; s/\s+/ /g' "$p5" | grep -qF "$d"; ok $? "policyd.conf(5) states the default $d"
done

sed -n '/^EXAMPLES/,/^SEE ALSO/p' "$p5" | sed '1d;$d' | sed 's#/var/lib/policyd#'"$tmp"'#' > "$tmp/example.conf"
out=$("$PD" check -c "$tmp/example.conf" 2>&1); ok $? "the example in policyd.conf(5) passes check: $out"

make -s install DESTDIR="$tmp/root" PREFIX=/usr/local >/dev/null 2>&1
ok $? "make install runs"
for f in sbin/policyd share/man/man8/policyd.8 share/man/man5/policyd.conf.5 \
	lib/systemd/system/policyd.service share/policyd/examples/redis.conf \
	lib/sysusers.d/policyd.conf lib/tmpfiles.d/policyd.conf \
	share/bash-completion/completions/policyd; do
	[ -f "$tmp/root/usr/local/$f" ]; ok $? "make install puts $f"
done
for f in policyd/policy.conf logrotate.d/policyd; do
	[ -f "$tmp/root/etc/$f" ]; ok $? "make install puts /etc/$f"
done
make -s install DESTDIR="$tmp/usr" PREFIX=/usr >/dev/null 2>&1
grep -q 'ExecStart=/usr/sbin/policyd run' "$tmp/usr/usr/lib/systemd/system/policyd.service" &&
	grep -q '^\.It Pa /usr/share/policyd/examples/' "$tmp/usr/usr/share/man/man8/policyd.8" &&
	grep -q '^\.It Pa /usr/lib/systemd/system/policyd.service' "$tmp/usr/usr/share/man/man8/policyd.8" &&
	! grep -rq /usr/local "$tmp/usr"
ok $? "make install PREFIX=/usr: the unit and the man pages name /usr paths, none /usr/local"
echo '# local policy' > "$tmp/usr/etc/policyd/policy.conf"
make -s install DESTDIR="$tmp/usr" PREFIX=/usr >/dev/null 2>&1
is "$(cat "$tmp/usr/etc/policyd/policy.conf")" "# local policy" "make install keeps an existing policy"
# the starter policy is what the generator makes of the profiles
python3 tests/gen-audit-all.py "$PD" "$tmp/starter.conf" starter
diff -u policyd/policy.conf "$tmp/starter.conf" >/dev/null
ok $? "policyd/policy.conf is up to date with the profiles (tests/gen-audit-all.py starter)"
grep -qx '  mode = "monitor";.*' policyd/policy.conf; ok $? "the starter policy is in monitor mode"
done_testing
