package kafkax_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

func TestGroupLabel(t *testing.T) {
	for g, want := range map[kafkax.Group]string{
		kafkax.GroupProcessor: "processor",
		kafkax.GroupSink:      "sink",
		kafkax.GroupPoller:    "poller",
		kafkax.GroupAnalytics: "analytics.movie-stats",
		"other.group":         "other.group",
	} {
		if got := g.Label(); got != want {
			t.Errorf("%s.Label() = %q, want %q", g, got, want)
		}
	}
}

// series returns name's series in reg as "label=value,..." -> value.
func series(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			k := ""
			for _, l := range m.GetLabel() {
				k += l.GetName() + "=" + l.GetValue() + ","
			}
			out[k] = m.GetGauge().GetValue()
		}
	}
	return out
}

// RunGroup keeps the lag of every partition it holds under LagMetric and
// the deprecated name, labelled with the group's base name and the topic,
// and drops both when it gives the partitions up.
func TestRunGroupKeepsLag(t *testing.T) {
	st := testenv.New(t)
	topic := st.Topic(kafkax.TopicNormalized)
	produce(t, st, topic, 120)
	reg := prometheus.NewRegistry()
	gm := kafkax.NewConsumerMetrics(reg).Group(kafkax.GroupSink).WithDeprecatedLag("reviewpipe_test_consumer_lag", "Old lag.")
	rec := &recorder{seen: map[string][]int64{}, owners: map[int]string{}}
	cfg := kafkax.GroupConfig{Brokers: st.Brokers, GroupID: st.Names.Group(kafkax.GroupSink), Topic: topic, MaxBatch: 10, Metrics: gm}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- kafkax.RunGroup(ctx, cfg, rec.open("a")) }()
	rec.waitHandled(t, 120)

	rec.mu.Lock()
	want, wantOld := map[string]float64{}, map[string]float64{}
	for p := range rec.seen {
		want["group=sink,partition="+p+",topic="+topic+","] = 0
		wantOld["partition="+p+","] = 0
	}
	rec.mu.Unlock()
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := series(t, reg, kafkax.LagMetric); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("%s: %v, want %v", kafkax.LagMetric, got, want)
		}
		if got := series(t, reg, "reviewpipe_test_consumer_lag"); fmt.Sprint(got) != fmt.Sprint(wantOld) {
			return fmt.Errorf("deprecated lag: %v, want %v", got, wantOld)
		}
		return nil
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := series(t, reg, kafkax.LagMetric); len(got) != 0 {
		t.Errorf("after the partitions were given up, %s still has %v", kafkax.LagMetric, got)
	}
	if got := series(t, reg, "reviewpipe_test_consumer_lag"); len(got) != 0 {
		t.Errorf("after the partitions were given up, the deprecated lag still has %v", got)
	}
}
