// Package testenv gives each integration test its own topics, consumer
// groups and database on the real Kafka and PostgreSQL that `make test`
// starts (KAFKA_BROKERS, DATABASE_URL), and removes them in t.Cleanup.
//
// Under `make test` (REVIEWPIPE_INTEGRATION=1) a missing stack fails the
// test; in a plain `go test` it skips with the command to run.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
)

// Stack is one test's slice of the real stack.
type Stack struct {
	Brokers []string
	// Names namespaces every topic and group of this test.
	Names kafkax.Names
	// DatabaseURL points at a database made for this test, migrated.
	DatabaseURL string
	// DB is a pool on DatabaseURL, closed in cleanup.
	DB *pgxpool.Pool
}

// Env returns the environment a service under test needs to use this
// stack: KAFKA_BROKERS, DATABASE_URL and TOPIC_NAMESPACE.
func (s *Stack) Env() []string {
	return []string{
		"KAFKA_BROKERS=" + strings.Join(s.Brokers, ","),
		"DATABASE_URL=" + s.DatabaseURL,
		"TOPIC_NAMESPACE=" + s.Names.Namespace,
	}
}

// Topic is the test's name of t.
func (s *Stack) Topic(t kafkax.Topic) string { return s.Names.Topic(t) }

func required(t testing.TB) (brokers []string, dbURL string) {
	t.Helper()
	b, u := os.Getenv("KAFKA_BROKERS"), os.Getenv("DATABASE_URL")
	if b == "" || u == "" {
		if os.Getenv("REVIEWPIPE_INTEGRATION") == "1" {
			t.Fatal("KAFKA_BROKERS and DATABASE_URL must be set for integration tests (make test sets them)")
		}
		t.Skip("integration test: run `make test`, or set KAFKA_BROKERS and DATABASE_URL")
	}
	return strings.Split(b, ","), u
}

// New makes a namespace with every topic of kafkax.Specs and a fresh
// migrated database. It fails the test if Kafka or PostgreSQL do not answer.
func New(t testing.TB) *Stack {
	t.Helper()
	brokers, base := required(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := RandomID()
	s := &Stack{Brokers: brokers, Names: kafkax.Names{Namespace: "t" + id + "."}}
	specs := kafkax.Specs(kafkax.DefaultPartitions)
	if err := kafkax.EnsureTopics(ctx, brokers, s.Names, specs, 1); err != nil {
		t.Fatalf("create test topics: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := kafkax.DeleteTopics(ctx, brokers, s.Names, specs); err != nil {
			t.Logf("delete test topics: %v", err)
		}
	})
	s.DatabaseURL = NewDatabase(t, base, "t_"+id)
	pool, err := pgstore.Open(ctx, s.DatabaseURL, 10)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(pool.Close)
	if _, err := pgstore.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate test database: %v", err)
	}
	s.DB = pool
	return s
}

// NewDatabase creates database name on the server of baseURL and returns its
// URL; cleanup drops it.
func NewDatabase(t testing.TB, baseURL, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", baseURL, err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, baseURL)
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatalf("DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// RandomID returns 8 random hex characters.
func RandomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// FreeAddr returns a 127.0.0.1 address with a port free right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Eventually polls cond every 50ms until it returns nil or d passes, then
// fails the test with cond's last error. No fixed sleeps.
func Eventually(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Errorf is fmt.Errorf, for conditions passed to Eventually.
var Errorf = fmt.Errorf
