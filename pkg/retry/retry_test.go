package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	for attempt := 0; attempt < 40; attempt++ {
		cap := min(time.Second, 10*time.Millisecond<<min(attempt, 30))
		for i := 0; i < 200; i++ {
			d := Backoff(attempt, 10*time.Millisecond, time.Second)
			if d < 0 || d > cap {
				t.Fatalf("Backoff(%d) = %v, want within [0, %v]", attempt, d, cap)
			}
		}
	}
}

func TestBackoffJitters(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		seen[Backoff(5, time.Millisecond, time.Second)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct delays in 50 draws: no jitter", len(seen))
	}
}

func TestDo(t *testing.T) {
	perm := errors.New("permanent")
	calls := 0
	err := Do(context.Background(), 0, time.Microsecond, time.Microsecond, func(e error) bool { return e == perm },
		func(context.Context) error {
			calls++
			if calls < 3 {
				return errors.New("transient")
			}
			return perm
		})
	if err != perm || calls != 3 {
		t.Fatalf("Do = %v after %d calls, want permanent after 3", err, calls)
	}
	calls = 0
	err = Do(context.Background(), 4, time.Microsecond, time.Microsecond, nil, func(context.Context) error { calls++; return errors.New("x") })
	if err == nil || calls != 4 {
		t.Fatalf("Do with 4 attempts made %d calls, err %v", calls, err)
	}
}
