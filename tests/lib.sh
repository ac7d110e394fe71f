# Shared helpers for the shell tests: TAP output and the build directory.
# shellcheck shell=bash
O=${O:-build}
PD=${PD:-$O/policyd}
_n=0
_failed=0

ok() {   # ok CONDITION-EXIT-STATUS DESCRIPTION
	local st=$1; shift
	_n=$((_n + 1))
	if [ "$st" -eq 0 ]; then
		echo "ok $_n - $*"
	else
		echo "not ok $_n - $*"
		_failed=$((_failed + 1))
	fi
	return "$st"   # so that `ok ... || diagnose` shows why
}

# is GOT WANT DESCRIPTION
is() {
	if [ "$1" = "$2" ]; then ok 0 "$3"; else
		ok 1 "$3"
		printf '%s\n' "got:  $1" "want: $2" | sed 's/^/#   /'
	fi
}

skip_all() { echo "1..0 # SKIP $*"; exit 0; }

done_testing() {
	echo "1..$_n"
	[ "$_failed" -eq 0 ]
}
