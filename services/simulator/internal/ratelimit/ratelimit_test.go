package ratelimit

import (
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestBucket(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	b := New(5, c.now)
	for i := range 5 {
		d := b.Take()
		if !d.OK || d.Remaining != 4-i || d.Limit != 5 {
			t.Fatalf("request %d of the burst: %+v", i, d)
		}
	}
	d := b.Take()
	if d.OK || d.RetryAfter != 200*time.Millisecond || d.Remaining != 0 || d.Reset != time.Second {
		t.Fatalf("over the limit: %+v", d)
	}
	c.t = c.t.Add(100 * time.Millisecond)
	if d := b.Take(); d.OK || d.RetryAfter != 100*time.Millisecond {
		t.Fatalf("half a token later: %+v (a refusal spends nothing)", d)
	}
	c.t = c.t.Add(100 * time.Millisecond)
	if d := b.Take(); !d.OK {
		t.Fatalf("a token later: %+v", d)
	}
	c.t = c.t.Add(time.Hour)
	if d := b.Take(); !d.OK || d.Remaining != 4 {
		t.Fatalf("the bucket holds at most its burst: %+v", d)
	}
}

func TestSetRateAndSlowRates(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	b := New(20, c.now)
	b.SetRate(0.5) // a fault: one request every two seconds, burst 1
	if d := b.Take(); !d.OK {
		t.Fatalf("first: %+v", d)
	}
	d := b.Take()
	if d.OK || d.RetryAfter != 2*time.Second || d.Limit != 0.5 {
		t.Fatalf("second: %+v", d)
	}
	b.SetRate(20)
	if b.Rate() != 20 {
		t.Fatal("rate not reset")
	}
	n := 0
	for b.Take().OK {
		n++
	}
	if n != 20 {
		t.Fatalf("burst after reset %d, want 20", n)
	}
}
