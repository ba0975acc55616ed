// Package tests holds reviewpipe's end-to-end tests: they build the
// services' binaries and run them as processes against the real Kafka and
// PostgreSQL, talking to them only through their outside interfaces.
package tests
