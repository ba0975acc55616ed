package cli

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// settings are what the operator subcommands read from the environment,
// the same variables as the services (config.ReadCommon).
type settings struct {
	config.Common
	names kafkax.Names
}

// loadSettings reads the common variables; an error names every bad one.
func loadSettings(o IO) (settings, error) {
	c := config.ReadCommon(o.Env)
	if err := o.Env.Err(); err != nil {
		return settings{}, err
	}
	if len(c.Brokers) == 0 {
		return settings{}, errors.New("KAFKA_BROKERS is empty: it must list host:port of at least one broker")
	}
	return settings{Common: c, names: kafkax.Names{Namespace: c.TopicNamespace}}, nil
}

// topic returns the full name of t under TOPIC_NAMESPACE.
func (s settings) topic(t kafkax.Topic) string { return s.names.Topic(t) }

// openDB opens a small pool on DATABASE_URL; the caller closes it.
func (s settings) openDB(ctx context.Context) (*pgxpool.Pool, error) {
	pool, err := pgstore.Open(ctx, s.DatabaseURL, 4)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL at %s: %w", config.MaskURL(s.DatabaseURL), err)
	}
	return pool, nil
}

// adapters is the provider registry the subcommands normalize with: the
// processor's own (provider.Default). Tests swap it to simulate a fixed
// adapter.
var adapters = provider.Default

// isUndefinedTable reports whether err is PostgreSQL's "relation does not
// exist" (SQLSTATE 42P01).
func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}

// missingTableErr explains a table that a migration has not created yet.
func missingTableErr(table, owner string) error {
	return fmt.Errorf("table %s does not exist: apply the migrations (%s) with `reviewctl setup`", table, owner)
}

// operator names who ran a write, for the audit columns.
func operator(o IO) string {
	u := o.Env.String("USER", "")
	h, _ := os.Hostname()
	switch {
	case u != "" && h != "":
		return "reviewctl:" + u + "@" + h
	case u != "":
		return "reviewctl:" + u
	}
	return "reviewctl"
}
