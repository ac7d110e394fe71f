#!/usr/bin/env bash
# policy-examples/http-client.conf with a real nginx and curl: a normal
# browsing and API workload passes, with nginx's own answers; the denied
# methods, traversals, ${jndi:} lookups and secret-file requests are
# refused before nginx sees a byte of them.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
command -v nginx >/dev/null && command -v curl >/dev/null || skip_all "nginx or curl is not installed (make deps)"
env_setup http || skip_all "cannot make a cgroup"

port=$(free_port)
sed "s/ports = \[ 80, 8080 \]/ports = [ $port ]/" policy-examples/http-client.conf > "$TMP/p.conf"
grep -q "ports = \[ $port \]" "$TMP/p.conf"; ok $? "the profile's ports are adapted to $port"

mkdir -p "$TMP/www/docs" "$TMP/www/.well-known"
echo '<h1>home</h1>' > "$TMP/www/index.html"
echo 'contact: security@example.org' > "$TMP/www/.well-known/security.txt"
echo 'release notes...' > "$TMP/www/docs/a..b.txt"
echo 'environment page' > "$TMP/www/docs/environment.html"
echo 'SECRET=hunter2' > "$TMP/www/.env"
head -c 1048576 /dev/urandom > "$TMP/www/big.bin"
start_nginx "$port" "$TMP/www" out 'gzip on; gzip_types text/plain;'
ok $? "nginx serves on 127.0.0.1:$port"
start_policyd "$TMP/p.conf"; ok $? "policyd runs the http-client profile"
: > "$TMP/ngx/access.log"

u="http://127.0.0.1:$port"
# c ARGS...: curl from inside the cgroup; prints "exit code/http code"
c() { in_cgroup curl -s -o "$TMP/body" -w '%{http_code}' "$@" > "$TMP/code"; echo "$?/$(cat "$TMP/code")"; }

is "$(c "$u/")" "0/200" "GET /"
grep -q '<h1>home</h1>' "$TMP/body"; ok $? "... with nginx's page"
is "$(c -I "$u/index.html")" "0/200" "HEAD"
is "$(c "$u/docs/a..b.txt?x=1&y=../notapath")" "0/200" "a file name with '..' and a query with '../' in a value"
is "$(c "$u/docs/environment.html")" "0/200" "a page whose name starts with 'env'"
is "$(c "$u/.well-known/security.txt")" "0/200" "/.well-known/ (a dot directory that is meant to be public)"
is "$(c -r 100-199 "$u/big.bin")" "0/206" "a range request"
is "$(stat -c %s "$TMP/body")" 100 "... 100 bytes"
is "$(c "$u/big.bin")" "0/200" "a 1 MiB download"
cmp -s "$TMP/body" "$TMP/www/big.bin"; ok $? "... byte for byte"
is "$(c --compressed "$u/docs/a..b.txt")" "0/200" "gzip"
is "$(c -H 'If-Modified-Since: Wed, 01 Jan 2020 00:00:00 GMT' -H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64)' -H 'Referer: http://127.0.0.1/docs/' "$u/index.html")" "0/200" "browser-like headers"
is "$(c -d 'name=alice&comment=hello+world%21' "$u/api/form")" "0/200" "POST a form"
grep -q '^ok POST' "$TMP/body"; ok $? "... which nginx answered"
is "$(c -H 'Content-Type: application/json' -d '{"user":"bob","tags":["a","b"],"price":"$5"}' "$u/api/json")" "0/200" "POST JSON with a '\$'"
is "$(c --data-binary @"$TMP/www/big.bin" "$u/api/upload")" "0/200" "POST a 1 MiB binary body"
is "$(c -X PUT -d x "$u/api/item/1")" "0/200" "PUT"
is "$(c -X DELETE "$u/api/item/1")" "0/200" "DELETE"
is "$(c -X OPTIONS "$u/api/")" "0/200" "OPTIONS"
is "$(c --http1.0 "$u/")" "0/200" "HTTP/1.0"
out=$(in_cgroup curl -s -o /dev/null -o /dev/null -o /dev/null -w '%{http_code} ' "$u/" "$u/index.html" "$u/docs/a..b.txt")
is "$out" "200 200 200 " "three requests on one kept-alive connection"
normal=$(wc -l < "$TMP/ngx/access.log")
is "$normal" 19 "nginx logged every normal request"
grep -c 'deny rule=' "$TMP/policyd.log" | grep -qx 0; ok $? "no normal request was denied"

: > "$TMP/ngx/access.log"
attacks=(
	"-X TRACE $u/" "-X TRACK $u/" "-X CONNECT $u/" "-X DEBUG $u/"
	"--path-as-is $u/../../etc/hosts" "--path-as-is $u/docs/../../../../root/"
	"$u/%2e%2e/%2e%2e/etc/hosts" "$u/%2E%2E%2F%2E%2E%2Fetc/hosts" "$u/..%2f..%2fetc/hosts"
	"$u/static/..;/admin" "$u/%252e%252e%252fetc" "$u/%c0%ae%c0%ae/etc/hosts" "--path-as-is $u/docs/.."
	"-H User-Agent:\${jndi:ldap://127.0.0.1:1389/a} $u/"
	"-H X-Api-Version:\${\${lower:j}ndi:ldap://127.0.0.1/a} $u/"
	"-H X-Forwarded-For:\${\${::-j}\${::-n}di:rmi://127.0.0.1/a} $u/"
	"$u/?q=%24%7Bjndi:ldap://127.0.0.1/a%7D" "-d user=\${jndi:dns://127.0.0.1/x} $u/api/login"
	"$u/.env" "$u/.git/config" "$u/.aws/credentials" "$u/wp-config.php" "$u/.htpasswd"
	"$u/home/u/.ssh/id_rsa" "$u/download?file=/etc/passwd" "$u/?f=/proc/self/environ"
	"$u/.git-credentials" "$u/.ENV"
)
for a in "${attacks[@]}"; do
	# shellcheck disable=SC2086
	is "$(c $a)" "55/000" "refused (curl: send failure): $a"
done
# a request whose header or body line was refused reaches nginx only up to
# that line: nginx logs it as incomplete (400), or answers before the body
seen=$(grep -Eic 'jndi|\.\.|%2e|%25|%c0|\.env|\.git|\.aws|\.ssh|passwd|environ|wp-config|TRACE|TRACK|CONNECT|DEBUG' "$TMP/ngx/access.log")
is "$seen" 0 "nginx saw no attack string of the ${#attacks[@]} attacks ($(wc -l < "$TMP/ngx/access.log") requests logged up to their refused line)" ||
	sed 's/^/# /' "$TMP/ngx/access.log"
n=$(grep -c 'deny rule=' "$TMP/policyd.log"); is "$n" "${#attacks[@]}" "each is logged"
is "$(curl -s -o /dev/null -w '%{http_code}' "$u/.env")" 200 "outside the cgroup nothing is policed"
stop_policyd; is $? 0 "policyd stops"
done_testing
