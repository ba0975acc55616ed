package replay

import (
	"bytes"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/testlog"
)

func TestMessage(t *testing.T) {
	orig := testlog.RawMessage("m", 1, false, "x", "evt_m")
	copyRec := testlog.RawMessage("m", 1, false, "x", "evt_c")
	copyRec.Value = bytes.Replace(copyRec.Value, []byte(`"source":"webhook"`), []byte(`"source":"replay"`), 1)
	for _, c := range []struct {
		name string
		m    kafka.Message
		skip string
	}{
		{"original", orig, ""},
		{"an earlier copy", copyRec, "replay"},
		{"no raw envelope", kafka.Message{Key: []byte("k"), Value: []byte("junk")}, "unreadable"},
	} {
		out, _, skip := Message(&c.m)
		if skip != c.skip {
			t.Errorf("%s: skip %q, want %q", c.name, skip, c.skip)
			continue
		}
		if skip != "" {
			continue
		}
		env, err := envelope.ParseRaw(out.Value)
		if err != nil || env.Source != envelope.SourceReplay || env.EventID != EventID("evt_m") || !bytes.Equal(out.Key, c.m.Key) ||
			envelope.Header(out, kafkax.HeaderReplayOf) != "evt_m" || envelope.Header(out, kafkax.HeaderEventID) != env.EventID ||
			envelope.Header(out, kafkax.HeaderAccepted) != envelope.Header(c.m, kafkax.HeaderAccepted) {
			t.Errorf("%s: copy %+v, headers %v, %v", c.name, env, out.Headers, err)
		}
	}
	if once, again := EventID("evt_m"), EventID("evt_m"); once != again || once == EventID("evt_n") {
		t.Error("EventID must be a function of the original id")
	}
}
