#!/usr/bin/env bash
# policy-examples/postgres.conf with a real PostgreSQL cluster (initdb into
# the scratch directory, 127.0.0.1 only) and the real psql and pgbench:
# ordinary SQL and a pgbench run pass with no error; program execution and
# server-side file access never reach the server (its statement log shows
# none), in any case and spelling.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/e2e/env.sh
[ "$(id -u)" = 0 ] || skip_all "needs root (BPF programs, cgroups)"
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] && command -v psql >/dev/null || skip_all "postgresql is not installed (make deps)"
env_setup postgres || skip_all "cannot make a cgroup"

port=$(free_port)
sed "s/ports = \[ 5432 \]/ports = [ $port ]/" policy-examples/postgres.conf > "$TMP/p.conf"
grep -q "ports = \[ $port \]" "$TMP/p.conf"; ok $? "the profile's port is adapted to $port"

mkdir "$TMP/pg" && chown postgres: "$TMP/pg"
runuser -u postgres -- "$pgbin/initdb" -D "$TMP/pg/data" --auth=trust -U postgres >/dev/null 2>&1
ok $? "initdb makes a throwaway cluster"
setpriv --reuid postgres --regid postgres --clear-groups -- "$pgbin/postgres" -D "$TMP/pg/data" \
	-p "$port" -k "$TMP/pg" -c listen_addresses=127.0.0.1 -c log_statement=all \
	-c logging_collector=off -c fsync=off -c max_connections=40 >"$TMP/pg/server.log" 2>&1 &
pgpid=$!
# SIGINT: postgres's fast shutdown, which does not wait for sessions to end
trap 'kill -INT $pgpid 2>/dev/null; wait $pgpid; env_cleanup' EXIT
for _ in $(seq 100); do "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
"$pgbin/pg_isready" -q -h 127.0.0.1 -p "$port"; ok $? "postgres listens on 127.0.0.1:$port"
start_policyd "$TMP/p.conf"; ok $? "policyd runs the postgres profile"

export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres PGCONNECT_TIMEOUT=5
q() { in_cgroup psql -X -q -A -t -v ON_ERROR_STOP=1 -c "$1" 2>&1; }

q "CREATE TABLE programs (id serial PRIMARY KEY, name text, path text)" >/dev/null
ok $? "CREATE TABLE programs (a name that contains 'program')"
is "$(q "INSERT INTO programs (name, path) VALUES ('the program is ready', 'C:/tools'), ('alter systems team', '/opt/app'), ('copy from home', 'to home') RETURNING id" | tr '\n' ' ')" \
	"1 2 3 " "INSERT text that mentions program, systems, copy from"
is "$(q "SELECT count(*) FROM programs WHERE name LIKE '%program%' OR path LIKE '/opt%'")" 2 "SELECT with LIKE"
is "$(q "UPDATE programs SET path = path || '/bin' WHERE id = 2 RETURNING path")" "/opt/app/bin" "UPDATE"
is "$(printf '4\tlisted\t/srv\n5\tcopied\t/var\n' | in_cgroup psql -X -q -c '\copy programs FROM STDIN' 2>&1)" "" \
	"psql's \\copy (client side, COPY ... FROM STDIN)"
is "$(q "COPY (SELECT id FROM programs ORDER BY id) TO STDOUT" | tr '\n' ' ')" "1 2 3 4 5 " "COPY ... TO STDOUT"
is "$(q "BEGIN; DELETE FROM programs WHERE id = 5; ROLLBACK; SELECT count(*) FROM programs")" 5 "a rolled-back transaction"
is "$(q "CREATE FUNCTION add1(int) RETURNS int LANGUAGE sql AS 'SELECT \$1 + 1'; SELECT add1(41)")" 42 "a SQL function"
is "$(q "DO \$\$ BEGIN RAISE NOTICE 'plpgsql ok'; END \$\$" )" "NOTICE:  plpgsql ok" "a plpgsql block"
in_cgroup "$pgbin/pgbench" -i -s 1 -q >"$TMP/pgbench-init.out" 2>&1; ok $? "pgbench -i (schema and 100,000 rows)" ||
	sed 's/^/# /' "$TMP/pgbench-init.out"
in_cgroup "$pgbin/pgbench" -c 4 -j 2 -t 250 >"$TMP/pgbench.out" 2>&1; st=$?
ok $st "pgbench: 4 clients x 250 TPC-B transactions" || sed 's/^/# /' "$TMP/pgbench.out"
grep -q 'number of failed transactions: 0 ' "$TMP/pgbench.out"; ok $? "... with no failed transaction"
grep -q 'number of transactions actually processed: 1000/1000' "$TMP/pgbench.out"; ok $? "... all 1000 processed"
is "$(grep -c 'deny rule=' "$TMP/policyd.log")" 0 "no normal statement was denied"

attacks=(
	"COPY programs (name) FROM PROGRAM 'id'"
	"copy programs (name) to program 'cat > /tmp/policyd-pwned'"
	"CoPy programs (name) FrOm PrOgRaM \$\$id\$\$"
	"COPY programs (name) FROM PROGRAM E'id'"
	"COPY programs (name) FROM PROGRAM
'id'"
	"COPY programs (name) FROM PROGRAM/**/'id'"
	"SELECT pg_read_file('/etc/passwd')"
	"select PG_READ_BINARY_FILE('/etc/shadow')"
	"SELECT pg_ls_dir('/')"
	"SELECT * FROM pg_stat_file('/etc/hostname')"
	"SELECT pg_ls_waldir()"
	"SELECT lo_import('/etc/passwd')"
	"SELECT lo_export(1, '/tmp/policyd-pwned')"
	"COPY programs (name) FROM '/etc/hostname'"
	"COPY programs TO '/tmp/policyd-pwned'"
	"ALTER SYSTEM SET archive_command = 'id'"
	"alter   system set log_directory = '/tmp'"
	"CREATE FUNCTION sys(text) RETURNS int AS '/tmp/x.so', 'sys' LANGUAGE C"
	"CREATE FUNCTION f() RETURNS int AS 'x' LANGUAGE c;"
	"CREATE EXTENSION plpython3u"
	"CREATE FUNCTION p() RETURNS int AS \$\$ import os \$\$ LANGUAGE plperlu"
)
# where policyd does not abort a denied connection (a kernel that cannot
# destroy a socket through sock_diag, see policyd.8), libpq waits for ever
# for the answer to a query whose send failed: there psql gets 5 s
aborts=1
grep -q 'a denied connection is not aborted' "$TMP/policyd.log" && aborts=0
for a in "${attacks[@]}"; do
	if [ "$aborts" = 1 ]; then out=$(q "$a"); st=$?
	else out=$(in_cgroup timeout "$(slow 5)" psql -X -q -A -t -c "$a" 2>&1); st=$?; fi
	case $aborts/$st/$out in
	1/*/*"Permission denied"*|1/*/*"server closed the connection"*|1/*/*"connection to server was lost"*)
		is "$st" 2 "refused (psql: lost the connection): $(echo "$a" | tr '\n' ' ')";;
	0/124/)
		ok 0 "refused (psql still waits for an answer: not aborted on $(uname -r)): $(echo "$a" | tr '\n' ' ')";;
	*) ok 1 "refused: $(echo "$a" | tr '\n' ' '): psql said ($st): $out";; esac
done
n=$(grep -c 'deny rule=' "$TMP/policyd.log"); is "$n" "${#attacks[@]}" "each refusal is logged"
seen=$(grep -Eic 'program +(e?'"'"'|\$|/\*|$)|pg_read|pg_ls_|pg_stat_file|lo_import|lo_export|alter +system +(set|reset)|language c|plpython3u|plperlu|'"'"'/etc|'"'"'/tmp' "$TMP/pg/server.log")
is "$seen" 0 "the server's statement log holds none of them" || grep -Ei 'statement:' "$TMP/pg/server.log" | tail -25 | sed 's/^/# /'
[ ! -e /tmp/policyd-pwned ]; ok $? "no file was written by the server"
is "$(PGCONNECT_TIMEOUT=5 psql -X -A -t -c "SELECT count(*) FROM programs")" 5 "the data is intact (read from outside the cgroup)"
stop_policyd; is $? 0 "policyd stops"
done_testing
