package kafkax

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
)

// A partition's progress is committed at most once per interval, the
// latest offset wins, and the last flush commits what is pending even
// inside the interval; a failed commit stays pending and is tried again.
func TestCommitterThrottles(t *testing.T) {
	var commits []int64
	fail := false
	c := committer{partition: 3, log: zap.NewNop(), interval: time.Hour,
		commit: func(p int, next int64) error {
			if p != 3 {
				t.Errorf("commit of partition %d, want 3", p)
			}
			if fail {
				return errors.New("coordinator gone")
			}
			commits = append(commits, next)
			return nil
		}}
	c.done(10) // the first batch: no commit yet, so it is due
	c.done(20)
	c.done(30)
	if len(commits) != 1 || commits[0] != 10 {
		t.Fatalf("commits %v after three batches within the interval, want [10]", commits)
	}
	c.last = time.Now().Add(-2 * time.Hour) // the interval has passed
	c.done(40)
	if len(commits) != 2 || commits[1] != 40 {
		t.Fatalf("commits %v once the interval passed, want [10 40]", commits)
	}
	c.done(50)
	c.flush(true)
	if len(commits) != 3 || commits[2] != 50 {
		t.Fatalf("commits %v after the last flush, want [10 40 50]", commits)
	}
	c.flush(true)
	if len(commits) != 3 {
		t.Fatalf("a flush with nothing pending committed: %v", commits)
	}
	fail = true
	c.done(60)
	c.last = time.Now().Add(-2 * time.Hour)
	c.flush(false) // fails: kept pending
	fail = false
	c.flush(false)
	if len(commits) != 4 || commits[3] != 60 {
		t.Fatalf("commits %v: a failed commit was not tried again, want [10 40 50 60]", commits)
	}
}
