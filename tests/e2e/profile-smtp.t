#!/usr/bin/env bash
# policy-examples/smtp.conf with real SMTP clients (swaks, Python's smtplib)
# against a small SMTP server that records every command it receives: mail is
# delivered whole, body lines that merely mention the verbs included;
# VRFY, EXPN and the other reconnaissance commands never reach the server.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
command -v swaks >/dev/null || skip_all "swaks is not installed (make deps)"
env_setup smtp || skip_all "cannot make a cgroup"

port=$(free_port)
sed "s/ports = \[ 25, 587 \]/ports = [ $port ]/" policy-examples/smtp.conf > "$TMP/p.conf"
grep -q "ports = \[ $port \]" "$TMP/p.conf"; ok $? "the profile's ports are adapted to $port"

# the server: RFC 5321 enough for the clients, every command line kept
python3 - "$port" "$TMP/lines" "$TMP/mail" <<'PY' >"$TMP/server.log" 2>&1 &
import socket, sys, threading
threading.excepthook = lambda a: None if a.exc_type is ConnectionResetError else sys.__excepthook__(a.exc_type, a.exc_value, a.exc_traceback)  # a denied client is reset
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(64)
lines = open(sys.argv[2], "ab", buffering=0); mails = open(sys.argv[3], "ab", buffering=0)
lock = threading.Lock()
def serve(c):
    f = c.makefile("rb"); w = lambda s: c.sendall(s.encode() + b"\r\n")
    w("220 test.local ESMTP")
    data = None
    for line in f:
        if data is None:        # commands, not the lines of a message
            with lock: lines.write(line)
        if data is not None:
            if line in (b".\r\n", b".\n"):
                with lock: mails.write(b"".join(data) + b"--END--\n")
                data = None; w("250 2.0.0 queued")
            else:
                data.append(line)
            continue
        verb = line.split(b" ")[0].strip().upper()
        if verb == b"EHLO": w("250-test.local\r\n250-PIPELINING\r\n250 8BITMIME")
        elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"): w("250 2.0.0 ok")
        elif verb == b"DATA": data = []; w("354 go ahead")
        elif verb == b"QUIT": w("221 bye"); break
        elif verb == b"VRFY": w("252 2.0.0 root")
        elif verb == b"EXPN": w("250 2.0.0 staff: alice, bob")
        elif verb == b"HELP": w("214 2.0.0 see RFC 5321")
        else: w("502 5.5.2 not implemented")
    c.close()
while True:
    c, _ = ls.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
PIDS+=($!)
wait_port "$port" || fail_now "the test's server listens on 127.0.0.1:$port"
start_policyd "$TMP/p.conf"; ok $? "policyd runs the smtp profile"

body=$'Hello,\r\nplease verify your account; the vrfy and expn commands are off.\r\nTurn left at the expn building.\r\nDebugging notes: kill -HUP is fine.\r\n.leading dot\r\nBye'
out=$(in_cgroup swaks --server "127.0.0.1:$port" --from alice@example.org --to bob@example.org \
	--header 'Subject: expn/vrfy report' --body "$body" 2>&1); st=$?
is "$st" 0 "swaks delivers a mail" || echo "$out" | sed 's/^/# /'
grep -q 'Turn left at the expn building' "$TMP/mail"; ok $? "... its body arrived, lines mentioning the verbs included"
is "$(grep -c -- '--END--' "$TMP/mail")" 1 "... as one message"

in_cgroup python3 - "$port" > "$TMP/smtplib.out" 2>&1 <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=5)
s.ehlo("client.local")
print(s.noop()[0])
s.sendmail("carol@example.org", ["dave@example.org", "erin@example.org"],
           "Subject: hi\r\n\r\nKill-switch docs attached.\r\nHELP wanted in the kitchen\r\n")
print(s.rset()[0])
print(s.help())
s.quit()
print("done")
PY
is "$(tr '\n' ' ' < "$TMP/smtplib.out")" "250 250 b'2.0.0 see RFC 5321' done " \
	"smtplib: EHLO, NOOP, a mail to two recipients, RSET, HELP, QUIT"
is "$(grep -c -- '--END--' "$TMP/mail")" 2 "... the second mail arrived"
grep -q 'audit rule=180 service=smtp' "$TMP/policyd.log"; ok $? "HELP is audited"
grep -c 'deny rule=' "$TMP/policyd.log" | grep -qx 0; ok $? "nothing in the normal mail was denied"

# attacks: each in a new session after EHLO; -errno when refused
attack() {
	in_cgroup python3 - "$port" "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
f = s.makefile("rb"); f.readline()
s.sendall(b"EHLO client.local\r\n")
while f.readline()[3:4] == b"-": pass
try:
    s.sendall(sys.argv[2].encode().decode("unicode_escape").encode())
    print(f.readline().decode().strip())
except OSError as e:
    print(-e.errno)
PY
}
for a in 'VRFY root\r\n' 'vrfy postmaster\r\n' 'EXPN staff\r\n' 'Expn all-users\r\n' \
	'  VRFY root\r\n' '\tEXPN staff\r\n' 'VRFY\r\n' 'TURN\r\n' 'ATRN example.org\r\n' \
	'ETRN example.org\r\n' 'DEBUG\r\n' 'WIZ\r\n' 'KILL\r\n' 'vrfy root\n' '   EXPN staff\r\n'; do
	is "$(attack "$a")" -13 "refused: $a"
done
in_cgroup python3 - "$port" > "$TMP/verify.out" 2>&1 <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=5)
try:
    s.verify("root"); print("answered")
except (OSError, smtplib.SMTPServerDisconnected) as e:
    print(type(e).__name__, getattr(e, "errno", ""))
PY
is "$(cat "$TMP/verify.out")" "SMTPServerDisconnected None" "smtplib's own verify() is refused (smtplib reports the EACCES as a disconnect)"
seen=$(grep -Eic $'^[ \t]*(vrfy|expn|turn|atrn|etrn|debug|wiz|kill)([ \r]|$)' "$TMP/lines")
is "$seen" 0 "the server never received one of the refused commands" || sed 's/^/# /' "$TMP/lines"
n=$(grep -c 'deny rule=' "$TMP/policyd.log"); is "$n" 16 "each refusal is logged"
stop_policyd; is $? 0 "policyd stops"
done_testing
