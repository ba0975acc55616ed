package webhook

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	k1, k2 := []byte("first-key-0123456789"), []byte("second-key-9876543210")
	body := []byte(`{"type":"review.upserted","data":{"review_id":"r1"}}`)
	signed := func(key []byte, ts time.Time, b []byte) http.Header {
		h := http.Header{}
		SetHeaders(h, key, "msg_1", ts, b)
		return h
	}
	tests := []struct {
		name    string
		keys    [][]byte
		h       http.Header
		body    []byte
		wantErr error
	}{
		{"valid", [][]byte{k1}, signed(k1, now, body), body, nil},
		{"tampered body", [][]byte{k1}, signed(k1, now, body), append([]byte(" "), body...), ErrNoMatch},
		{"wrong secret", [][]byte{k1}, signed(k2, now, body), body, ErrNoMatch},
		{"second of two secrets", [][]byte{k1, k2}, signed(k2, now, body), body, nil},
		{"timestamp 6 min old", [][]byte{k1}, signed(k1, now.Add(-6*time.Minute), body), body, ErrTimestampSkew},
		{"timestamp 6 min ahead", [][]byte{k1}, signed(k1, now.Add(6*time.Minute), body), body, ErrTimestampSkew},
		{"timestamp 4 min old", [][]byte{k1}, signed(k1, now.Add(-4*time.Minute), body), body, nil},
		{"v2 signature only", [][]byte{k1}, func() http.Header {
			h := signed(k1, now, body)
			h.Set(HeaderSignature, "v2,"+h.Get(HeaderSignature)[3:])
			return h
		}(), body, ErrNoMatch},
		{"several signatures, one good", [][]byte{k1}, func() http.Header {
			h := signed(k1, now, body)
			h.Set(HeaderSignature, "v1,AAAA v1a,zzz "+h.Get(HeaderSignature))
			return h
		}(), body, nil},
		{"non-numeric timestamp", [][]byte{k1}, func() http.Header {
			h := signed(k1, now, body)
			h.Set(HeaderTimestamp, "yesterday")
			return h
		}(), body, ErrBadTimestamp},
		{"no keys configured", nil, signed(k1, now, body), body, ErrNoSecretsDefined},
	}
	for _, hdr := range []string{HeaderID, HeaderTimestamp, HeaderSignature} {
		h := signed(k1, now, body)
		h.Del(hdr)
		tests = append(tests, struct {
			name    string
			keys    [][]byte
			h       http.Header
			body    []byte
			wantErr error
		}{"missing " + hdr, [][]byte{k1}, h, body, ErrMissingHeaders})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Verifier{Keys: tt.keys, Now: func() time.Time { return now }}
			id, err := v.Verify(tt.h, tt.body)
			if err != tt.wantErr {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && id != "msg_1" {
				t.Fatalf("Verify() id = %q, want msg_1", id)
			}
		})
	}
}

// The spec's own test vector (standardwebhooks libraries' README).
func TestSpecVector(t *testing.T) {
	keys, err := ParseSecrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1614265330, 0)
	got := Sign(keys[0], "msg_p5jXN8AQM9LWM0D4loKWxJek", ts, []byte(`{"test": 2432232314}`))
	want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	if got != want {
		t.Fatalf("Sign() = %s, want %s", got, want)
	}
	h := http.Header{}
	h.Set(HeaderID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, want)
	if _, err := (Verifier{Keys: keys, Now: func() time.Time { return ts }}).Verify(h, []byte(`{"test": 2432232314}`)); err != nil {
		t.Fatalf("Verify(spec vector) = %v", err)
	}
}

func TestParseSecrets(t *testing.T) {
	if _, err := ParseSecrets("whsec_AAAA nope"); err == nil {
		t.Fatal("want error for a secret without whsec_ prefix")
	}
	if _, err := ParseSecrets("whsec_***"); err == nil {
		t.Fatal("want error for a non-base64 secret")
	}
	keys, err := ParseSecrets(" whsec_AAAA  whsec_AQID ")
	if err != nil || len(keys) != 2 || len(keys[1]) != 3 {
		t.Fatalf("ParseSecrets = %v, %v", keys, err)
	}
}
