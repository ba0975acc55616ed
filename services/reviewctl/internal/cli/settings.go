package cli

import (
	"context"
	"errors"
	"os"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/store"
)

// settings are what the operator subcommands read from the environment,
// the same variables as the services (config.ReadCommon).
type settings struct {
	config.Common
	names kafkax.Names
}

// settings reads the common variables; an error names every bad one.
func (c *cmd) settings() (settings, error) {
	s := config.ReadCommon(c.env)
	if err := c.env.Err(); err != nil {
		return settings{}, err
	}
	if len(s.Brokers) == 0 {
		return settings{}, errors.New("KAFKA_BROKERS is empty: it must list host:port of at least one broker")
	}
	return settings{Common: s, names: kafkax.Names{Namespace: s.TopicNamespace}}, nil
}

// topic returns the full name of t under TOPIC_NAMESPACE.
func (s settings) topic(t kafkax.Topic) string { return s.names.Topic(t) }

// log returns a reader of topic t.
func (s settings) log(t kafkax.Topic) *kafkalog.Client { return kafkalog.New(s.Brokers, s.topic(t)) }

// writers returns writers to the topics; the caller closes them.
func (s settings) writers() *kafkalog.Writers { return kafkalog.NewWriters(s.Brokers, s.names) }

// openDB opens a small pool on DATABASE_URL; the caller closes it.
func (s settings) openDB(ctx context.Context) (*store.DB, error) {
	return store.Open(ctx, s.DatabaseURL)
}

// connect reads the settings and opens the database; the caller closes
// it. On a failure it prints the error and returns a nil DB.
func (c *cmd) connect(ctx context.Context) (settings, *store.DB) {
	s, err := c.settings()
	if err != nil {
		c.errorf("%v", err)
		return s, nil
	}
	db, err := s.openDB(ctx)
	if err != nil {
		c.errorf("%v", err)
		return s, nil
	}
	return s, db
}

// operator names who ran a write, for the audit columns.
func (c *cmd) operator() string {
	u := c.env.String("USER", "")
	h, _ := os.Hostname()
	switch {
	case u != "" && h != "":
		return "reviewctl:" + u + "@" + h
	case u != "":
		return "reviewctl:" + u
	}
	return "reviewctl"
}
