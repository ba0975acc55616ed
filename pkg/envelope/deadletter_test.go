package envelope_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
)

// TestDeadLetterKeepsTheBytes: whatever the failed record was, the dead
// letter written to Kafka and read back gives its bytes exactly, up to
// MaxRecordBytes, and says how long it was.
func TestDeadLetterKeepsTheBytes(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	big := bytes.Repeat([]byte{0xe9}, envelope.MaxRecordBytes) // Latin-1 é: not UTF-8
	cases := []struct {
		name      string
		record    []byte
		encoding  string
		truncated bool
	}{
		{"json kept as json", []byte(`{"type": "review.upserted",  "data": {}}`), envelope.RecordJSON, false},
		{"latin-1 text", []byte("caf\xe9 cr\xe8me"), envelope.RecordBase64, false},
		{"nul and invalid utf-8", []byte("a\x00b\xff\xfe"), envelope.RecordBase64, false},
		{"empty", []byte{}, envelope.RecordBase64, false},
		{"json with a trailing byte", []byte(`{"a":1}}`), envelope.RecordBase64, false},
		{"the largest kept", big, envelope.RecordBase64, false},
		{"one byte past it", append(append([]byte{}, big...), 'x'), envelope.RecordBase64, true},
		{"large json past it", []byte(`"` + strings.Repeat("a", envelope.MaxRecordBytes) + `"`), envelope.RecordBase64, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dl := envelope.NewDeadLetter(envelope.StageReceiver, "not_json", errors.New("body is not valid JSON"), "generic:webhook:msg_1", c.record, now)
			m, err := dl.Message()
			if err != nil {
				t.Fatal(err)
			}
			back, err := envelope.ParseDeadLetter(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			want := c.record
			if c.truncated {
				want = c.record[:envelope.MaxRecordBytes]
			}
			if !bytes.Equal(back.RecordBytes(), want) {
				t.Fatalf("bytes not kept: got %d bytes, want %d", len(back.RecordBytes()), len(want))
			}
			if back.RecordEncoding != c.encoding || back.RecordTruncated != c.truncated || back.RecordSize != len(c.record) {
				t.Fatalf("encoding %q truncated %v size %d; want %q %v %d", back.RecordEncoding, back.RecordTruncated,
					back.RecordSize, c.encoding, c.truncated, len(c.record))
			}
			if back.ID != dl.ID || !strings.HasPrefix(dl.ID, "dlq_") {
				t.Fatalf("id %q after a round trip, %q before", back.ID, dl.ID)
			}
		})
	}
}

// TestDeadLetterID: the same failure gives the same id, another record
// another one; long error text is cut.
func TestDeadLetterID(t *testing.T) {
	now := time.Now()
	a := envelope.NewDeadLetter(envelope.StageReceiver, "not_json", errors.New("x"), "k", []byte("abc"), now)
	b := envelope.NewDeadLetter(envelope.StageReceiver, "not_json", errors.New("x"), "k", []byte("abc"), now.Add(time.Hour))
	c := envelope.NewDeadLetter(envelope.StageReceiver, "not_json", errors.New("x"), "k", []byte("abd"), now)
	if a.ID != b.ID || a.ID == c.ID {
		t.Fatalf("ids %s %s %s", a.ID, b.ID, c.ID)
	}
	long := envelope.NewDeadLetter(envelope.StageSink, "r", errors.New(strings.Repeat("é", 10_000)), "k", nil, now)
	if len(long.Error) > 5<<10 {
		t.Fatalf("error text of %d bytes kept", len(long.Error))
	}
}

// TestDeadLetterOf: a Kafka record's dead letter says where it was read and
// keeps its text headers.
func TestDeadLetterOf(t *testing.T) {
	m := kafka.Message{Topic: "reviews.raw.v1", Partition: 3, Offset: 42, Key: []byte("cinescore:n-1"), Value: []byte("{}"),
		Headers: []kafka.Header{{Key: "event-id", Value: []byte("evt_1")}, {Key: "bin", Value: []byte{0xff}}}}
	dl := envelope.DeadLetterOf(envelope.StageProcessor, "invalid_field", errors.New("bad"), m, "", time.Now())
	if dl.Provider != "cinescore" || dl.Topic != m.Topic || *dl.Partition != 3 || *dl.Offset != 42 || dl.Key != "cinescore:n-1" {
		t.Fatalf("%+v", dl)
	}
	if dl.Headers["event-id"] != "evt_1" || len(dl.Headers) != 1 {
		t.Fatalf("headers %v", dl.Headers)
	}
}
