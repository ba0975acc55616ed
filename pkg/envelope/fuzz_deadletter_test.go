package envelope_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
)

// FuzzDeadLetterRoundTrip: whatever bytes failed, the dead letter written
// to Kafka decodes again and gives them back exactly.
func FuzzDeadLetterRoundTrip(f *testing.F) {
	for _, seed := range []string{`{"a": 1}`, "caf\xe9", "", " [1, 2] ", "\x00", `"\ud800"`, "{\"a\":\"\xff\"}"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, record []byte) {
		dl := envelope.NewDeadLetter(envelope.StageReceiver, "not_json", errors.New("x"), "k", record, time.Unix(1e9, 0))
		m, err := dl.Message()
		if err != nil {
			t.Fatal(err)
		}
		back, err := envelope.ParseDeadLetter(m.Value)
		if err != nil {
			t.Fatalf("dead letter does not decode: %v\n%q", err, m.Value)
		}
		if !bytes.Equal(back.RecordBytes(), record) {
			t.Fatalf("record %q came back as %q", record, back.RecordBytes())
		}
	})
}
