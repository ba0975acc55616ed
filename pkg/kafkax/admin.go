package kafkax

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// NewAdminClient is a kafka.Client over a Transport of its own, and the
// func that closes the Transport's connections (call it when done). A
// kafka.Client without a Transport uses kafka-go's DefaultTransport, which
// the whole process shares and which keeps its connections and cluster
// metadata between calls (answering metadata requests from that cache):
// after a broker of the fault suite's cluster was killed and came back,
// every admin call of the test process then failed at once with
// "unexpected EOF", five scenarios in a row. Each client of its own starts
// from the brokers: a connection and a metadata request per client, which
// admin calls (setup, readiness, offsets) can afford.
func NewAdminClient(brokers []string, timeout time.Duration) (*kafka.Client, func()) {
	t := &kafka.Transport{Dial: (&net.Dialer{Timeout: 3 * time.Second}).DialContext}
	return &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: timeout, Transport: t}, t.CloseIdleConnections
}

// Ping sends one metadata request and returns the number of brokers that
// answered in it. It is the readiness probe for Kafka.
func Ping(ctx context.Context, brokers []string) (int, error) {
	c, done := NewAdminClient(brokers, 3*time.Second)
	defer done()
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return 0, fmt.Errorf("kafka metadata request to %v: %w", brokers, err)
	}
	return len(md.Brokers), nil
}

// WaitReady waits until at least minBrokers of the listed addresses answer
// a metadata request each (all of them when fewer are listed) and the
// cluster reports at least minBrokers brokers, or ctx ends. Asking each
// address matters after a restart: a cluster's metadata still lists a
// broker whose listener is not up yet until its old session expires.
func WaitReady(ctx context.Context, brokers []string, minBrokers int) error {
	var last error
	for {
		up, registered := 0, 0
		for _, addr := range brokers {
			n, err := Ping(ctx, []string{addr})
			if err != nil {
				last = err
				continue
			}
			up, registered = up+1, max(registered, n)
		}
		if up >= min(minBrokers, len(brokers)) && registered >= minBrokers {
			return nil
		}
		if up > 0 {
			last = fmt.Errorf("%d of %v answer, the cluster reports %d brokers; want %d", up, brokers, registered, minBrokers)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka not ready: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// EnsureTopics creates every topic of specs under names that does not exist
// yet, with the given replication factor, and sets max.message.bytes to
// MaxMessageBytes on every topic, existing ones included (a stack set up by
// an older version kept the broker's 1 MiB, which refuses legal records);
// other settings of existing topics are left as they are. It is idempotent
// and safe to run from several processes at once.
//
// It goes through kafka-go's shared DefaultTransport first: a creation
// refreshes the metadata that transport caches for this process's writers
// and readers, which would otherwise not know the new topics for up to its
// MetadataTTL. When that fails short of an answer from Kafka (the shared
// transport can hold a connection to a broker that went away: see
// NewAdminClient), it tries once more with a client of its own.
func EnsureTopics(ctx context.Context, brokers []string, names Names, specs []TopicSpec, replication int) error {
	return withAdminRetry(brokers, 15*time.Second, func(c *kafka.Client) error {
		return ensureTopics(ctx, c, names, specs, replication)
	})
}

// withAdminRetry runs call with a kafka.Client over the DefaultTransport,
// and again with one of its own (NewAdminClient) when that failed without
// an error from Kafka itself.
func withAdminRetry(brokers []string, timeout time.Duration, call func(*kafka.Client) error) error {
	err := call(&kafka.Client{Addr: kafka.TCP(brokers...), Timeout: timeout})
	var kerr kafka.Error
	if err == nil || errors.As(err, &kerr) {
		return err
	}
	c, done := NewAdminClient(brokers, timeout)
	defer done()
	if err2 := call(c); err2 != nil {
		return fmt.Errorf("%w (and through a fresh connection: %w)", err, err2)
	}
	return nil
}

func ensureTopics(ctx context.Context, c *kafka.Client, names Names, specs []TopicSpec, replication int) error {
	if replication <= 0 {
		replication = 1
	}
	req := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		cfg := []kafka.ConfigEntry{
			{ConfigName: "retention.ms", ConfigValue: retention(s.Retention)},
			{ConfigName: "cleanup.policy", ConfigValue: map[bool]string{true: "compact", false: "delete"}[s.Compact]},
			{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(MaxMessageBytes)},
		}
		if replication > 1 {
			cfg = append(cfg, kafka.ConfigEntry{ConfigName: "min.insync.replicas", ConfigValue: strconv.Itoa(min(2, replication))})
		}
		req.Topics = append(req.Topics, kafka.TopicConfig{
			Topic:             names.Topic(s.Topic),
			NumPartitions:     s.Partitions,
			ReplicationFactor: replication,
			ConfigEntries:     cfg,
		})
	}
	res, err := c.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	var errs []error
	for topic, terr := range res.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", topic, terr))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := setMaxMessageBytes(ctx, c, req.Topics); err != nil {
		return err
	}
	// In KRaft the controller takes the change and the brokers apply it
	// from the metadata log a moment later; a record written before then
	// is still refused at the old limit. Wait until the brokers say it.
	if err := waitMaxMessageBytes(ctx, c, req.Topics); err != nil {
		return err
	}
	// CreateTopics returns before every broker knows the leaders; wait
	// until metadata shows a leader for each partition.
	return waitLeaders(ctx, c, req.Topics)
}

// setMaxMessageBytes sets max.message.bytes on topics that exist already;
// for those just created it repeats the creation's value.
func setMaxMessageBytes(ctx context.Context, c *kafka.Client, topics []kafka.TopicConfig) error {
	req := &kafka.IncrementalAlterConfigsRequest{}
	for _, t := range topics {
		req.Resources = append(req.Resources, kafka.IncrementalAlterConfigsRequestResource{
			ResourceType: kafka.ResourceTypeTopic,
			ResourceName: t.Topic,
			Configs: []kafka.IncrementalAlterConfigsRequestConfig{{
				Name: "max.message.bytes", Value: strconv.Itoa(MaxMessageBytes), ConfigOperation: kafka.ConfigOperationSet,
			}},
		})
	}
	res, err := c.IncrementalAlterConfigs(ctx, req)
	if err != nil {
		return fmt.Errorf("set max.message.bytes: %w", err)
	}
	var errs []error
	for _, r := range res.Resources {
		if r.Error != nil {
			errs = append(errs, fmt.Errorf("set max.message.bytes of topic %s: %w", r.ResourceName, r.Error))
		}
	}
	return errors.Join(errs...)
}

// waitMaxMessageBytes polls until a broker reports MaxMessageBytes for
// every topic, or ctx ends.
func waitMaxMessageBytes(ctx context.Context, c *kafka.Client, topics []kafka.TopicConfig) error {
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Topic
	}
	for {
		got, err := maxMessageBytes(ctx, c, names)
		behind := ""
		if err == nil {
			for _, name := range names {
				if got[name] != MaxMessageBytes {
					behind = fmt.Sprintf("topic %s reports max.message.bytes %d, want %d", name, got[name], MaxMessageBytes)
					break
				}
			}
			if behind == "" {
				return nil
			}
			err = errors.New(behind)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("max.message.bytes not in force yet: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TopicMaxMessageBytes returns the max.message.bytes in force on topic.
func TopicMaxMessageBytes(ctx context.Context, brokers []string, topic string) (int, error) {
	c, done := NewAdminClient(brokers, 10*time.Second)
	defer done()
	got, err := maxMessageBytes(ctx, c, []string{topic})
	if err != nil {
		return 0, err
	}
	return got[topic], nil
}

// maxMessageBytes asks for the max.message.bytes of each topic.
func maxMessageBytes(ctx context.Context, c *kafka.Client, topics []string) (map[string]int, error) {
	req := &kafka.DescribeConfigsRequest{}
	for _, t := range topics {
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: t, ConfigNames: []string{"max.message.bytes"},
		})
	}
	res, err := c.DescribeConfigs(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("describe topics %v: %w", topics, err)
	}
	got := make(map[string]int, len(topics))
	for _, r := range res.Resources {
		if r.Error != nil {
			return nil, fmt.Errorf("describe topic %s: %w", r.ResourceName, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "max.message.bytes" {
				n, err := strconv.Atoi(e.ConfigValue)
				if err != nil {
					return nil, fmt.Errorf("topic %s: max.message.bytes %q: %w", r.ResourceName, e.ConfigValue, err)
				}
				got[r.ResourceName] = n
			}
		}
	}
	for _, t := range topics {
		if _, ok := got[t]; !ok {
			return nil, fmt.Errorf("topic %s: no max.message.bytes in the broker's answer", t)
		}
	}
	return got, nil
}

func waitLeaders(ctx context.Context, c *kafka.Client, topics []kafka.TopicConfig) error {
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Topic
	}
	for {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err == nil && allLed(md) && leadersServe(ctx, c, md) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics %v have no leaders yet: %w", names, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// leadersServe asks every partition's leader for its end offset: metadata can
// name a leader before that broker serves the partition ("not leader").
func leadersServe(ctx context.Context, c *kafka.Client, md *kafka.MetadataResponse) bool {
	parts, err := partitionsOf(md)
	if err != nil {
		return false
	}
	_, err = listOffsets(ctx, c, parts)
	return err == nil
}

func allLed(md *kafka.MetadataResponse) bool {
	for _, t := range md.Topics {
		if t.Error != nil || len(t.Partitions) == 0 {
			return false
		}
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return false
			}
		}
	}
	return true
}

// DeleteTopics removes the topics of specs under names; missing ones are
// ignored. Tests use it in t.Cleanup. Like EnsureTopics it goes through the
// shared transport first, then once through a client of its own.
func DeleteTopics(ctx context.Context, brokers []string, names Names, specs []TopicSpec) error {
	return withAdminRetry(brokers, 15*time.Second, func(c *kafka.Client) error {
		return deleteTopics(ctx, c, names, specs)
	})
}

func deleteTopics(ctx context.Context, c *kafka.Client, names Names, specs []TopicSpec) error {
	req := &kafka.DeleteTopicsRequest{}
	for _, s := range specs {
		req.Topics = append(req.Topics, names.Topic(s.Topic))
	}
	res, err := c.DeleteTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("delete topics: %w", err)
	}
	var errs []error
	for topic, terr := range res.Errors {
		if terr != nil && !errors.Is(terr, kafka.UnknownTopicOrPartition) {
			errs = append(errs, fmt.Errorf("delete topic %s: %w", topic, terr))
		}
	}
	return errors.Join(errs...)
}

func retention(d time.Duration) string {
	if d < 0 {
		return "-1"
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}
