package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// replication is the replication factor of the suite's topics on cluster3.
const replication = 3

// env is one scenario's slice of the fault stack: its own topics (RF 3) on
// the three-broker cluster and its own database on the fault PostgreSQL.
type env struct {
	root    string // the repository
	bin     string // built binaries
	brokers []string
	names   kafkax.Names
	dbURL   string
	db      *pgxpool.Pool
	seed    uint64
	size    string // "ci" or "full"
	logDir  string
	pgData  string
	pgBin   string
	pgPort  string
	pgLog   string
}

// setup skips unless REVIEWPIPE_FAULTS=1, then makes the scenario's topics
// and database, and picks and logs its seed.
func setup(t *testing.T) *env {
	t.Helper()
	if os.Getenv("REVIEWPIPE_FAULTS") != "1" {
		t.Skip("fault suite: runs only with REVIEWPIPE_FAULTS=1 on the three-broker cluster and its own PostgreSQL; " +
			"run scripts/faults.sh (make faults), FAULTS_SIZE=ci for the short size")
	}
	e := &env{
		root:   os.Getenv("FAULTS_ROOT"),
		bin:    os.Getenv("REVIEWPIPE_BIN"),
		size:   os.Getenv("FAULTS_SIZE"),
		pgData: os.Getenv("FAULTS_PGDATA"),
		pgBin:  os.Getenv("FAULTS_PGBIN"),
		pgPort: os.Getenv("FAULTS_PG_PORT"),
		pgLog:  os.Getenv("FAULTS_PG_LOG"),
	}
	if e.root == "" {
		e.root, _ = filepath.Abs("../..")
	}
	if e.bin == "" {
		e.bin = filepath.Join(e.root, "bin")
	}
	if e.size == "" {
		e.size = "full"
	}
	b, base := os.Getenv("FAULTS_KAFKA_BROKERS"), os.Getenv("FAULTS_DATABASE_URL")
	if b == "" || base == "" {
		t.Fatal("FAULTS_KAFKA_BROKERS and FAULTS_DATABASE_URL must be set: run scripts/faults.sh")
	}
	e.brokers = strings.Split(b, ",")
	e.seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("FAULTS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FAULTS_SEED=%q: %v", s, err)
		}
		e.seed = v
	}
	// Printed on stdout as well, so the seed is seen even if the test hangs.
	fmt.Printf("=== %s: seed %d (replay with FAULTS_SEED=%d FAULTS_RUN='%s$')\n", t.Name(), e.seed, e.seed, t.Name())
	t.Logf("seed %d, size %s", e.seed, e.size)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	id := testenv.RandomID()
	e.names = kafkax.Names{Namespace: "f" + id + "."}
	specs := kafkax.Specs(kafkax.DefaultPartitions)
	if err := kafkax.EnsureTopics(ctx, e.brokers, e.names, specs, replication); err != nil {
		t.Fatalf("create topics (RF %d) on %v: %v", replication, e.brokers, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := kafkax.DeleteTopics(ctx, e.brokers, e.names, specs); err != nil {
			t.Logf("delete topics: %v", err)
		}
	})
	e.dbURL = testenv.NewDatabase(t, base, "f_"+id)
	pool, err := pgstore.Open(ctx, e.dbURL, 4)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(pool.Close)
	if _, err := pgstore.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	e.db = pool
	e.logDir = filepath.Join(e.root, ".run", "faults-logs", t.Name()+"-"+time.Now().UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(e.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("service logs in %s", e.logDir)
	return e
}

// serviceEnv is what every service of the scenario gets.
func (e *env) serviceEnv() []string {
	return []string{
		"KAFKA_BROKERS=" + strings.Join(e.brokers, ","),
		"DATABASE_URL=" + e.dbURL,
		"TOPIC_NAMESPACE=" + e.names.Namespace,
		"LOG_LEVEL=info",
	}
}

// pick returns ci under FAULTS_SIZE=ci, else full.
func pick[T any](e *env, ci, full T) T {
	if e.size == "ci" {
		return ci
	}
	return full
}

// kafkaNode runs scripts/kafka.sh kill-node|start-node n.
func (e *env) kafkaNode(t *testing.T, verb string, n int) {
	t.Helper()
	out, err := exec.Command(filepath.Join(e.root, "scripts", "kafka.sh"), verb, strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("kafka.sh %s %d: %v\n%s", verb, n, err, out)
	}
}

// pgCtl runs pg_ctl on the fault PostgreSQL as its owner.
func (e *env) pgCtl(args ...string) error {
	if e.pgData == "" || e.pgBin == "" {
		return fmt.Errorf("FAULTS_PGDATA and FAULTS_PGBIN must be set: run scripts/faults.sh")
	}
	argv := append([]string{filepath.Join(e.pgBin, "pg_ctl"), "-D", e.pgData}, args...)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--"}, argv...)...)
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %v: %v: %s", args, err, out)
	}
	return nil
}

// pgStopImmediate stops the fault PostgreSQL in immediate mode (no
// checkpoint: crash recovery on the next start).
func (e *env) pgStopImmediate() error { return e.pgCtl("-m", "immediate", "-w", "-t", "60", "stop") }

// pgStart starts the fault PostgreSQL again.
func (e *env) pgStart() error {
	return e.pgCtl("-l", e.pgLog, "-o", "-p "+e.pgPort, "-w", "-t", "120", "start")
}
