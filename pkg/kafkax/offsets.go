package kafkax

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Span is what a partition holds: First is its earliest offset still in the
// log, End one past its last record (the high watermark, where the next
// record goes). End-First counts its records, fewer after compaction.
type Span struct{ First, End int64 }

// offsetsTimeout bounds each request of Offsets and PartitionOffsets when
// ctx has no earlier deadline.
const offsetsTimeout = 10 * time.Second

// Offsets returns the Span of every partition of each topic: one metadata
// request, then one ListOffsets request for all partitions. It fails when a
// topic is missing or any partition's offsets cannot be read (a partition
// without a leader), rather than returning part of the answer. It blocks
// until the brokers answer or ctx ends.
func Offsets(ctx context.Context, brokers []string, topics ...string) (map[string]map[int]Span, error) {
	c, done := NewAdminClient(brokers, offsetsTimeout)
	defer done()
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("kafka metadata of %v: %w", topics, err)
	}
	parts, err := partitionsOf(md)
	if err != nil {
		return nil, err
	}
	return listOffsets(ctx, c, parts)
}

// EndOffsets returns the end offset (one past the last record) of every
// partition of topic; see Offsets.
func EndOffsets(ctx context.Context, brokers []string, topic string) (map[int]int64, error) {
	spans, err := Offsets(ctx, brokers, topic)
	if err != nil {
		return nil, err
	}
	out := make(map[int]int64, len(spans[topic]))
	for p, s := range spans[topic] {
		out[p] = s.End
	}
	return out, nil
}

// PartitionOffsets returns the Span of one partition, with a single
// ListOffsets request (no metadata request). It blocks until the brokers
// answer or ctx ends.
func PartitionOffsets(ctx context.Context, brokers []string, topic string, partition int) (Span, error) {
	c, done := NewAdminClient(brokers, offsetsTimeout)
	defer done()
	spans, err := listOffsets(ctx, c, map[string][]int{topic: {partition}})
	if err != nil {
		return Span{}, err
	}
	s, ok := spans[topic][partition]
	if !ok {
		return Span{}, fmt.Errorf("list offsets of %s/%d: partition not in the answer", topic, partition)
	}
	return s, nil
}

// partitionsOf lists the partitions of each topic in md; a topic's error
// (unknown topic, no leader) fails it.
func partitionsOf(md *kafka.MetadataResponse) (map[string][]int, error) {
	parts := make(map[string][]int, len(md.Topics))
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			parts[t.Name] = append(parts[t.Name], p.ID)
		}
	}
	return parts, nil
}

// listOffsets asks for the first and end offsets of the given partitions
// of each topic in one request; any partition's error fails the call.
func listOffsets(ctx context.Context, c *kafka.Client, parts map[string][]int) (map[string]map[int]Span, error) {
	req := &kafka.ListOffsetsRequest{Topics: make(map[string][]kafka.OffsetRequest, len(parts))}
	for t, ids := range parts {
		for _, id := range ids {
			req.Topics[t] = append(req.Topics[t], kafka.FirstOffsetOf(id), kafka.LastOffsetOf(id))
		}
	}
	res, err := c.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	out := make(map[string]map[int]Span, len(parts))
	for t := range parts {
		out[t] = map[int]Span{}
	}
	for t, ps := range res.Topics {
		if out[t] == nil {
			out[t] = map[int]Span{}
		}
		for _, p := range ps {
			if p.Error != nil {
				return nil, fmt.Errorf("list offsets of %s/%d: %w", t, p.Partition, p.Error)
			}
			out[t][p.Partition] = Span{First: p.FirstOffset, End: p.LastOffset}
		}
	}
	return out, nil
}
