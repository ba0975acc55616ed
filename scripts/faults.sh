#!/usr/bin/env bash
# The fault suite (issue 7, item 4): tests/faults run against the three-broker
# Kafka cluster (scripts/kafka.sh cluster3: RF 3, min.insync.replicas=2) and a
# PostgreSQL instance of its own (restarted in immediate mode by a scenario),
# never against the shared dev stack.
#
#   scripts/faults.sh                 every scenario, full size
#   FAULTS_SIZE=ci scripts/faults.sh  every scenario at CI size (shorter load)
#   FAULTS_RUN=BrokerKill scripts/faults.sh   only scenarios matching a go test -run regexp
#   FAULTS_SEED=1234 scripts/faults.sh        replay a schedule (each run prints its seed)
#
# Variables: FAULTS_PG_PORT (default 55440), FAULTS_KEEP=1 leaves the cluster
# and the fault PostgreSQL running afterwards. The cluster is stopped at exit
# only when this script started it; the fault PostgreSQL always is (unless
# FAULTS_KEEP=1).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

PG_PORT=${FAULTS_PG_PORT:-55440}
PGDIR=$RUN_DIR/faults-pg
DATA=$PGDIR/data

pgbin() {
  local d
  if command -v pg_config >/dev/null && [[ -x $(pg_config --bindir)/initdb ]]; then pg_config --bindir; return; fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x $d/initdb && -x $d/postgres ]] && { echo "$d"; return; }
  done
  return 1
}
as_owner() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_up() {
  "$ROOT/scripts/postgres.sh" install
  local bin; bin=$(pgbin)
  mkdir -p "$PGDIR"
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    chown postgres: "$PGDIR"
    local d=$PGDIR
    while [[ $d != / ]]; do d=$(dirname "$d"); chmod o+x "$d" 2>/dev/null || true; done
  fi
  if [[ ! -f $DATA/PG_VERSION ]]; then
    say "initdb: the fault suite's own PostgreSQL in $DATA"
    as_owner "$bin/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$PGDIR/initdb.log" 2>&1 \
      || die "initdb failed: see $PGDIR/initdb.log"
    cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGDIR'
max_connections = 200
shared_buffers = 128MB
log_min_messages = warning
CONF
  fi
  if ! as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    port_busy "$PG_PORT" && die "port $PG_PORT is taken: set FAULTS_PG_PORT"
    as_owner "$bin/pg_ctl" -D "$DATA" -l "$PGDIR/server.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null \
      || { tail -n 20 "$PGDIR/server.log" >&2; die "fault PostgreSQL did not start: see $PGDIR/server.log"; }
  fi
  "$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reviewpipe') THEN
    CREATE ROLE reviewpipe LOGIN PASSWORD 'reviewpipe' CREATEDB;
  END IF;
END $$;
SELECT 'CREATE DATABASE reviewpipe OWNER reviewpipe'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'reviewpipe')\gexec
SQL
}

pg_down() {
  local bin; bin=$(pgbin) || return 0
  [[ -f $DATA/PG_VERSION ]] || return 0
  as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

started_kafka=0
cleanup() {
  [[ ${FAULTS_KEEP:-0} == 1 ]] && return 0
  pg_down
  if [[ $started_kafka == 1 ]]; then "$ROOT/scripts/kafka.sh" stop cluster3 || true; fi
}
trap cleanup EXIT

say "build: bin/"
make -s build >/dev/null
if ! "$ROOT/scripts/kafka.sh" status cluster3 >/dev/null 2>&1; then
  started_kafka=1
  say "starting the three-broker cluster (scripts/kafka.sh start cluster3)"
  "$ROOT/scripts/kafka.sh" start cluster3 >/dev/null
fi
pg_up

export REVIEWPIPE_FAULTS=1 REVIEWPIPE_BIN=$ROOT/bin FAULTS_ROOT=$ROOT
export FAULTS_KAFKA_BROKERS=$("$ROOT/scripts/kafka.sh" brokers cluster3)
export FAULTS_DATABASE_URL="postgres://reviewpipe:reviewpipe@127.0.0.1:$PG_PORT/reviewpipe?sslmode=disable"
export FAULTS_PGDATA=$DATA FAULTS_PGBIN=$(pgbin) FAULTS_PG_PORT=$PG_PORT FAULTS_PG_LOG=$PGDIR/server.log
export FAULTS_SIZE=${FAULTS_SIZE:-full}

say "fault suite (size $FAULTS_SIZE) on Kafka $FAULTS_KAFKA_BROKERS and PostgreSQL 127.0.0.1:$PG_PORT"
cd "$ROOT/tests"
go test -count=1 -v -timeout "${FAULTS_TIMEOUT:-40m}" -run "${FAULTS_RUN:-.}" ./faults/
