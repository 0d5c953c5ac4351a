package kafka

import (
	"context"
	"strconv"

	"github.com/IBM/sarama"

	"github.com/imcloud/imcloud/cloud"
)

// UpstreamProducer publishes what clients send upstream (op 4 and the
// other client ops a node does not serve itself) to the upstream topic
// ("<push topic>.upstream"), one record per message: the value is the
// client's bytes as sent, the key the connection key (a connection's
// messages keep their order in one partition), and the headers say who
// sent it, as the node verified it: "mid", "key", "room" (the primary
// room), "node", "op" and "seq" (decimal). Delivery is at least once.
//
// Upstream is cloud's Config.UpstreamHook; it never waits for the broker
// (it runs on the connection's reader): messages beyond
// ProducerConfig.Buffer are dropped and counted (Stats). The node's
// inbound rate limit (cloud.Config.InboundRate) applies before. Safe for
// concurrent use.
type UpstreamProducer struct{ p *asyncProducer }

// NewUpstreamProducer connects to cfg.Brokers. It fails if no broker
// answers or the topic (default "imcloud-push.upstream") does not exist
// (ErrNoTopic).
func NewUpstreamProducer(cfg ProducerConfig) (*UpstreamProducer, error) {
	p, err := newAsyncProducer(cfg, UpstreamTopic(defaultTopic))
	if err != nil {
		return nil, err
	}
	return &UpstreamProducer{p: p}, nil
}

// Upstream publishes m without waiting; m.Body is copied. Its signature
// is cloud.Config.UpstreamHook's.
func (u *UpstreamProducer) Upstream(_ context.Context, m cloud.Upstream) {
	headers := []sarama.RecordHeader{
		{Key: []byte("mid"), Value: strconv.AppendInt(nil, m.Mid, 10)},
		{Key: []byte("key"), Value: []byte(m.Key)},
		{Key: []byte("room"), Value: []byte(m.Room)},
		{Key: []byte("node"), Value: []byte(m.Node)},
		{Key: []byte("op"), Value: strconv.AppendInt(nil, int64(m.Op), 10)},
		{Key: []byte("seq"), Value: strconv.AppendInt(nil, int64(m.Seq), 10)},
	}
	u.p.send([]byte(m.Key), append([]byte(nil), m.Body...), headers)
}

// Topic returns the topic the producer writes.
func (u *UpstreamProducer) Topic() string { return u.p.topic }

// Stats returns the producer's counters.
func (u *UpstreamProducer) Stats() ProducerStats { return u.p.stats() }

// Close sends what was published, waits for its acknowledgements (or its
// failure after the retries) and closes the connections. Later messages
// are dropped. Idempotent.
func (u *UpstreamProducer) Close() error { return u.p.close() }
