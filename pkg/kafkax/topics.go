// Package kafkax sets up kafka-go the way reviewpipe needs it: topic and
// group names declared once, writers that wait for every in-sync replica,
// topic creation, broker readiness, partitions' first and end offsets, and
// a consumer-group runner that hands each assigned partition to a worker,
// commits only after the work is durable and keeps the group's lag metric.
package kafkax

import "time"

// Topic is a topic's base name; Topics.Namespace prefixes it for tests.
type Topic string

// The topics of reviewpipe (docs/contract.md §5) and the processor's changelog.
const (
	TopicRaw            Topic = "reviews.raw.v1"
	TopicNormalized     Topic = "reviews.normalized.v1"
	TopicDLQ            Topic = "reviews.dlq.v1"
	TopicSyncRequests   Topic = "reviews.sync-requests.v1"
	TopicProcessorState Topic = "reviews.processor-state.v1"
)

// Group is a consumer group's base name.
type Group string

// The consumer groups of reviewpipe.
const (
	GroupProcessor Group = "reviewpipe.processor"
	GroupSink      Group = "reviewpipe.sink"
	GroupPoller    Group = "reviewpipe.poller"
	GroupAnalytics Group = "reviewpipe.analytics.movie-stats"
)

// Header names reviewpipe sets on records.
const (
	HeaderEventID = "event-id"
	HeaderSource  = "source"
	HeaderRepair  = "repair"
	// HeaderRedriveOf names the dead letter a redriven record came from.
	HeaderRedriveOf = "redrive-of"
	// HeaderReplayOf names the event id a replayed record copies.
	HeaderReplayOf = "replay-of"
	HeaderAccepted = "accepted-at" // RFC 3339 nano: when the pipeline first accepted the change
)

// Names resolves topic and group names under a namespace: empty in
// production, a unique prefix per test so tests never share a topic.
type Names struct{ Namespace string }

// Topic returns the full name of t.
func (n Names) Topic(t Topic) string { return n.Namespace + string(t) }

// Group returns the full name of g.
func (n Names) Group(g Group) string { return n.Namespace + string(g) }

// TopicSpec says how a topic is created.
type TopicSpec struct {
	Topic      Topic
	Partitions int
	// Compact selects cleanup.policy=compact (else delete).
	Compact bool
	// Retention is retention.ms; negative keeps records forever.
	Retention time.Duration
}

// MaxMessageBytes is every topic's max.message.bytes, set by EnsureTopics
// (reviewctl setup): the largest record batch the broker takes. It holds the
// largest legal record of every topic with its envelope: a raw event of a
// delivery of MaxBodyLimit bytes, and the dead letter of such a body kept
// base64-encoded (4/3 of it) with its reason and headers. The broker's own
// default, 1 MiB, holds neither.
const MaxMessageBytes = 4 << 20

// MaxBodyLimit is the largest WEBHOOK_MAX_BODY a receiver accepts: the
// largest body whose dead letter, base64-encoded, still fits MaxMessageBytes
// with room for its envelope.
const MaxBodyLimit = 2 << 20

// BatchBytes bounds what a writer puts in one record batch: under
// MaxMessageBytes by room for the batch's own header and the records'
// framing, which kafka-go's size estimate leaves out.
const BatchBytes = MaxMessageBytes - 64<<10

// FetchBytes is what every consumer asks for in one fetch, per partition: at
// least one whole record batch of MaxMessageBytes, so no legal record can
// stall a reader.
const FetchBytes = 2 * MaxMessageBytes

// DefaultPartitions is the partition count of the partitioned topics: enough
// for several processor and sink instances to share the work.
const DefaultPartitions = 6

// Specs lists every topic with its settings. reviews.raw.v1 keeps records
// forever because reconciliation replays it from the start; the processor's
// changelog is compacted and co-partitioned with reviews.raw.v1.
func Specs(partitions int) []TopicSpec {
	if partitions <= 0 {
		partitions = DefaultPartitions
	}
	return []TopicSpec{
		{Topic: TopicRaw, Partitions: partitions, Retention: -1},
		{Topic: TopicNormalized, Partitions: partitions, Retention: 30 * 24 * time.Hour},
		{Topic: TopicDLQ, Partitions: 3, Retention: 90 * 24 * time.Hour},
		{Topic: TopicSyncRequests, Partitions: 3, Retention: 7 * 24 * time.Hour},
		{Topic: TopicProcessorState, Partitions: partitions, Compact: true, Retention: -1},
	}
}
