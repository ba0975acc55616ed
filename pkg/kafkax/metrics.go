package kafkax

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// LagMetric is the consumer lag every RunGroup with GroupConfig.Metrics
// exports, labelled group, topic and partition.
const LagMetric = "reviewpipe_consumer_lag_records"

// ConsumerMetrics are the metrics RunGroup keeps for the consumer groups of
// a process. Make one per registry with NewConsumerMetrics (a second one on
// the same registry panics) and take each group's handle from Group. Safe
// for concurrent use.
type ConsumerMetrics struct {
	reg prometheus.Registerer
	lag *prometheus.GaugeVec
}

// NewConsumerMetrics registers the consumer metrics on reg.
func NewConsumerMetrics(reg prometheus.Registerer) *ConsumerMetrics {
	m := &ConsumerMetrics{reg: reg, lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: LagMetric,
		Help: "Records of a partition the consumer group has not handled yet (the partition's end offset less the next offset to handle), set after every batch, for each partition this process holds; group is the group's name without the reviewpipe. prefix.",
	}, []string{"group", "topic", "partition"})}
	reg.MustRegister(m.lag)
	return m
}

// Label is the value of the group label of g's metrics: g without the
// "reviewpipe." prefix ("sink", "processor", "analytics.movie-stats"). It is
// the base name, never namespaced, so dashboards and alerts select a group
// the same way whatever TOPIC_NAMESPACE is.
func (g Group) Label() string { return strings.TrimPrefix(string(g), "reviewpipe.") }

// GroupMetrics are one consumer group's series; give it to RunGroup in
// GroupConfig.Metrics. A nil *GroupMetrics records nothing. Safe for
// concurrent use.
type GroupMetrics struct {
	m     *ConsumerMetrics
	group string
	// deprecatedLag is the group's lag gauge under the name its service
	// exported before LagMetric, labelled partition only (nil: none).
	deprecatedLag *prometheus.GaugeVec
}

// Group returns the handle of g's series, labelled group=g.Label().
func (m *ConsumerMetrics) Group(g Group) *GroupMetrics {
	return &GroupMetrics{m: m, group: g.Label()}
}

// WithDeprecatedLag also exports the group's lag as name{partition}, the
// gauge its service registered before LagMetric existed, so dashboards and
// alerts keep working for one release; meaning is the old help text. It
// registers name on the ConsumerMetrics' registerer (panicking when it is
// taken) and returns g. Remove the call in the release after.
func (g *GroupMetrics) WithDeprecatedLag(name, meaning string) *GroupMetrics {
	g.deprecatedLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: name,
		Help: fmt.Sprintf("Deprecated, removed in the next release: use %s{group=%q}. %s", LagMetric, g.group, meaning),
	}, []string{"partition"})
	g.m.reg.MustRegister(g.deprecatedLag)
	return g
}

// setLag records a partition's lag after a batch.
func (g *GroupMetrics) setLag(topic string, partition int, lag int64) {
	if g == nil {
		return
	}
	p := strconv.Itoa(partition)
	g.m.lag.WithLabelValues(g.group, topic, p).Set(float64(lag))
	if g.deprecatedLag != nil {
		g.deprecatedLag.WithLabelValues(p).Set(float64(lag))
	}
}

// forget drops a partition's series when this process gives it up, so a
// partition another member now holds is not counted twice with a stale
// value.
func (g *GroupMetrics) forget(topic string, partition int) {
	if g == nil {
		return
	}
	p := strconv.Itoa(partition)
	g.m.lag.DeleteLabelValues(g.group, topic, p)
	if g.deprecatedLag != nil {
		g.deprecatedLag.DeleteLabelValues(p)
	}
}
