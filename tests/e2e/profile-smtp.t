#!/usr/bin/env python3
# policy-examples/smtp.conf with real SMTP clients (swaks, Python's smtplib)
# against a small SMTP server that records every command it receives: mail is
# delivered whole, body lines that merely mention the verbs included;
# VRFY, EXPN and the other reconnaissance commands never reach the server.
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pdtest import (ROOT, Env, Policyd, done, free_port, grep, is_, ok, skip_all,  # noqa: E402
                    wait_port, wait_until)
from servers import SmtpServer, log_lines, profile  # noqa: E402

os.chdir(ROOT)
if not shutil.which("swaks"):
    skip_all("swaks is not installed (make deps)")
env = Env("smtp")

port = free_port()
conf, adapted = profile(env, "smtp", "25, 587", port)
ok(adapted, "the profile's ports are adapted to %d" % port)

server = SmtpServer(port)
ok(wait_port(port), "the test's server listens on 127.0.0.1:%d" % port)
pd = Policyd(env, conf)
ok(pd.running(), "policyd runs the smtp profile")


def py(code, *args):
    """Python code from inside the cgroup: what it printed, stdout and
    stderr."""
    return env.run([sys.executable, "-c", code, str(port)] + list(args), inside=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout


body = ("Hello,\r\nplease verify your account; the vrfy and expn commands are off.\r\n"
        "Turn left at the expn building.\r\nDebugging notes: kill -HUP is fine.\r\n.leading dot\r\nBye")
p = env.run(["swaks", "--server", "127.0.0.1:%d" % port, "--from", "alice@example.org",
             "--to", "bob@example.org", "--header", "Subject: expn/vrfy report", "--body", body],
            inside=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
is_(p.returncode, 0, "swaks delivers a mail") or print("#   " + p.stdout.replace("\n", "\n#   "))
ok(any(b"Turn left at the expn building" in m for m in server.mails),
   "... its body arrived, lines mentioning the verbs included")
is_(len(server.mails), 1, "... as one message")

out = py('''
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=5)
s.ehlo("client.local")
print(s.noop()[0])
s.sendmail("carol@example.org", ["dave@example.org", "erin@example.org"],
           "Subject: hi\\r\\n\\r\\nKill-switch docs attached.\\r\\nHELP wanted in the kitchen\\r\\n")
print(s.rset()[0])
print(s.help())
s.quit()
print("done")
''')
is_(out.replace("\n", " "), "250 250 b'2.0.0 see RFC 5321' done ",
    "smtplib: EHLO, NOOP, a mail to two recipients, RSET, HELP, QUIT")
is_(len(server.mails), 2, "... the second mail arrived")
ok(wait_until(lambda: grep(pd.log, "audit rule=180 service=smtp"), 2), "HELP is audited")
is_(len(grep(pd.log, "deny rule=")), 0, "nothing in the normal mail was denied")

# attacks: each in a new session after EHLO; -errno when refused
ATTACK = '''
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
f = s.makefile("rb"); f.readline()
s.sendall(b"EHLO client.local\\r\\n")
while f.readline()[3:4] == b"-": pass
try:
    s.sendall(sys.argv[2].encode().decode("unicode_escape").encode())
    print(f.readline().decode().strip())
except OSError as e:
    print(-e.errno)
'''
for a in (r"VRFY root\r\n", r"vrfy postmaster\r\n", r"EXPN staff\r\n", r"Expn all-users\r\n",
          r"  VRFY root\r\n", r"\tEXPN staff\r\n", r"VRFY\r\n", r"TURN\r\n", r"ATRN example.org\r\n",
          r"ETRN example.org\r\n", r"DEBUG\r\n", r"WIZ\r\n", r"KILL\r\n", r"vrfy root\n", r"   EXPN staff\r\n"):
    is_(py(ATTACK, a).rstrip("\n"), "-13", "refused: " + a)
out = py('''
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=5)
try:
    s.verify("root"); print("answered")
except (OSError, smtplib.SMTPServerDisconnected) as e:
    print(type(e).__name__, getattr(e, "errno", ""))
''')
is_(out.rstrip("\n"), "SMTPServerDisconnected None",
    "smtplib's own verify() is refused (smtplib reports the EACCES as a disconnect)")
seen = [l for l in server.lines
        if re.search(rb"(?i)^[ \t]*(vrfy|expn|turn|atrn|etrn|debug|wiz|kill)([ \r]|$)", l.rstrip(b"\n"))]
is_(seen, [], "the server never received one of the refused commands")
log_lines(pd, "deny rule=", 16)
is_(len(grep(pd.log, "deny rule=")), 16, "each refusal is logged")
is_(pd.stop(), 0, "policyd stops")
done()
