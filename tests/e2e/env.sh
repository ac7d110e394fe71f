# Private test environment for the shell end-to-end tests and the demo:
# a child cgroup of our own, a pin directory of our own, a scratch
# directory, and the processes we start; all removed on every exit path.
# Servers listen on loopback only, their output goes to files in $TMP
# (never to the test's output, which prove waits on). With tests/lib.sh
# sourced first, the kernel log is checked from env_setup on, and a
# policyd that does not start ends the test at once with its log.
# Source it, then call env_setup NAME.
# shellcheck shell=bash

env_setup() {
	local mount
	mount=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
	[ -n "$mount" ] || { echo "no cgroup2 file system is mounted" >&2; return 1; }
	CG="$mount/policyd-$1-$$"
	PIN="/sys/fs/bpf/policyd-$1-$$"
	TMP=$(mktemp -d "/tmp/policyd-$1.XXXXXX")
	chmod 755 "$TMP"   # policyd re-reads its policy as an unprivileged user
	PIDS=()
	mkdir "$CG" || return 1
	trap env_cleanup EXIT
	trap 'exit 130' INT TERM HUP
	! declare -F kernel_log_mark >/dev/null || kernel_log_mark
}

# cgroup_empty DIR: end every process in the cgroup DIR and remove it;
# fails, saying what is left, if it cannot within a few seconds
cgroup_empty() {
	local cg=$1 p i
	[ -d "$cg" ] || return 0
	for i in $(seq 100); do
		if [ -e "$cg/cgroup.kill" ]; then
			echo 1 > "$cg/cgroup.kill" 2>/dev/null
		else    # before Linux 5.14: kill what is there, again until it is empty
			while read -r p; do kill -9 "$p" 2>/dev/null; done < "$cg/cgroup.procs"
		fi
		rmdir "$cg" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "cannot remove the test's cgroup $cg; processes left in it:" \
		"$(tr '\n' ' ' < "$cg/cgroup.procs" 2>/dev/null)" >&2
	return 1
}

env_cleanup() {
	local p st=$? bad=0
	# every step runs even under set -e: wait returns a killed
	# process's status, which would end the cleanup there
	set +e
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	cgroup_empty "$CG" || bad=1
	if [ -d "$PIN" ]; then
		rm -f "$PIN"/*
		rmdir "$PIN" || bad=1
	fi
	rm -rf "$TMP"
	[ "$bad" = 0 ] || { echo "cleanup failed: see above" >&2; exit $(( st ? st : 1 )); }
}

# wait_port PORT: wait until a server listens on 127.0.0.1:PORT (at most
# 10 s times PD_SLOW; a python3 server can take seconds to start on a busy
# machine); the probe is a connection that closes at once
wait_port() { wait_for 10 _port_open "$1"; }
_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_bg NAME CMD...: start CMD (a server) in the background, its output
# in $TMP/NAME.log; it is stopped at cleanup
start_bg() {
	local name=$1; shift
	"$@" >"$TMP/$name.log" 2>&1 &
	PIDS+=($!)
}

# wait_for SECONDS CMD...: run CMD until it succeeds, for at most SECONDS
# (times PD_SLOW: tests/lib.sh's sleep)
wait_for() {
	local t i
	t=$(awk -v s="$1" 'BEGIN { print int(s * 20) + 1 }'); shift
	for i in $(seq "$t"); do "$@" && return 0; sleep 0.05; done
	"$@"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# in_cgroup CMD...: run CMD as a process of our cgroup
in_cgroup() {
	sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG" "$@"
}

# kv_policy FILE FIRST_ID DAEMON WORD...: a line-framed service "kv" on
# $port denying each WORD (rule ids from FIRST_ID), with the daemon
# settings DAEMON when not empty
kv_policy() {
	local f=$1 id=$2 first=$2 daemon=$3 w; shift 3
	{
		echo "version = 1;"
		[ -z "$daemon" ] || echo "daemon = { $daemon };"
		echo "services = ( { name = \"kv\"; ports = [ $port ]; framing = \"line\"; rules = ("
		for w in "$@"; do
			[ "$id" -gt "$first" ] && echo ","
			echo "{ id = $id; action = \"deny\"; contains = \"$w\"; }"
			id=$((id + 1))
		done
		echo "); } );"
	} > "$f"
}

# sendline LINE: the errno (0: sent) of sending LINE and a newline on a
# new connection to 127.0.0.1:$port, from our cgroup
sendline() {
	in_cgroup python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
try:
    s.send(sys.argv[2].encode() + b"\n"); print(0)
except OSError as e:
    print(e.errno)' "$port" "$1"
}

# sendlines COUNT LINE: COUNT new connections to 127.0.0.1:$port from our
# cgroup, each sending LINE and a newline, as fast as one process can
# (a burst that takes no longer on a slow machine than a few starts of a
# program would); prints the errno of each send (0: sent)
sendlines() {
	in_cgroup python3 -c '
import socket, sys
for _ in range(int(sys.argv[2])):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    try:
        s.send(sys.argv[3].encode() + b"\n"); print(0)
    except OSError as e:
        print(e.errno)
    s.close()' "$port" "$1" "$2"
}

# start_recorder PORT FILE: a server on 127.0.0.1:PORT, outside the
# cgroup, that appends every byte of every connection to FILE (its own
# output in $TMP/server.log); stopped at cleanup. A client reset (a denied
# connection aborted) ends that connection quietly.
start_recorder() {
	python3 - "$1" "$2" <<'PY' >>"$TMP/server.log" 2>&1 &
import socket, sys, threading
threading.excepthook = lambda a: None if issubclass(a.exc_type, ConnectionError) else sys.__excepthook__(a.exc_type, a.exc_value, a.exc_traceback)
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(256)
out = open(sys.argv[2], "ab", buffering=0)
lock = threading.Lock()
def serve(c):
    while True:
        b = c.recv(65536)
        if not b: break
        with lock: out.write(b)
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
	PIDS+=($!)
}

# start_redis PORT: a throwaway redis-server on 127.0.0.1, nothing saved
start_redis() {
	start_bg redis redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$TMP"
	wait_for 5 _redis_answers "$1"
}
_redis_answers() { redis-cli -p "$1" ping >/dev/null 2>&1; }

_policyd_started() {
	grep -q 'started:' "$TMP/policyd.log" && return 0
	kill -0 "$PDPID" 2>/dev/null || return 2   # it exited: no use waiting
	return 1
}

# start_policyd CONF [ARGS...]: policyd run --foreground, log in
# $TMP/policyd.log. In a test (tests/lib.sh sourced) a policyd that does
# not start ends the test here with its log: nothing a test does after
# means anything without it, and a server left unguarded may hang it.
start_policyd() {
	local conf=$1 st i; shift
	"$PD" run -c "$conf" --cgroup "$CG" --pin-dir "$PIN" --foreground "$@" \
		>"$TMP/policyd.log" 2>&1 &
	PDPID=$!
	PIDS+=($PDPID)
	for i in $(seq 200); do     # 10 s (times PD_SLOW: tests/lib.sh's sleep)
		_policyd_started; st=$?
		[ "$st" = 1 ] || break
		sleep 0.05
	done
	[ "$st" = 0 ] && return 0
	declare -F fail_now >/dev/null || return 1
	if [ "$st" = 2 ]; then
		wait "$PDPID"
		fail_now "policyd starts (it exited with status $?; its log:)" "$TMP/policyd.log"
	fi
	fail_now "policyd starts (no 'started:' line after $(slow 10) s; its log:)" "$TMP/policyd.log"
}

# stop_policyd: SIGTERM, and its exit status (a policyd that does not stop
# within 20 s times PD_SLOW is killed: status 137)
stop_policyd() {
	local i
	kill -TERM "$PDPID" || return
	for i in $(seq 400); do     # 20 s (times PD_SLOW)
		kill -0 "$PDPID" 2>/dev/null || break
		sleep 0.05
	done
	kill -0 "$PDPID" 2>/dev/null && { echo "policyd did not stop on SIGTERM: killed" >&2
		kill -KILL "$PDPID"; }
	wait "$PDPID"
}

# start_nginx PORT ROOT [in|out] [DIRECTIVES]: a throwaway nginx on
# 127.0.0.1:PORT serving ROOT, its files under $TMP/ngx (access.log lines:
# status "request" ua= api= xff=), /api/ answering any method; "in" runs
# it as a process of our cgroup
start_nginx() {
	local port=$1 root=$2 where=${3:-out} extra=${4:-}
	mkdir -p "$TMP/ngx"
	cat > "$TMP/ngx/nginx.conf" <<EOF
user nobody nogroup;
worker_processes 1;
pid $TMP/ngx/nginx.pid;
error_log $TMP/ngx/error.log;
events { worker_connections 64; }
http {
	log_format pd '\$status "\$request" ua="\$http_user_agent" api="\$http_x_api_version" xff="\$http_x_forwarded_for"';
	access_log $TMP/ngx/access.log pd;
	client_body_temp_path $TMP/ngx/body;
	proxy_temp_path $TMP/ngx/proxy;
	fastcgi_temp_path $TMP/ngx/fastcgi;
	uwsgi_temp_path $TMP/ngx/uwsgi;
	scgi_temp_path $TMP/ngx/scgi;
	client_max_body_size 4m;
	$extra
	server {
		listen 127.0.0.1:$port;
		root $root;
		location /api/ { return 200 "ok \$request_method \$request_length\n"; }
	}
}
EOF
	nginx -t -c "$TMP/ngx/nginx.conf" -p "$TMP/ngx" >/dev/null 2>&1 || return 1
	if [ "$where" = in ]; then
		start_bg nginx in_cgroup nginx -c "$TMP/ngx/nginx.conf" -p "$TMP/ngx" -g 'daemon off;'
	else
		start_bg nginx nginx -c "$TMP/ngx/nginx.conf" -p "$TMP/ngx" -g 'daemon off;'
	fi
	wait_for 5 curl -s -m 2 -o /dev/null "http://127.0.0.1:$port/"
}
