#!/usr/bin/env bash
# make bench: the load benchmark (issue 7). Brings up Kafka and PostgreSQL as
# make test does (reusing a running stack, or KAFKA_BROKERS / DATABASE_URL),
# builds the load generator, and runs it: every run gets its own topic
# namespace and database and runs bin/receiver, processor, sink and api as
# processes. Prints a table of medians and writes bench/results/<time>.json.
# Extra arguments go to the load generator (bin/loadgen -h), e.g.
#   scripts/bench.sh -runs 1 -load 3s -steady 3s -scenarios single
# or BENCH_ARGS="-runs 5" make bench. BENCH_BASE=REF (e.g. HEAD~1) builds the
# services of REF (bench/baseline.sh) and alternates runs between them and
# the current ones: every figure gets its ratio current/baseline.
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
trap stack_down EXIT

cd "$ROOT"
stack_up
say "building the load generator"
go build -trimpath -o bin/loadgen ./bench/cmd/loadgen
base_args=()
if [[ -n "${BENCH_BASE:-}" ]]; then
  say "building the baseline $BENCH_BASE"
  base_args=(-baseline-bin "$(bench/baseline.sh "$BENCH_BASE")")
fi
say "running the load benchmark (the machine is shared: read ratios to the ceilings, not only absolutes)"
# shellcheck disable=SC2086
bin/loadgen -bin "$ROOT/bin" -out "$ROOT/bench/results" "${base_args[@]}" ${BENCH_ARGS:-} "$@"
