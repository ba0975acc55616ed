package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/changefeed"
	"github.com/reviewpipe/reviewpipe/pkg/retry"
)

// NotifyChannel is the channel on which the sink announces committed
// changes (pkg/changefeed): notifications sent inside each batch's
// transaction, so PostgreSQL delivers them only once the change is
// readable.
const NotifyChannel = changefeed.Channel

// Listener receives the sink's notifications over a dedicated connection.
type Listener struct {
	URL string
	Log *zap.Logger
	// OnConnect is called after each (re)connection: notifications sent
	// while the connection was down are lost, so subscribers should
	// reload.
	OnConnect func(first bool)
	// OnNotify is called with each payload, in the order of commits.
	OnNotify func(payload string)
	// OnDisconnect is called when the connection is lost.
	OnDisconnect func(err error)
}

// Run listens until ctx ends, reconnecting with backoff. It returns nil
// when ctx ends.
func (l *Listener) Run(ctx context.Context) error {
	first := true
	for attempt := 0; ; attempt++ {
		err := l.listen(ctx, first, &attempt)
		if ctx.Err() != nil {
			return nil
		}
		first = false
		if l.OnDisconnect != nil {
			l.OnDisconnect(err)
		}
		l.Log.Warn("change listener lost its connection; reconnecting", zap.Error(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry.Backoff(attempt, 100*time.Millisecond, 5*time.Second)):
		}
	}
}

func (l *Listener) listen(ctx context.Context, first bool, attempt *int) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(cctx, l.URL)
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	*attempt = 0
	if l.OnConnect != nil {
		l.OnConnect(first)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		l.OnNotify(n.Payload)
	}
}
