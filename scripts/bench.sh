#!/usr/bin/env bash
# make bench: the load benchmark (issue 7). Brings up Kafka and PostgreSQL as
# make test does (reusing a running stack, or KAFKA_BROKERS / DATABASE_URL),
# builds the load generator, and runs it: every run gets its own topic
# namespace and database and runs bin/receiver, processor, sink and api as
# processes. Prints a table of medians and writes bench/results/<time>.json.
# Extra arguments go to the load generator (bin/loadgen -h), e.g.
#   scripts/bench.sh -runs 1 -load 3s -steady 3s -scenarios single
# or BENCH_ARGS="-runs 5" make bench.
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
trap stack_down EXIT

cd "$ROOT"
stack_up
say "building the load generator"
go build -trimpath -o bin/loadgen ./bench/cmd/loadgen
say "running the load benchmark (the machine is shared: read ratios to the ceilings, not only absolutes)"
# shellcheck disable=SC2086
bin/loadgen -bin "$ROOT/bin" -out "$ROOT/bench/results" ${BENCH_ARGS:-} "$@"
