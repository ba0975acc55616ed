#!/usr/bin/env bash
# Apache Kafka in KRaft mode from Maven Central's jars, no Docker.
#
#   scripts/kafka.sh install            fetch the pinned release's jars (once)
#   scripts/kafka.sh start [single|cluster3]
#   scripts/kafka.sh stop  [single|cluster3]
#   scripts/kafka.sh status [single|cluster3]
#   scripts/kafka.sh kill-node N        (cluster3) SIGKILL one broker, for fault tests
#   scripts/kafka.sh pause-node N       (cluster3) SIGSTOP one broker: it holds its
#                                       connections but answers nothing, as if cut off
#   scripts/kafka.sh resume-node N      (cluster3) SIGCONT it
#   scripts/kafka.sh start-node N       (cluster3) start one broker again
#
# single:   one broker+controller node, PLAINTEXT 127.0.0.1:${KAFKA_PORT:-9092}.
# cluster3: three broker+controller nodes on 127.0.0.1:29092,29192,29292,
#           replication factor 3, min.insync.replicas=2.
# Start is idempotent: a running node is left alone. Readiness is a Kafka
# metadata request answered by every node (bin/reviewctl wait kafka).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/kafka/pom.xml")
LIBS=$CACHE_DIR/kafka-$KAFKA_VERSION/libs
KAFKA_HEAP=${KAFKA_HEAP:-512m}

install() {
  if [[ -f $LIBS/.complete ]]; then return 0; fi
  command -v java >/dev/null || die "java not found: install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: apt-get install maven)"
  say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  rm -rf "$LIBS"
  # Maven's output goes to stderr: stdout of `start` is the broker list.
  MAVEN_OPTS="${MAVEN_OPTS:-} -Djansi.passthrough=false" mvn -q -B -Dstyle.color=never \
    -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS" >&2 \
    || die "maven could not fetch Kafka's jars (see above); check access to Maven Central"
  touch "$LIBS/.complete"
}

# layout: sets NODES, PORTS, CPORTS, DIR, RF for a topology.
layout() {
  case ${1:-single} in
    single)
      NODES=(1); PORTS=("${KAFKA_PORT:-9092}"); CPORTS=("${KAFKA_CONTROLLER_PORT:-9093}")
      DIR=$RUN_DIR/kafka; RF=1 ;;
    cluster3)
      NODES=(1 2 3); PORTS=(29092 29192 29292); CPORTS=(29093 29193 29293)
      DIR=$RUN_DIR/kafka3; RF=3 ;;
    *) die "unknown topology '$1': use single or cluster3" ;;
  esac
}

voters() {
  local v=() i
  for i in "${!NODES[@]}"; do v+=("${NODES[$i]}@127.0.0.1:${CPORTS[$i]}"); done
  (IFS=,; echo "${v[*]}")
}

brokers() {
  local b=() p
  for p in "${PORTS[@]}"; do b+=("127.0.0.1:$p"); done
  (IFS=,; echo "${b[*]}")
}

write_config() { # index
  local i=$1 n=${NODES[$1]} nodedir=$DIR/node-${NODES[$1]}
  local isr=$(( RF > 1 ? 2 : 1 ))
  mkdir -p "$nodedir"
  cat >"$nodedir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:${PORTS[$i]},CONTROLLER://127.0.0.1:${CPORTS[$i]}
advertised.listeners=PLAINTEXT://127.0.0.1:${PORTS[$i]}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$nodedir/data
auto.create.topics.enable=false
num.partitions=6
default.replication.factor=$RF
min.insync.replicas=$isr
offsets.topic.replication.factor=$RF
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=$RF
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$RF
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.segment.bytes=268435456
unclean.leader.election.enable=false
PROPS
}

start_node() { # index
  local i=$1 n=${NODES[$1]} nodedir=$DIR/node-${NODES[$1]}
  if pid_alive "$nodedir/pid"; then return 0; fi
  if port_busy "${PORTS[$i]}"; then
    die "port ${PORTS[$i]} is taken by another process: stop it, or set KAFKA_BROKERS to use that Kafka"
  fi
  write_config "$i"
  if [[ ! -f $nodedir/data/meta.properties ]]; then
    java -Xmx256m -cp "$LIBS/*" -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.yaml" \
      -Dkafka.logs.dir="$nodedir" kafka.tools.StorageTool format \
      -t "$(cat "$DIR/cluster-id")" -c "$nodedir/server.properties" >"$nodedir/format.log" 2>&1 \
      || die "formatting Kafka storage failed: see $nodedir/format.log"
  fi
  setsid java -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:ActiveProcessorCount=2 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.yaml" -Dkafka.logs.dir="$nodedir" \
    -cp "$LIBS/*" kafka.Kafka "$nodedir/server.properties" \
    >"$nodedir/stdout.log" 2>&1 </dev/null &
  echo $! >"$nodedir/pid"
}

start() {
  layout "${1:-single}"
  install
  mkdir -p "$DIR"
  if [[ ! -f $DIR/cluster-id ]]; then
    # 16 random bytes, unpadded base64url: a KRaft cluster id.
    head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$DIR/cluster-id"
  fi
  local i
  for i in "${!NODES[@]}"; do start_node "$i"; done
  say "waiting for Kafka ($(brokers)) to answer a metadata request"
  if ! "$ROOT/bin/reviewctl" wait kafka --brokers "$(brokers)" --min-brokers "${#NODES[@]}" --timeout 120s; then
    for i in "${NODES[@]}"; do tail -n 20 "$DIR/node-$i/server.log" "$DIR/node-$i/stdout.log" 2>/dev/null >&2 || true; done
    die "Kafka did not become ready in 120s; logs: $DIR/node-*/server.log"
  fi
  echo "$(brokers)"
}

stop() {
  layout "${1:-single}"
  local n
  # Signal every node first: stopped one by one, the last node has lost
  # the controller quorum (2 of 3 voters) and waits out its controlled
  # shutdown until it is killed, 60 s later.
  for n in "${NODES[@]}"; do
    if pid_alive "$DIR/node-$n/pid"; then # a paused node (pause-node) must run to stop
      kill -CONT "$(cat "$DIR/node-$n/pid")" 2>/dev/null || true
      kill -TERM "$(cat "$DIR/node-$n/pid")" 2>/dev/null || true
    fi
  done
  for n in "${NODES[@]}"; do stop_pid "$DIR/node-$n/pid" "kafka node $n" 60; done
}

status() {
  layout "${1:-single}"
  local n up=0
  for n in "${NODES[@]}"; do
    if pid_alive "$DIR/node-$n/pid"; then echo "kafka node $n: running (pid $(cat "$DIR/node-$n/pid"))"; up=$((up+1))
    else echo "kafka node $n: stopped"; fi
  done
  [[ $up -eq ${#NODES[@]} ]]
}

case ${1:-} in
  install) install ;;
  start) start "${2:-single}" ;;
  stop) stop "${2:-single}" ;;
  status) status "${2:-single}" ;;
  brokers) layout "${2:-single}"; brokers ;;
  kill-node) layout cluster3; kill -KILL "$(cat "$DIR/node-$2/pid")"; rm -f "$DIR/node-$2/pid" ;;
  pause-node) layout cluster3; kill -STOP "$(cat "$DIR/node-$2/pid")" ;;
  resume-node) layout cluster3; kill -CONT "$(cat "$DIR/node-$2/pid")" ;;
  start-node) layout cluster3; install; start_node $(( $2 - 1 )) ;;
  *) echo "usage: $0 install | start|stop|status [single|cluster3] | brokers [topology] | kill-node N | start-node N | pause-node N | resume-node N" >&2; exit 2 ;;
esac
