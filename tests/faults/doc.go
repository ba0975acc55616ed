// Package faults is reviewpipe's fault suite (issue 7, item 4): it runs the
// built services as processes on the three-broker Kafka cluster and a
// PostgreSQL instance of its own, drives a bounded, seeded load of signed
// webhooks (or simulator changes the poller picks up), injects faults (kill
// -9 of a service, of a broker, PostgreSQL restarted in immediate mode, a
// rebalance storm, a provider down and 429 storms), waits for the pipeline to
// settle and checks the store against a model of every acknowledged change.
//
// The tests run only with REVIEWPIPE_FAULTS=1, which scripts/faults.sh sets
// after starting the cluster and the PostgreSQL instance; elsewhere (make
// test) they skip. Every random schedule logs its seed; FAULTS_SEED replays it.
package faults
