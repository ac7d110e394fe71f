#!/usr/bin/env python3
# policy-examples/postgres.conf with a real PostgreSQL cluster (initdb into
# the scratch directory, 127.0.0.1 only) and the real psql and pgbench:
# ordinary SQL and a pgbench run pass with no error; program execution and
# server-side file access never reach the server (its statement log shows
# none), in any case and spelling.
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pdtest import (ROOT, Env, Policyd, done, free_port, grep, is_, ok, skip_all,  # noqa: E402
                    slow)
from servers import log_lines, postgres_bin, profile, start_postgres  # noqa: E402

os.chdir(ROOT)
if not postgres_bin() or not shutil.which("psql"):
    skip_all("postgresql is not installed (make deps)")
env = Env("postgres")

port = free_port()
conf, adapted = profile(env, "postgres", "5432", port)
ok(adapted, "the profile's port is adapted to %d" % port)

pg = start_postgres(env, port)
ok(os.path.exists(os.path.join(env.tmp, "pg", "data", "PG_VERSION")), "initdb makes a throwaway cluster")
is_(env.run([os.path.join(pg.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode,
    0, "postgres listens on 127.0.0.1:%d" % port)
pd = Policyd(env, conf)
ok(pd.running(), "policyd runs the postgres profile")

os.environ.update(PGHOST="127.0.0.1", PGPORT=str(port), PGUSER="postgres", PGDATABASE="postgres",
                  PGCONNECT_TIMEOUT="5")


def q(sql, **kw):
    """psql -c sql from inside the cgroup: (status, what it printed)."""
    p = env.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql], inside=True,
                stderr=subprocess.STDOUT, stdout=subprocess.PIPE, **kw)
    return p.returncode, p.stdout.rstrip("\n")


def qout(sql):
    return q(sql)[1]


st, out = q("CREATE TABLE programs (id serial PRIMARY KEY, name text, path text)")
ok(st == 0, "CREATE TABLE programs (a name that contains 'program')", out)
is_(qout("INSERT INTO programs (name, path) VALUES ('the program is ready', 'C:/tools'), "
         "('alter systems team', '/opt/app'), ('copy from home', 'to home') RETURNING id").split(),
    ["1", "2", "3"], "INSERT text that mentions program, systems, copy from")
is_(qout("SELECT count(*) FROM programs WHERE name LIKE '%program%' OR path LIKE '/opt%'"), "2",
    "SELECT with LIKE")
is_(qout("UPDATE programs SET path = path || '/bin' WHERE id = 2 RETURNING path"), "/opt/app/bin", "UPDATE")
p = env.run(["psql", "-X", "-q", "-c", r"\copy programs FROM STDIN"], inside=True,
            input="4\tlisted\t/srv\n5\tcopied\t/var\n", stderr=subprocess.STDOUT, stdout=subprocess.PIPE)
is_(p.stdout, "", "psql's \\copy (client side, COPY ... FROM STDIN)")
is_(qout("COPY (SELECT id FROM programs ORDER BY id) TO STDOUT").split(), ["1", "2", "3", "4", "5"],
    "COPY ... TO STDOUT")
is_(qout("BEGIN; DELETE FROM programs WHERE id = 5; ROLLBACK; SELECT count(*) FROM programs"), "5",
    "a rolled-back transaction")
is_(qout("CREATE FUNCTION add1(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1'; SELECT add1(41)"), "42",
    "a SQL function")
is_(qout("DO $$ BEGIN RAISE NOTICE 'plpgsql ok'; END $$"), "NOTICE:  plpgsql ok", "a plpgsql block")
p = env.run([os.path.join(pg.bin, "pgbench"), "-i", "-s", "1", "-q"], inside=True, timeout=600,
            stderr=subprocess.STDOUT, stdout=subprocess.PIPE)
ok(p.returncode == 0, "pgbench -i (schema and 100,000 rows)", p.stdout)
p = env.run([os.path.join(pg.bin, "pgbench"), "-c", "4", "-j", "2", "-t", "250"], inside=True,
            timeout=600, stderr=subprocess.STDOUT, stdout=subprocess.PIPE)
ok(p.returncode == 0, "pgbench: 4 clients x 250 TPC-B transactions", p.stdout)
ok("number of failed transactions: 0 " in p.stdout, "... with no failed transaction")
ok("number of transactions actually processed: 1000/1000" in p.stdout, "... all 1000 processed")
is_(len(grep(pd.log, "deny rule=")), 0, "no normal statement was denied")

attacks = (
    "COPY programs (name) FROM PROGRAM 'id'",
    "copy programs (name) to program 'cat > /tmp/policyd-pwned'",
    "CoPy programs (name) FrOm PrOgRaM $$id$$",
    "COPY programs (name) FROM PROGRAM E'id'",
    "COPY programs (name) FROM PROGRAM\n'id'",
    "COPY programs (name) FROM PROGRAM/**/'id'",
    "SELECT pg_read_file('/etc/passwd')",
    "select PG_READ_BINARY_FILE('/etc/shadow')",
    "SELECT pg_ls_dir('/')",
    "SELECT * FROM pg_stat_file('/etc/hostname')",
    "SELECT pg_ls_waldir()",
    "SELECT lo_import('/etc/passwd')",
    "SELECT lo_export(1, '/tmp/policyd-pwned')",
    "COPY programs (name) FROM '/etc/hostname'",
    "COPY programs TO '/tmp/policyd-pwned'",
    "ALTER SYSTEM SET archive_command = 'id'",
    "alter   system set log_directory = '/tmp'",
    "CREATE FUNCTION sys(text) RETURNS int AS '/tmp/x.so', 'sys' LANGUAGE C",
    "CREATE FUNCTION f() RETURNS int AS 'x' LANGUAGE c;",
    "CREATE EXTENSION plpython3u",
    "CREATE FUNCTION p() RETURNS int AS $$ import os $$ LANGUAGE plperlu",
)
# where policyd does not abort a denied connection (a kernel that cannot
# destroy a socket through sock_diag, see policyd.8), libpq waits for ever
# for the answer to a query whose send failed: there psql gets 5 s
aborts = not grep(pd.log, "a denied connection is not aborted")
for a in attacks:
    one = a.replace("\n", " ")
    if aborts:
        st, out = q(a)
        if re.search("Permission denied|server closed the connection|connection to server was lost", out):
            is_(st, 2, "refused (psql: lost the connection): " + one)
        else:
            ok(False, "refused: %s: psql said (%d): %s" % (one, st, out))
    else:
        p = env.run(["timeout", str(slow(5)), "psql", "-X", "-q", "-A", "-t", "-c", a], inside=True,
                    stderr=subprocess.STDOUT, stdout=subprocess.PIPE)
        st, out = p.returncode, p.stdout.rstrip("\n")
        ok(st == 124 and out == "",
           "refused (psql still waits for an answer: not aborted on %s): %s" % (os.uname().release, one),
           "psql said (%d): %s" % (st, out))
log_lines(pd, "deny rule=", len(attacks))
is_(len(grep(pd.log, "deny rule=")), len(attacks), "each refusal is logged")
seen = grep(pg.log, r"(?i)program +(e?'|\$|/\*|$)|pg_read|pg_ls_|pg_stat_file|lo_import|lo_export"
                    r"|alter +system +(set|reset)|language c|plpython3u|plperlu|'/etc|'/tmp")
is_(len(seen), 0, "the server's statement log holds none of them") or print(
    "#   " + "\n#   ".join(grep(pg.log, "statement:")[-25:]))
ok(not os.path.exists("/tmp/policyd-pwned"), "no file was written by the server")
p = subprocess.run(["psql", "-X", "-A", "-t", "-c", "SELECT count(*) FROM programs"],
                   capture_output=True, text=True)
is_(p.stdout.strip(), "5", "the data is intact (read from outside the cgroup)")
is_(pd.stop(), 0, "policyd stops")
done()
