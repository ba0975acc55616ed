package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
)

// wait blocks until Kafka or PostgreSQL answers: `wait kafka|postgres`.
func (c *cmd) wait(ctx context.Context, args []string) int {
	if len(args) == 0 || (args[0] != "kafka" && args[0] != "postgres") {
		return c.errorf("usage: reviewctl wait kafka|postgres [--timeout 60s]")
	}
	what := args[0]
	fs := c.newFlags("wait "+what, "wait "+what+" [flags]")
	common := config.ReadCommon(c.env)
	brokers := fs.String("brokers", "", "Kafka bootstrap servers (default $KAFKA_BROKERS)")
	minBrokers := fs.Int("min-brokers", 1, "how many brokers must answer the metadata request")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait")
	if code := c.parseArgs(fs, args[1:]); code >= 0 {
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
		return c.errorf("%s did not answer within %s: %v", what, *timeout, err)
	}
	return ExitOK
}

// setup creates the topics and applies the migrations, idempotently.
func (c *cmd) setup(ctx context.Context, args []string) int {
	fs := c.newFlags("setup", "setup [flags]")
	common := config.ReadCommon(c.env)
	partitions := c.env.Int("KAFKA_PARTITIONS", kafkax.DefaultPartitions)
	replication := c.env.Int("KAFKA_REPLICATION_FACTOR", 1)
	if err := c.env.Err(); err != nil {
		return c.errorf("%v", err)
	}
	fs.IntVar(&partitions, "partitions", partitions, "partitions of the partitioned topics ($KAFKA_PARTITIONS)")
	fs.IntVar(&replication, "replication-factor", replication, "replication factor of every topic ($KAFKA_REPLICATION_FACTOR)")
	wait := fs.Duration("wait", 60*time.Second, "how long to wait for Kafka and PostgreSQL to answer first")
	skipDB := fs.Bool("skip-postgres", false, "only create topics")
	if code := c.parseArgs(fs, args); code >= 0 {
		return code
	}
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	if err := kafkax.WaitReady(wctx, common.Brokers, 1); err != nil {
		return c.errorf("Kafka at %v: %v", common.Brokers, err)
	}
	names := kafkax.Names{Namespace: common.TopicNamespace}
	if err := kafkax.EnsureTopics(ctx, common.Brokers, names, kafkax.Specs(partitions), replication); err != nil {
		return c.errorf("%v", err)
	}
	fmt.Fprintf(c.Out, "topics ready (%d partitions, replication factor %d)\n", partitions, replication)
	if *skipDB {
		return ExitOK
	}
	if err := pgstore.WaitReady(wctx, common.DatabaseURL); err != nil {
		return c.errorf("PostgreSQL at %s: %v", config.MaskURL(common.DatabaseURL), err)
	}
	pool, err := pgstore.Open(ctx, common.DatabaseURL, 2)
	if err != nil {
		return c.errorf("%v", err)
	}
	defer pool.Close()
	n, err := pgstore.Migrate(ctx, pool)
	if err != nil {
		return c.errorf("%v", err)
	}
	fmt.Fprintf(c.Out, "migrations applied: %d new\n", n)
	return ExitOK
}
