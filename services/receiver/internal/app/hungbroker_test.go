package app

import (
	"net"
	"strconv"
	"testing"

	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/apiversions"
	"github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/protocol/produce"

	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// hungBroker is a stand-in for a Kafka broker that hangs once a write
// reaches it: it answers the version and metadata requests (itself the
// leader of every partition of topics), then reads produce requests and
// never answers them. kafka-go therefore queues the records and waits, as
// it does for a real broker that stopped answering, until its WriteTimeout.
func hungBroker(t *testing.T, topics ...string) string {
	t.Helper()
	ln := testenv.Loopback(t)
	host, portText, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portText)
	serve := func(c net.Conn) {
		defer c.Close()
		for {
			version, correlationID, _, msg, err := protocol.ReadRequest(c)
			if err != nil {
				return
			}
			var res protocol.Message
			switch msg.(type) {
			case *apiversions.Request:
				res = &apiversions.Response{ApiKeys: []apiversions.ApiKeyResponse{
					{ApiKey: int16(protocol.ApiVersions), MinVersion: 0, MaxVersion: 2},
					{ApiKey: int16(protocol.Metadata), MinVersion: 1, MaxVersion: 8},
					{ApiKey: int16(protocol.Produce), MinVersion: 3, MaxVersion: 8},
				}}
			case *metadata.Request:
				r := &metadata.Response{Brokers: []metadata.ResponseBroker{{NodeID: 0, Host: host, Port: int32(port)}}}
				for _, topic := range topics {
					rt := metadata.ResponseTopic{Name: topic}
					for p := range 3 {
						rt.Partitions = append(rt.Partitions, metadata.ResponsePartition{PartitionIndex: int32(p), ReplicaNodes: []int32{0}, IsrNodes: []int32{0}})
					}
					r.Topics = append(r.Topics, rt)
				}
				res = r
			case *produce.Request:
				continue // hangs
			default:
				return
			}
			if err := protocol.WriteResponse(c, version, correlationID, res); err != nil {
				return
			}
		}
	}
	return testenv.Serve(t, ln, serve)
}
