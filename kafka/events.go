package kafka

import (
	"encoding/json"

	"github.com/imcloud/imcloud"
)

// EventProducer publishes connection events (imcloud.Event) as JSON to
// the events topic ("<push topic>.events"): cloud's Config.Events and
// job's Config.Events (the node_gone events) both take it. A connection's
// events are keyed by its key, so they share a partition and keep the
// order the node emitted them in; node_gone is keyed by the node id.
// Delivery is at least once (a retry after a lost acknowledgement writes
// an event again): a consumer keeps, per (Node, Key), the events of the
// highest Gen and drops repeats.
//
// Event never waits for the broker: events beyond ProducerConfig.Buffer
// are dropped and counted (Stats). Safe for concurrent use.
type EventProducer struct{ p *asyncProducer }

// NewEventProducer connects to cfg.Brokers. It fails if no broker answers
// or the topic (default "imcloud-push.events") does not exist
// (ErrNoTopic).
func NewEventProducer(cfg ProducerConfig) (*EventProducer, error) {
	p, err := newAsyncProducer(cfg, EventsTopic(defaultTopic))
	if err != nil {
		return nil, err
	}
	return &EventProducer{p: p}, nil
}

// Event publishes ev without waiting.
func (e *EventProducer) Event(ev imcloud.Event) {
	value, err := json.Marshal(ev)
	if err != nil {
		e.p.dropped.Add(1)
		return
	}
	key := ev.Key
	if ev.Type == imcloud.EventNodeGone || key == "" {
		key = ev.Node
	}
	e.p.send([]byte(key), value, nil)
}

// Topic returns the topic the producer writes.
func (e *EventProducer) Topic() string { return e.p.topic }

// Stats returns the producer's counters.
func (e *EventProducer) Stats() ProducerStats { return e.p.stats() }

// Close sends what was published, waits for its acknowledgements (or its
// failure after the retries) and closes the connections. Later events are
// dropped. Idempotent.
func (e *EventProducer) Close() error { return e.p.close() }
