#!/usr/bin/env bash
# policy-examples/secrets-egress.conf with a real nginx inside the policed
# cgroup (direction "from") and curl outside it: pages, downloads and
# public certificates are served whole; a real private key, cloud
# credentials and a key buried 1 MiB deep in a download never leave, and
# the connection that tried is reset.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
command -v nginx >/dev/null && command -v curl >/dev/null && command -v openssl >/dev/null ||
	skip_all "nginx, curl or openssl is not installed (make deps)"
env_setup secrets || skip_all "cannot make a cgroup"

port=$(free_port)
sed "s/ports = \[ 80, 8000, 8080 \]/ports = [ $port ]/" policy-examples/secrets-egress.conf > "$TMP/p.conf"
grep -q "ports = \[ $port \]" "$TMP/p.conf"; ok $? "the profile's ports are adapted to $port"

w="$TMP/www"
mkdir -p "$w/backup" "$w/docs"
echo '<h1>shop</h1>' > "$w/index.html"
echo 'Never share your private key. Rotate the AWS keys yearly.' > "$w/docs/keys.txt"
head -c 3145728 /dev/urandom > "$w/big.bin"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=test.local -days 1 \
	-keyout "$w/backup/server.key" -out "$w/cert.pem" 2>/dev/null
ok $? "openssl made a real key pair and certificate"
openssl genpkey -algorithm ed25519 -out "$w/backup/ed.key" 2>/dev/null
printf '[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n' > "$w/backup/credentials"
printf '{"type": "service_account", "project_id": "p", "private_key_id": "0123"}\n' > "$w/backup/gcp.json"
printf 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFy;EndpointSuffix=core.windows.net\n' > "$w/backup/azure.txt"
{ head -c 1048573 /dev/urandom; cat "$w/backup/server.key"; head -c 100000 /dev/urandom; } > "$w/backup/disk.img"
chmod -R a+rX "$w"   # the leak: readable by the web server's workers

start_nginx "$port" "$w" in; ok $? "nginx runs inside the policed cgroup"
start_policyd "$TMP/p.conf"; ok $? "policyd runs the secrets-egress profile"
: > "$TMP/ngx/access.log"

u="http://127.0.0.1:$port"
get() { rm -f "$TMP/body"; curl -s -o "$TMP/body" -w '%{http_code}' "$@"; echo "/$?"; }
is "$(get "$u/")" "200/0" "a page"
is "$(get "$u/docs/keys.txt")" "200/0" "a page that talks about private keys and AWS keys"
is "$(get "$u/cert.pem")" "200/0" "a public certificate (BEGIN CERTIFICATE)"
cmp -s "$TMP/body" "$w/cert.pem"; ok $? "... byte for byte"
is "$(get "$u/big.bin")" "200/0" "a 3 MiB download"
cmp -s "$TMP/body" "$w/big.bin"; ok $? "... byte for byte"
is "$(get -r 1000-2999 "$u/big.bin")" "206/0" "a range of it"
is "$(get -o "$TMP/body2" "$u/" "$u/cert.pem")" "200200/0" "two replies on one connection"
is "$(grep -c 'deny rule=' "$TMP/policyd.log")" 0 "nothing normal was denied"

for f in backup/server.key backup/ed.key backup/credentials backup/gcp.json backup/azure.txt \
	backup/disk.img; do
	out=$(get "$u/$f")
	case $out in 200/18|200/56|000/56|000/52) ok 0 "$f: the reply is cut ($out)";;
	*) ok 1 "$f: the reply is cut: got $out";; esac
	grep -aqE 'PRIVATE KEY|aws_secret|private_key_id|AccountKey' "$TMP/body" 2>/dev/null  # no file: nothing arrived
	ok $(( ! $? )) "... and curl got none of the secret ($(stat -c %s "$TMP/body" 2>/dev/null || echo 0) bytes before it)"
done
n=$(grep -c 'deny rule=' "$TMP/policyd.log"); is "$n" 6 "each is logged"
grep -Eq 'deny rule=100 service=secrets-egress pid=[0-9]+ comm=nginx uid=[0-9]+ src=127\.0\.0\.1:'$port' ' "$TMP/policyd.log"
ok $? "the log names nginx and its port as the sender"
is "$(grep 'deny rule=' "$TMP/policyd.log" | grep -vc ' excerpt="" ')" 0 "no deny line quotes the reply (excerpt = 0)"
grep -aqE 'PRIVATE KEY|aws_secret|private_key_id|AccountKey|AKIA' "$TMP/policyd.log"
ok $(( ! $? )) "... so no blocked secret is in the log"
grep -q '(13: Permission denied) while sending' "$TMP/ngx/error.log"; ok $? "nginx saw EACCES from its send" ||
	sed 's/^/# /' "$TMP/ngx/error.log"
is "$(get "$u/")" "200/0" "the server goes on serving other connections"
stop_policyd; is $? 0 "policyd stops"
done_testing
