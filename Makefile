# reviewpipe. The two commands: `make run` and `make test`. See README.md.
SHELL := /bin/bash
SERVICES := analytics api poller processor receiver reviewctl simulator sink
MODULES := $(shell go list -m -f '{{.Path}}/...' 2>/dev/null)

.PHONY: all build run test unit lint bench faults stack-up stack-down stack-status \
        kafka3-up kafka3-down kafka3-status clean

all: build

## build: every binary into bin/
build:
	@mkdir -p bin
	@for s in $(SERVICES); do go build -trimpath -o bin/$$s ./services/$$s || exit 1; done
	@echo "built: $(addprefix bin/,$(SERVICES))"

## run: local Kafka + PostgreSQL + every service, in the foreground until Ctrl-C
run: build
	@# A job started in the background by a non-interactive shell inherits SIGINT
	@# as ignored, which bash cannot trap: reset it so Ctrl-C or kill -INT stops all.
	@exec env --default-signal=INT,TERM,HUP scripts/run.sh

## test: the same set-up, then every test (unit, integration, end to end)
test: build
	@scripts/test.sh

## unit: the tests that need no Kafka or PostgreSQL
unit:
	go test -count=1 -short $(MODULES)

## lint: gofmt, go vet, staticcheck (pinned in tools/go.mod), long functions (scripts/lint.sh)
lint:
	@scripts/lint.sh

## bench: the load benchmark (bench/README.md): a table, bench/results/*.json and PNG charts
bench: build
	@scripts/bench.sh

## faults: the fault suite at full size on the three-broker cluster (tests/faults/README.md)
faults: build
	@scripts/faults.sh

## stack-up / stack-down / stack-status: the local Kafka and PostgreSQL alone
stack-up: build
	@scripts/kafka.sh start single >/dev/null && scripts/postgres.sh start >/dev/null && bin/reviewctl setup
	@echo "KAFKA_BROKERS=127.0.0.1:$${KAFKA_PORT:-9092}"; echo "DATABASE_URL=$$(scripts/postgres.sh url)"
stack-down:
	@scripts/kafka.sh stop single; scripts/postgres.sh stop
stack-status:
	@scripts/kafka.sh status single; scripts/postgres.sh status

## kafka3-up / kafka3-down: the three-broker cluster for fault tests
kafka3-up: build
	@scripts/kafka.sh start cluster3
kafka3-down:
	@scripts/kafka.sh stop cluster3
kafka3-status:
	@scripts/kafka.sh status cluster3

## clean: binaries and the local stack's data (stops it first)
clean: stack-down kafka3-down
	rm -rf bin .run
