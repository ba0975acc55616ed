#!/usr/bin/env bash
# make test: the stack that make run uses (started here when not running,
# and stopped afterwards), then every test: lint, unit, integration against
# the real Kafka and PostgreSQL, end to end, and the schema compatibility check.
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
trap stack_down EXIT

cd "$ROOT"
"$ROOT/scripts/lint.sh"  # gofmt, go vet, staticcheck, long functions: what make lint runs
MODULES=$(go list -m -f '{{.Path}}/...')

stack_up
"$ROOT/scripts/chromium.sh"  # the browser tests (services/api) drive headless Chromium
"$ROOT/scripts/promtool.sh" >/dev/null  # tests/ops checks the alert rules with Prometheus's promtool
export REVIEWPIPE_INTEGRATION=1 REVIEWPIPE_BIN=$ROOT/bin
mkdir -p "$ROOT/tests/artifacts"

say "go test: unit, integration and end-to-end tests (real Kafka and PostgreSQL)"
# shellcheck disable=SC2086
go test -count=1 -timeout 40m ${GOTEST_FLAGS:-} $MODULES

say "fault suite, CI size: three-broker cluster, kill -9 of each service, broker loss and freeze, PostgreSQL immediate restart, rebalance storm, provider outage, simulator webhooks"
FAULTS_SIZE=ci "$ROOT/scripts/faults.sh"
