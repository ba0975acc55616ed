# Brings up what a run or a test needs, honouring KAFKA_BROKERS and
# DATABASE_URL when set. Sourced by run.sh and test.sh; defines
# stack_up and stack_down (which stops only what stack_up started).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STARTED_KAFKA=0
STARTED_PG=0

stack_up() {
  if [[ -n ${KAFKA_BROKERS:-} ]]; then
    say "using the Kafka at KAFKA_BROKERS=$KAFKA_BROKERS"
  else
    if ! "$ROOT/scripts/kafka.sh" status single >/dev/null 2>&1; then STARTED_KAFKA=1; fi
    say "starting Kafka (KRaft, single node)"
    KAFKA_BROKERS=$("$ROOT/scripts/kafka.sh" start single)
  fi
  if [[ -n ${DATABASE_URL:-} ]]; then
    say "using the PostgreSQL at DATABASE_URL"
  else
    if ! "$ROOT/scripts/postgres.sh" status >/dev/null 2>&1; then STARTED_PG=1; fi
    say "starting PostgreSQL"
    DATABASE_URL=$("$ROOT/scripts/postgres.sh" start)
  fi
  export KAFKA_BROKERS DATABASE_URL
  say "creating topics and applying migrations"
  "$ROOT/bin/reviewctl" setup --wait 120s >&2
}

stack_down() {
  if [[ $STARTED_KAFKA == 1 ]]; then say "stopping Kafka"; "$ROOT/scripts/kafka.sh" stop single || true; fi
  if [[ $STARTED_PG == 1 ]]; then say "stopping PostgreSQL"; "$ROOT/scripts/postgres.sh" stop || true; fi
}
