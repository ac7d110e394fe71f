# Private test environment for the shell end-to-end tests and the demo:
# a child cgroup of our own, a pin directory of our own, a scratch
# directory, and the processes we start; all removed on every exit path.
# Servers listen on loopback only. Source it, then call env_setup NAME.
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
}

env_cleanup() {
	local p
	# every step runs even under set -e: wait returns a killed
	# process's status, which would end the cleanup there
	set +e
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	if [ -f "$CG/cgroup.procs" ]; then
		while read -r p; do kill -9 "$p" 2>/dev/null; done < "$CG/cgroup.procs"
		for _ in $(seq 50); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
	fi
	if [ -d "$PIN" ]; then
		rm -f "$PIN"/*
		rmdir "$PIN"
	fi
	rm -rf "$TMP"
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

# start_redis PORT: a throwaway redis-server on 127.0.0.1, nothing saved
start_redis() {
	redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$TMP" >"$TMP/redis.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do
		redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

# start_policyd CONF [ARGS...]: policyd run --foreground, log in $TMP/policyd.log
start_policyd() {
	local conf=$1; shift
	"$PD" run -c "$conf" --cgroup "$CG" --pin-dir "$PIN" --foreground "$@" \
		>"$TMP/policyd.log" 2>&1 &
	PDPID=$!
	PIDS+=($PDPID)
	for _ in $(seq 200); do
		grep -q 'started:' "$TMP/policyd.log" && return 0
		kill -0 "$PDPID" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

stop_policyd() {
	kill -TERM "$PDPID" && wait "$PDPID"
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
		in_cgroup nginx -c "$TMP/ngx/nginx.conf" -p "$TMP/ngx" -g 'daemon off;' &
	else
		nginx -c "$TMP/ngx/nginx.conf" -p "$TMP/ngx" -g 'daemon off;' &
	fi
	PIDS+=($!)
	for _ in $(seq 50); do
		curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
		sleep 0.1
	done
	return 1
}
