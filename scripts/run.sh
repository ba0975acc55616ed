#!/usr/bin/env bash
# make run: the whole of reviewpipe on this machine, in the foreground.
# Starts Kafka and PostgreSQL (unless KAFKA_BROKERS / DATABASE_URL point
# elsewhere), creates topics and tables, starts every service and the
# provider simulator, writes .run/env, prints the URLs, and on SIGINT or
# SIGTERM stops everything it started and exits 0.
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"

T0=$(date +%s.%N)
LOGS=$RUN_DIR/logs
mkdir -p "$LOGS"

# Every service, in start order: name, address variable, default address.
SERVICES=(
  "receiver RECEIVER_ADDR 127.0.0.1:8081"
  "processor PROCESSOR_ADDR 127.0.0.1:8083"
  "sink SINK_ADDR 127.0.0.1:8084"
  "api API_ADDR 127.0.0.1:8080"
  "simulator SIMULATOR_ADDR 127.0.0.1:8090"
  "poller POLLER_ADDR 127.0.0.1:8082"
  "analytics ANALYTICS_ADDR 127.0.0.1:8085"
)

declare -A PIDS=()
STOPPING=0

stop_services() {
  local i name
  # Reverse start order: sources first, the store's readers last.
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    name=${SERVICES[$i]%% *}
    [[ -n ${PIDS[$name]:-} ]] && kill -TERM "${PIDS[$name]}" 2>/dev/null || true
  done
  for name in "${!PIDS[@]}"; do
    for ((j = 0; j < 200; j++)); do kill -0 "${PIDS[$name]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PIDS[$name]}" 2>/dev/null || true
  done
  PIDS=()
}

cleanup() {
  [[ $STOPPING == 1 ]] && return
  STOPPING=1
  say "stopping reviewpipe"
  stop_services
  stack_down
  rm -f "$RUN_DIR/run.pid"
  say "stopped"
}
on_signal() { cleanup; exit 0; }
trap on_signal INT TERM HUP # HUP: the api, in a session of its own, gets no hangup from the terminal
trap cleanup EXIT

if [[ -f $RUN_DIR/run.pid ]] && kill -0 "$(cat "$RUN_DIR/run.pid")" 2>/dev/null; then
  die "make run is already running (pid $(cat "$RUN_DIR/run.pid")); stop it first"
fi
echo $$ >"$RUN_DIR/run.pid"

stack_up

# Webhook secrets shared by the simulator (which signs) and the receiver
# (which verifies): taken from the environment, else made once and kept. One
# per registered provider: the registry (pkg/provider) names their variables.
SECRET_VARS_TEXT=$("$ROOT/bin/reviewctl" providers --secret-vars) && [[ -n $SECRET_VARS_TEXT ]] ||
  die "bin/reviewctl providers --secret-vars listed no providers (make build first)"
mapfile -t SECRET_VARS <<<"$SECRET_VARS_TEXT"
SECRETS=$RUN_DIR/secrets.env
touch "$SECRETS"; chmod 600 "$SECRETS"
for var in "${SECRET_VARS[@]}"; do
  if [[ -z ${!var:-} ]]; then
    if ! grep -q "^$var=" "$SECRETS"; then
      echo "$var=whsec_$(head -c 24 /dev/urandom | base64)" >>"$SECRETS"
    fi
    export "$(grep "^$var=" "$SECRETS")"
  fi
done

# The operator token (docs/contract.md §8): every service's /metrics and the api's
# /v1/ops/* answer 401 without "Authorization: Bearer $OPS_TOKEN". Taken from
# the environment, else made once (random) and kept beside the secrets; also
# written alone to .run/ops_token, for a Prometheus credentials_file.
if [[ -z ${OPS_TOKEN:-} ]]; then
  if ! grep -q "^OPS_TOKEN=" "$SECRETS"; then
    echo "OPS_TOKEN=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')" >>"$SECRETS"
  fi
  export "$(grep "^OPS_TOKEN=" "$SECRETS")"
fi
export OPS_TOKEN
(umask 077; printf '%s\n' "$OPS_TOKEN" >"$RUN_DIR/ops_token")

addr_of() { local v=$1 d=$2; echo "${!v:-$d}"; }
export API_URL=${API_URL:-http://$(addr_of API_ADDR 127.0.0.1:8080)}
export RECEIVER_URL=${RECEIVER_URL:-http://$(addr_of RECEIVER_ADDR 127.0.0.1:8081)}
export SIMULATOR_URL=${SIMULATOR_URL:-http://$(addr_of SIMULATOR_ADDR 127.0.0.1:8090)}
export POLL_INTERVAL=${POLL_INTERVAL:-5s}
export SIMULATOR_TRICKLE_PER_S=${SIMULATOR_TRICKLE_PER_S:-0.5}

# Reads first when the CPU is contended: the stages behind Kafka (processor,
# sink, analytics, poller) run at a lower priority than those that answer
# people and providers (api, receiver, simulator). Idle, it changes nothing;
# saturated, ingest gives way (api README: what it costs ingest). 0 turns it off.
# The api also runs in a session of its own: where Linux schedules by session
# (autogroup, on by default), its share is then weighed against Kafka's and
# each PostgreSQL backend's, not inside this script's, which the receiver and
# the ingest consumers fill.
INGEST_NICE=${INGEST_NICE:-10}
[[ $INGEST_NICE =~ ^[0-9]+$ && $INGEST_NICE -le 19 ]] || die "INGEST_NICE must be 0 to 19, got '$INGEST_NICE'"

launch() { # name: starts bin/name in the background, its log appended to
  local name=$1
  case $name in
    processor | sink | analytics | poller)
      nice -n "$INGEST_NICE" "$ROOT/bin/$name" >>"$LOGS/$name.log" 2>&1 </dev/null & ;;
    # A background job of this script is never a process group leader, so
    # setsid(1) starts the session without a fork: $! stays the api's pid.
    api) setsid "$ROOT/bin/$name" >>"$LOGS/$name.log" 2>&1 </dev/null & ;;
    *) "$ROOT/bin/$name" >>"$LOGS/$name.log" 2>&1 </dev/null & ;;
  esac
  PIDS[$name]=$!
}

start_service() { # name addrvar default
  local name=$1 var=$2 def=$3 addr
  addr=$(addr_of "$var" "$def")
  if port_busy "${addr##*:}"; then
    die "port ${addr##*:} for $name is taken by another process: stop it, or set $var"
  fi
  export "$var=$addr"
  launch "$name"
}

wait_ready() { # name addr
  local name=$1 addr=$2
  for ((i = 0; i < 600; i++)); do
    if curl -fsS -o /dev/null "http://$addr/readyz" 2>/dev/null; then return 0; fi
    if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
      tail -n 30 "$LOGS/$name.log" >&2
      die "$name exited during start-up; its log is $LOGS/$name.log"
    fi
    sleep 0.1
  done
  tail -n 30 "$LOGS/$name.log" >&2
  die "$name did not become ready in 60s; its log is $LOGS/$name.log"
}

say "starting services (logs in $LOGS)"
for s in "${SERVICES[@]}"; do
  read -r name var def <<<"$s"
  start_service "$name" "$var" "$def"
done
for s in "${SERVICES[@]}"; do
  read -r name var def <<<"$s"
  wait_ready "$name" "$(addr_of "$var" "$def")"
done

{
  echo "KAFKA_BROKERS=$KAFKA_BROKERS"
  echo "DATABASE_URL=$DATABASE_URL"
  echo "API_URL=$API_URL"
  echo "RECEIVER_URL=$RECEIVER_URL"
  echo "SIMULATOR_URL=$SIMULATOR_URL"
  echo "POLL_INTERVAL=$POLL_INTERVAL"
  echo "OPS_TOKEN=$OPS_TOKEN"
  [[ -n ${TOPIC_NAMESPACE:-} ]] && echo "TOPIC_NAMESPACE=$TOPIC_NAMESPACE"
  for var in "${SECRET_VARS[@]}"; do echo "$var=${!var}"; done
} >"$RUN_DIR/env.tmp"
chmod 600 "$RUN_DIR/env.tmp"
mv "$RUN_DIR/env.tmp" "$RUN_DIR/env"

ELAPSED=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
cat <<MSG

reviewpipe is running (ready in ${ELAPSED}s). Ctrl-C stops everything.

  web page and read API  $API_URL/
  webhook receiver       $RECEIVER_URL/webhooks/{provider}
  provider simulator     $SIMULATOR_URL/control/...
  Kafka                  $KAFKA_BROKERS
  PostgreSQL             $(sed -E 's#://([^:]+):[^@]*@#://\1:***@#' <<<"$DATABASE_URL")
  settings for a shell   set -a; source .run/env; set +a   (then: bin/reviewctl ...)
  operator token         OPS_TOKEN in .run/env (the page's operator view asks for it;
                         curl -H "Authorization: Bearer \$OPS_TOKEN" \$API_URL/metrics)
  logs                   $LOGS/

MSG

# parent_interrupted: make was sent SIGINT or SIGHUP on its own. GNU make then
# waits for its children inside its signal handler without passing the signal
# on (it forwards only SIGTERM), so make run would never end. While make sits
# in that handler the signal is in its blocked mask: notice it and stop. Also
# stop if make itself is gone.
PARENT=$PPID
parent_interrupted() {
  local blk
  [[ -r /proc/$PARENT/status ]] || return 0
  blk=$(awk '/^SigBlk:/ {print $2}' "/proc/$PARENT/status" 2>/dev/null)
  [[ -n $blk ]] && (( (16#$blk & 16#3) != 0 ))
}

# Supervise: a service that dies is restarted after a pause, and said so.
while :; do
  if parent_interrupted; then on_signal; fi
  for s in "${SERVICES[@]}"; do
    read -r name var def <<<"$s"
    if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
      wait "${PIDS[$name]}" 2>/dev/null; code=$?
      [[ $STOPPING == 1 ]] && break 2
      warn "$name exited (code $code); restarting it in 2s (log: $LOGS/$name.log)"
      sleep 2 & wait $! || true
      [[ $STOPPING == 1 ]] && break 2
      launch "$name"
    fi
  done
  sleep 1 &
  wait $! || true
done
