package kafkax_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// readAll reads every record of topic's partitions up to their end offsets.
func readAll(t *testing.T, brokers []string, topic string, partitions int) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	for p := 0; p < partitions; p++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		conn, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, p)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		end, err := conn.ReadLastOffset()
		if err != nil {
			t.Fatal(err)
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxBytes: kafkax.FetchBytes, MaxWait: 100 * time.Millisecond})
		for off := int64(0); off < end; off++ {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				t.Fatalf("partition %d offset %d: %v", p, off, err)
			}
			out = append(out, m)
		}
		r.Close()
		conn.Close()
		cancel()
	}
	return out
}

// TestTopicsTakeTheLargestLegalRecord: reviewctl setup's EnsureTopics sets
// max.message.bytes, on new topics and on topics an older version created
// with the broker's default; a record of MaxMessageBytes less the framing
// room is taken, written and read back whole.
func TestTopicsTakeTheLargestLegalRecord(t *testing.T) {
	st := testenv.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := st.Topic(kafkax.TopicDLQ)
	got, err := kafkax.TopicMaxMessageBytes(ctx, st.Brokers, topic)
	if err != nil || got != kafkax.MaxMessageBytes {
		t.Fatalf("max.message.bytes of %s = %d, %v; want %d", topic, got, err, kafkax.MaxMessageBytes)
	}

	// A topic left by an older setup, with the broker's default.
	old := kafkax.Names{Namespace: st.Names.Namespace + "old."}
	c := &kafka.Client{Addr: kafka.TCP(st.Brokers...)}
	if _, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: old.Topic(kafkax.TopicRaw), NumPartitions: 1, ReplicationFactor: 1}}}); err != nil {
		t.Fatal(err)
	}
	specs := []kafkax.TopicSpec{{Topic: kafkax.TopicRaw, Partitions: 1, Retention: -1}}
	t.Cleanup(func() { _ = kafkax.DeleteTopics(context.Background(), st.Brokers, old, specs) })
	if err := kafkax.EnsureTopics(ctx, st.Brokers, old, specs, 1); err != nil {
		t.Fatal(err)
	}
	if got, err := kafkax.TopicMaxMessageBytes(ctx, st.Brokers, old.Topic(kafkax.TopicRaw)); err != nil || got != kafkax.MaxMessageBytes {
		t.Fatalf("existing topic: max.message.bytes = %d, %v; want %d", got, err, kafkax.MaxMessageBytes)
	}

	// The largest record a writer takes, and one byte past it.
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: old.Topic(kafkax.TopicRaw)})
	defer w.Close()
	edge := kafka.Message{Key: []byte("k"), Value: bytes.Repeat([]byte("e"), kafkax.BatchBytes-200)}
	past := kafka.Message{Key: []byte("k"), Value: bytes.Repeat([]byte("p"), kafkax.BatchBytes)}
	small := kafka.Message{Key: []byte("k"), Value: []byte("after")}
	tooLarge, err := kafkax.WriteAll(ctx, w, []kafka.Message{edge, past, small})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tooLarge, []int{1}) {
		t.Fatalf("too large: %v, want [1]", tooLarge)
	}
	recs := readAll(t, st.Brokers, old.Topic(kafkax.TopicRaw), 1)
	if len(recs) != 2 || !bytes.Equal(recs[0].Value, edge.Value) || string(recs[1].Value) != "after" {
		t.Fatalf("read back %d records, want the edge record whole then the small one", len(recs))
	}
}

// TestWriteAllSplitsWhatTheBrokerRefuses: against a topic whose
// max.message.bytes is below the writer's BatchBytes (a broker or topic
// configured by hand), batches of records that each fit are refused whole
// ([10] Message Size Too Large). WriteAll splits them until every record
// that fits alone is written, in order per key, and names only the one
// record that the broker refuses by itself.
func TestWriteAllSplitsWhatTheBrokerRefuses(t *testing.T) {
	st := testenv.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := st.Names.Namespace + "small"
	c := &kafka.Client{Addr: kafka.TCP(st.Brokers...)}
	if _, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: 2, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(64 << 10)}},
	}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: topic})
	defer w.Close()

	// 20 records of 20 KB over 4 keys (both partitions get batches far
	// over 64 KiB), and one of 100 KB that no batch can hold.
	var msgs []kafka.Message
	offender := 13
	for i := 0; i < 21; i++ {
		size := 20 << 10
		if i == offender {
			size = 100 << 10
		}
		v := append([]byte(fmt.Sprintf("%02d:", i)), bytes.Repeat([]byte("x"), size)...)
		msgs = append(msgs, kafka.Message{Key: []byte("key-" + strconv.Itoa(i%4)), Value: v})
	}
	tooLarge, err := kafkax.WriteAll(ctx, w, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tooLarge, []int{offender}) {
		t.Fatalf("too large: %v, want [%d]", tooLarge, offender)
	}
	got := readAll(t, st.Brokers, topic, 2)
	if len(got) != 20 {
		t.Fatalf("read %d records, want 20", len(got))
	}
	last := map[string]int{}
	for _, m := range got {
		i, _ := strconv.Atoi(string(m.Value[:2]))
		if i == offender {
			t.Fatalf("the offender was written")
		}
		if prev, ok := last[string(m.Key)]; ok && prev > i {
			t.Fatalf("key %s: record %d after %d", m.Key, i, prev)
		}
		last[string(m.Key)] = i
	}
}
