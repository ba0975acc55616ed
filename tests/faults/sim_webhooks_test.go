package faults

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// Scenario 6: the simulator as the providers, every change sent only as a
// webhook (no poller to make up for a lost one), in all three providers'
// formats, retried by the simulator on any non-2xx; the receiver killed
// (-9) and restarted meanwhile, so the simulator's retries are exercised,
// then one broker killed (-9) and restarted. Every change the simulator
// recorded must reach the store once its webhook queue is empty.
func TestFaultSimulatorWebhooksBrokerKill(t *testing.T) {
	e := setup(t)
	rng := rand.New(rand.NewPCG(e.seed, 17))
	stack := startSimStack(t, e)
	sim, receiver := stack.sim, stack.receiver
	down := 0
	t.Cleanup(func() { // never leave the cluster short of a broker
		if down != 0 {
			e.kafkaNode(t, "start-node", down)
		}
	})

	l := simLoad{rate: pick(e, 15.0, 30.0), duration: pick(e, 20*time.Second, 40*time.Second), perProvider: pick(e, 40, 80), webhookShare: 1}
	m := newModel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Logf("changes: %.0f/s for %s over %d reviews per provider, every one only as a webhook", l.rate, l.duration, l.perProvider)
	start := time.Now()
	made := simChanges(ctx, t, e, sim, m, l)

	receiverDown := between(rng, time.Second, 3*time.Second)
	sleepUntil(start.Add(between(rng, l.duration/10, l.duration/5)))
	t.Logf("+%s kill -9 receiver; restart after %s", time.Since(start).Round(time.Millisecond), receiverDown)
	receiver.kill9()
	time.Sleep(receiverDown)
	receiver.start(t, 60*time.Second)
	victim := 1 + rng.IntN(3)
	outage := between(rng, 6*time.Second, 10*time.Second)
	sleepUntil(start.Add(between(rng, l.duration/3, l.duration/2)))
	t.Logf("+%s kill -9 broker %d; start after %s", time.Since(start).Round(time.Millisecond), victim, outage)
	e.kafkaNode(t, "kill-node", victim)
	down = victim
	time.Sleep(outage)
	e.kafkaNode(t, "start-node", victim)
	e.waitBrokers(t, 2*time.Minute)
	down = 0
	t.Logf("+%s broker %d back in the cluster", time.Since(start).Round(time.Millisecond), victim)
	res := <-made
	t.Logf("load done after %s: %s", time.Since(start).Round(time.Millisecond), res)
	if res.webhooks == 0 {
		t.Fatal("the simulator recorded no change: the scenario proved nothing")
	}

	// The simulator retries until the receiver answers 2xx: wait until
	// nothing is queued, then until the store equals the model.
	queued := time.Now()
	for {
		st, err := sim.stats()
		var waiting int64
		for _, p := range providers {
			waiting += st[p].WebhooksSentAcked.Queued
		}
		if err == nil && waiting == 0 {
			break
		}
		if time.Since(queued) > 3*time.Minute {
			t.Fatalf("the simulator still has %d webhooks queued 3m after the load (%v)", waiting, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("the simulator's webhook queue emptied %s after the load", time.Since(queued).Round(time.Millisecond))
	t.Logf("store equals the model %s later", e.converge(t, m, 3*time.Minute).Round(time.Millisecond))
	e.settle(t, time.Minute)
	e.check(t, m)
	st, err := sim.stats()
	if err != nil {
		t.Fatalf("simulator stats: %v", err)
	}
	var sent, attempts, givenUp int64
	for _, p := range providers {
		w := st[p].WebhooksSentAcked
		sent, attempts, givenUp = sent+w.Sent, attempts+w.Attempts, givenUp+w.Failed
		t.Logf("%s: webhooks sent %d in %d attempts, acknowledged %d, given up %d, queued %d",
			p, w.Sent, w.Attempts, w.Acked, w.Failed, w.Queued)
	}
	if attempts <= sent {
		t.Errorf("%d attempts for %d webhooks: the simulator's retries were not exercised", attempts, sent)
	}
	if givenUp != 0 {
		t.Errorf("the simulator gave up %d webhooks", givenUp)
	}
}
