module github.com/reviewpipe/reviewpipe/services/reviewctl

go 1.26.0

require (
	github.com/jackc/pgx/v5 v5.12.0
	github.com/reviewpipe/reviewpipe/pkg v0.0.0
	github.com/segmentio/kafka-go v0.4.51
	golang.org/x/sync v0.24.0
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/klauspost/compress v1.20.1 // indirect
	github.com/pierrec/lz4/v4 v4.1.15 // indirect
	github.com/segmentio/asm v1.1.3 // indirect
	github.com/segmentio/encoding v0.5.4 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
)

replace github.com/reviewpipe/reviewpipe/pkg => ../../pkg
