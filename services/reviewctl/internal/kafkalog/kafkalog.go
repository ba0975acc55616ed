// Package kafkalog reads a Kafka topic as a log, straight from the partition
// leaders, with no consumer group and no commits: the offset ranges of a
// moment (Snapshot), every record of ranges in order per partition (Scan), a
// few chosen records again (Fetch), and a group's committed offsets. It is
// reviewctl's Kafka reading side; writes go through pkg/kafkax's writer.
package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// Span is the half-open offset range [From, To) of one partition of a topic.
type Span struct {
	Partition int   `json:"partition"`
	From      int64 `json:"from"`
	To        int64 `json:"to"`
}

// Spans is a snapshot of offset ranges, one per partition, sorted.
type Spans []Span

// Records is how many records the spans cover.
func (ss Spans) Records() int64 {
	var n int64
	for _, s := range ss {
		n += max(0, s.To-s.From)
	}
	return n
}

// Client reads one topic. Each call dials the partitions' leaders afresh,
// so it holds no connection between calls and needs no Close; it is safe
// for concurrent use once its fields are set.
type Client struct {
	// Parallel bounds the partitions Scan reads at once (default: all).
	// Memory in flight is about kafkax.FetchBytes times that number.
	Parallel int

	brokers []string
	topic   string
	dialer  *kafka.Dialer
}

// New returns a Client of topic (its full name) on the bootstrap brokers.
func New(brokers []string, topic string) *Client {
	return &Client{brokers: brokers, topic: topic, dialer: &kafka.Dialer{Timeout: 10 * time.Second, ClientID: "reviewctl"}}
}

// Topic is the full name of the topic the client reads.
func (c *Client) Topic() string { return c.topic }

// dialLeader connects to the leader of partition p, trying each bootstrap
// broker in turn.
func (c *Client) dialLeader(ctx context.Context, p int) (*kafka.Conn, error) {
	var errs []error
	for _, b := range c.brokers {
		conn, err := c.dialer.DialLeader(ctx, "tcp", b, c.topic, p)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("connect to the leader of %s/%d: %w", c.topic, p, errors.Join(errs...))
}

// partitions lists the topic's partition ids.
func (c *Client) partitions(ctx context.Context) ([]int, error) {
	cl, done := kafkax.NewAdminClient(c.brokers, 10*time.Second)
	defer done()
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{c.topic}})
	if err != nil {
		return nil, fmt.Errorf("kafka metadata of %s (KAFKA_BROKERS=%v): %w", c.topic, c.brokers, err)
	}
	for _, t := range md.Topics {
		if t.Name != c.topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("topic %s: %w (run `reviewctl setup`, and check TOPIC_NAMESPACE)", c.topic, t.Error)
		}
		ids := make([]int, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			ids = append(ids, p.ID)
		}
		sort.Ints(ids)
		return ids, nil
	}
	return nil, fmt.Errorf("topic %s does not exist (run `reviewctl setup`, and check TOPIC_NAMESPACE)", c.topic)
}

// Snapshot returns, per partition, [offset of the first record at or after
// from (or the first offset when from is zero), offset of the first record
// at or after to (or the end offset when to is zero)). The end offsets are
// those of the moment of the call: records written later are not in it.
func (c *Client) Snapshot(ctx context.Context, from, to time.Time) (Spans, error) {
	ids, err := c.partitions(ctx)
	if err != nil {
		return nil, err
	}
	out := make(Spans, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	for i, p := range ids {
		g.Go(func() error {
			conn, err := c.dialLeader(gctx, p)
			if err != nil {
				return err
			}
			defer conn.Close()
			if dl, ok := gctx.Deadline(); ok {
				conn.SetDeadline(dl)
			} else {
				conn.SetDeadline(time.Now().Add(30 * time.Second))
			}
			first, last, err := conn.ReadOffsets()
			if err != nil {
				return fmt.Errorf("offsets of %s/%d: %w", c.topic, p, err)
			}
			s := Span{Partition: p, From: first, To: last}
			at := func(t time.Time) (int64, error) {
				off, err := conn.ReadOffset(t)
				if err != nil {
					return 0, fmt.Errorf("offset for time %s of %s/%d: %w", t.Format(time.RFC3339), c.topic, p, err)
				}
				if off < 0 { // no record at or after t
					return last, nil
				}
				return min(max(off, first), last), nil
			}
			if !from.IsZero() {
				if s.From, err = at(from); err != nil {
					return err
				}
			}
			if !to.IsZero() {
				if s.To, err = at(to); err != nil {
					return err
				}
			}
			s.To = max(s.To, s.From)
			out[i] = s
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// Scan reads every record of ss straight from the partition leaders (no
// consumer group, no commits) and calls fn for each, in offset order within
// a partition. fn is called concurrently for different partitions, never
// for one partition at once. It returns fn's first error or a read error.
func (c *Client) Scan(ctx context.Context, ss Spans, fn func(m *kafka.Message) error) error {
	g, gctx := errgroup.WithContext(ctx)
	if c.Parallel > 0 {
		g.SetLimit(c.Parallel)
	}
	for _, s := range ss {
		if s.To <= s.From {
			continue
		}
		g.Go(func() error { return c.scanPartition(gctx, s, fn) })
	}
	return g.Wait()
}

// scanPartition reads the records of one span in order, a fetch of at most
// kafkax.FetchBytes at a time (so the largest legal record is read).
func (c *Client) scanPartition(ctx context.Context, s Span, fn func(m *kafka.Message) error) error {
	conn, err := c.dialLeader(ctx, s.Partition)
	if err != nil {
		return err
	}
	var once sync.Once
	closeConn := func() { once.Do(func() { conn.Close() }) }
	defer closeConn()
	// Closing the connection is how a blocked fetch learns ctx ended.
	stop := context.AfterFunc(ctx, closeConn)
	defer stop()
	if _, err := conn.Seek(s.From, kafka.SeekAbsolute); err != nil {
		return fmt.Errorf("seek %s/%d to %d: %w", c.topic, s.Partition, s.From, err)
	}
	next := s.From
	for next < s.To {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		b := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: kafkax.FetchBytes, MaxWait: time.Second})
		read := 0
		var ferr error
		for {
			m, err := b.ReadMessage()
			if err != nil {
				break
			}
			if m.Offset >= s.To {
				next = s.To
				break
			}
			read++
			next = m.Offset + 1
			if ferr = fn(&m); ferr != nil {
				break
			}
		}
		cerr := b.Close()
		if ferr != nil {
			return ferr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if cerr != nil {
			return fmt.Errorf("read %s/%d at offset %d: %w", c.topic, s.Partition, next, cerr)
		}
		if read == 0 {
			// Gaps (compacted or control records) end a batch without a
			// record; move on to where the batch stopped, and give up when
			// the log holds nothing more below To.
			if bo := b.Offset(); bo > next {
				next = bo
				if _, err := conn.Seek(next, kafka.SeekAbsolute); err != nil {
					return fmt.Errorf("seek %s/%d to %d: %w", c.topic, s.Partition, next, err)
				}
			} else if b.HighWaterMark() <= next {
				return nil
			}
		}
	}
	return nil
}

// Fetch reads the records at the given offsets of one partition (sorted,
// not necessarily contiguous) and calls fn for each record found. Used to
// re-read a few chosen records after a scan kept only their offsets.
func (c *Client) Fetch(ctx context.Context, partition int, offsets []int64, fn func(m *kafka.Message) error) error {
	if len(offsets) == 0 {
		return nil
	}
	offsets = append([]int64(nil), offsets...)
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	i := 0
	for i < len(offsets) {
		// Read contiguous-enough runs in one scan; jump over long gaps.
		j := i + 1
		for j < len(offsets) && offsets[j]-offsets[j-1] < 512 {
			j++
		}
		want := make(map[int64]bool, j-i)
		for _, o := range offsets[i:j] {
			want[o] = true
		}
		s := Span{Partition: partition, From: offsets[i], To: offsets[j-1] + 1}
		err := c.scanPartition(ctx, s, func(m *kafka.Message) error {
			if want[m.Offset] {
				return fn(m)
			}
			return nil
		})
		if err != nil {
			return err
		}
		i = j
	}
	return nil
}

// Committed returns the offsets group has committed on the client's topic
// for the given partitions; a partition with no committed offset (or an
// error for it) is left out of the map.
func (c *Client) Committed(ctx context.Context, group string, partitions []int) (map[int]int64, error) {
	cl, done := kafkax.NewAdminClient(c.brokers, 10*time.Second)
	defer done()
	res, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{c.topic: partitions}})
	if err != nil {
		return nil, err
	}
	committed := map[int]int64{}
	for _, p := range res.Topics[c.topic] {
		if p.Error == nil && p.CommittedOffset >= 0 {
			committed[p.Partition] = p.CommittedOffset
		}
	}
	return committed, nil
}
