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
# Variables: FAULTS_PG_PORT (default 25440), FAULTS_KEEP=1 leaves the cluster
# and the fault PostgreSQL running afterwards. The cluster is stopped at exit
# only when this script started it; the fault PostgreSQL always is (unless
# FAULTS_KEEP=1).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

PG_PORT=${FAULTS_PG_PORT:-25440} # outside the ephemeral range, see scripts/postgres.sh
PGDIR=$RUN_DIR/faults-pg
DATA=$PGDIR/data

# The fault suite's own cluster: scripts/postgres.sh on another folder and port.
pg() { PG_DIR=$PGDIR PG_PORT=$PG_PORT "$ROOT/scripts/postgres.sh" "$@"; }
pg_up() {
  port_busy "$PG_PORT" && ! pg status >/dev/null 2>&1 && die "port $PG_PORT is taken: set FAULTS_PG_PORT"
  say "the fault suite's own PostgreSQL in $DATA"
  pg start >/dev/null
}
pg_down() { pg stop >/dev/null 2>&1 || true; }

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
export FAULTS_PGDATA=$DATA FAULTS_PGBIN=$(pg bindir) FAULTS_PG_PORT=$PG_PORT FAULTS_PG_LOG=$PGDIR/server.log
export FAULTS_SIZE=${FAULTS_SIZE:-full}

say "fault suite (size $FAULTS_SIZE) on Kafka $FAULTS_KAFKA_BROKERS and PostgreSQL 127.0.0.1:$PG_PORT"
cd "$ROOT/tests"
go test -count=1 -v -timeout "${FAULTS_TIMEOUT:-40m}" -run "${FAULTS_RUN:-.}" ./faults/
