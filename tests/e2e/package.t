#!/usr/bin/env bash
# The Debian package: `make deb` builds it with debhelper, lintian has
# nothing to say, `dpkg -i` installs the binary, man pages, unit, starter
# policy (monitor mode), the policyd account (sysusers.d), /var/lib/policyd
# (tmpfiles.d), logrotate and bash completion, the unit verifies, the
# installed policyd runs the starter policy as the policyd account, where
# systemd runs the service starts and reloads, and `dpkg --purge` leaves
# nothing behind.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (dpkg -i)"
for t in dpkg-buildpackage dh lintian systemd-analyze git; do
	command -v "$t" >/dev/null || skip_all "$t is not installed (make deps)"
done
if dpkg-query -W -f='${Status}' policyd 2>/dev/null | grep -q installed; then
	skip_all "a policyd package is installed on this host already: not touching it"
fi
env_setup package || skip_all "cannot make a cgroup"
installed=0
cleanup() {
	[ "$installed" = 1 ] && dpkg_locked --purge policyd >/dev/null 2>&1
	env_cleanup
}
trap cleanup EXIT

# dpkg ARGS, waiting for another dpkg or apt to finish (up to 5 minutes)
dpkg_locked() {
	local i
	for i in $(seq 150); do
		dpkg "$@" 2>"$TMP/dpkg.err" && return 0
		grep -q 'lock' "$TMP/dpkg.err" || { cat "$TMP/dpkg.err" >&2; return 1; }
		sleep 2
	done
	return 1
}

make -s deb O="$TMP/o" >"$TMP/deb.log" 2>&1; ok $? "make deb builds" || tail -20 "$TMP/deb.log" | sed 's/^/# /'
deb=$(ls "$TMP"/o/deb/policyd_*.deb 2>/dev/null | head -1)
[ -f "$deb" ]; ok $? "the package: $(basename "${deb:-none}")" || { done_testing; exit; }
lint=$(lintian -I --pedantic "$deb" 2>&1 | grep -v 'running with root privileges')
is "$lint" "" "lintian: nothing to say (overrides explained in policyd/debian/policyd.lintian-overrides)"

dpkg_locked -i "$deb" >"$TMP/install.log"; st=$?
[ $st = 0 ] && installed=1
ok $st "dpkg -i installs it" || sed 's/^/# /' "$TMP/install.log"
/usr/sbin/policyd --version | grep -q '^policyd '; ok $? "/usr/sbin/policyd runs"
for f in /lib/systemd/system/policyd.service /etc/policyd/policy.conf /usr/lib/sysusers.d/policyd.conf \
	/usr/lib/tmpfiles.d/policyd.conf /etc/logrotate.d/policyd \
	/usr/share/bash-completion/completions/policyd /usr/share/man/man8/policyd.8.gz \
	/usr/share/man/man5/policyd.conf.5.gz /usr/share/policyd/examples/redis.conf; do
	[ -f "$f" ]; ok $? "installs $f"
done
grep -qx 'ExecStart=/usr/sbin/policyd run -c /etc/policyd/policy.conf' /lib/systemd/system/policyd.service
ok $? "the unit runs /usr/sbin/policyd"
man -P cat /usr/share/man/man8/policyd.8.gz 2>/dev/null | col -bx > "$TMP/man8.txt"
grep -q '/usr/share/policyd/examples/' "$TMP/man8.txt" && grep -q '/lib/systemd/system/policyd.service' "$TMP/man8.txt" &&
	! grep -q '/usr/local' "$TMP/man8.txt"
ok $? "policyd(8) FILES names the installed paths"
systemd-analyze verify /lib/systemd/system/policyd.service >"$TMP/verify.out" 2>&1
ok $? "systemd-analyze verify of the installed unit" || sed 's/^/# /' "$TMP/verify.out"
id -u policyd >/dev/null 2>&1; ok $? "sysusers.d made the policyd account"
is "$(stat -c '%a %U %G' /var/lib/policyd 2>&1)" "770 root policyd" "tmpfiles.d made /var/lib/policyd"
is "$(/usr/sbin/policyd check /etc/policyd/policy.conf 2>&1 >/dev/null)" "" "the starter policy passes check without a warning"
grep -qx '  mode = "monitor";.*' /etc/policyd/policy.conf; ok $? "the starter policy is in monitor mode"
bash -c '. /usr/share/bash-completion/bash_completion; . /usr/share/bash-completion/completions/policyd
	COMP_WORDS=(policyd stats --f); COMP_CWORD=2; COMP_LINE="policyd stats --f"; COMP_POINT=${#COMP_LINE}
	_policyd; echo "${COMPREPLY[*]}"' > "$TMP/comp.out" 2>&1
is "$(cat "$TMP/comp.out")" "--format" "bash completion completes stats --f"
if command -v logrotate >/dev/null; then
	logrotate -d /etc/logrotate.d/policyd >"$TMP/lr.out" 2>&1; ok $? "logrotate reads the snippet" || sed 's/^/# /' "$TMP/lr.out"
fi

# the installed daemon on the starter policy, in our own cgroup and pins
"/usr/sbin/policyd" run -c /etc/policyd/policy.conf --cgroup "$CG" --pin-dir "$PIN" --foreground \
	>"$TMP/policyd.log" 2>&1 &
PDPID=$!
PIDS+=($PDPID)
for _ in $(seq 200); do grep -q 'started:' "$TMP/policyd.log" && break; sleep 0.05; done
grep -q 'started: .*mode monitor' "$TMP/policyd.log"; ok $? "the installed policyd runs the starter policy in monitor mode" ||
	sed 's/^/# /' "$TMP/policyd.log"
sleep 0.3
is "$(awk '/^Uid:/ { print $2 }' /proc/$PDPID/status 2>/dev/null)" "$(id -u policyd 2>/dev/null || echo none)" "... as the policyd account"
kill -TERM $PDPID; wait $PDPID; ok $? "... and stops cleanly"

if [ -d /run/systemd/system ]; then
	systemctl is-active --quiet policyd; ok $? "systemd started the service"
	systemctl reload policyd; ok $? "systemctl reload"
else
	echo "# systemd is not PID 1 here ($(cat /proc/1/comm)): the service is not started by dpkg -i"
fi

dpkg_locked --purge policyd >"$TMP/purge.log"; st=$?
ok $st "dpkg --purge" || sed 's/^/# /' "$TMP/purge.log"
[ $st = 0 ] && installed=0
left=""
for f in /usr/sbin/policyd /etc/policyd /var/lib/policyd /lib/systemd/system/policyd.service \
	/etc/logrotate.d/policyd /usr/share/policyd /usr/lib/tmpfiles.d/policyd.conf; do
	[ -e "$f" ] && left="$left $f"
done
is "$left" "" "purge leaves none of its files"
done_testing
