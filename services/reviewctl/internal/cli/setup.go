package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
)

func init() {
	register("wait", "wait until Kafka or PostgreSQL answers (wait kafka|postgres)", runWait)
	register("setup", "create the Kafka topics and apply the PostgreSQL migrations (idempotent)", runSetup)
}

func runWait(ctx context.Context, args []string, o IO) int {
	if len(args) == 0 || (args[0] != "kafka" && args[0] != "postgres") {
		return o.Errorf("usage: reviewctl wait kafka|postgres [--timeout 60s]")
	}
	what := args[0]
	fs := newFlags("wait "+what, "wait "+what+" [flags]", o)
	common := config.ReadCommon(o.Env)
	brokers := fs.String("brokers", "", "Kafka bootstrap servers (default $KAFKA_BROKERS)")
	minBrokers := fs.Int("min-brokers", 1, "how many brokers must answer the metadata request")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait")
	if code := parseArgs(fs, args[1:], o); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var err error
	if what == "kafka" {
		b := common.Brokers
		if *brokers != "" {
			b = splitList(*brokers)
		}
		err = kafkax.WaitReady(ctx, b, *minBrokers)
	} else {
		u := common.DatabaseURL
		if *dbURL != "" {
			u = *dbURL
		}
		err = pgstore.WaitReady(ctx, u)
	}
	if err != nil {
		return o.Errorf("%s did not answer within %s: %v", what, *timeout, err)
	}
	return ExitOK
}

func runSetup(ctx context.Context, args []string, o IO) int {
	fs := newFlags("setup", "setup [flags]", o)
	common := config.ReadCommon(o.Env)
	partitions := o.Env.Int("KAFKA_PARTITIONS", kafkax.DefaultPartitions)
	replication := o.Env.Int("KAFKA_REPLICATION_FACTOR", 1)
	if err := o.Env.Err(); err != nil {
		return o.Errorf("%v", err)
	}
	fs.IntVar(&partitions, "partitions", partitions, "partitions of the partitioned topics ($KAFKA_PARTITIONS)")
	fs.IntVar(&replication, "replication-factor", replication, "replication factor of every topic ($KAFKA_REPLICATION_FACTOR)")
	wait := fs.Duration("wait", 60*time.Second, "how long to wait for Kafka and PostgreSQL to answer first")
	skipDB := fs.Bool("skip-postgres", false, "only create topics")
	if code := parseArgs(fs, args, o); code >= 0 {
		return code
	}
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	if err := kafkax.WaitReady(wctx, common.Brokers, 1); err != nil {
		return o.Errorf("Kafka at %v: %v", common.Brokers, err)
	}
	names := kafkax.Names{Namespace: common.TopicNamespace}
	if err := kafkax.EnsureTopics(ctx, common.Brokers, names, kafkax.Specs(partitions), replication); err != nil {
		return o.Errorf("%v", err)
	}
	fmt.Fprintf(o.Out, "topics ready (%d partitions, replication factor %d)\n", partitions, replication)
	if *skipDB {
		return ExitOK
	}
	if err := pgstore.WaitReady(wctx, common.DatabaseURL); err != nil {
		return o.Errorf("PostgreSQL at %s: %v", config.MaskURL(common.DatabaseURL), err)
	}
	pool, err := pgstore.Open(ctx, common.DatabaseURL, 2)
	if err != nil {
		return o.Errorf("%v", err)
	}
	defer pool.Close()
	n, err := pgstore.Migrate(ctx, pool)
	if err != nil {
		return o.Errorf("%v", err)
	}
	fmt.Fprintf(o.Out, "migrations applied: %d new\n", n)
	return ExitOK
}
