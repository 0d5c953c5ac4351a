package kafka_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/job"
	"github.com/imcloud/imcloud/kafka"
)

// The event producer is both roles' event sink.
var (
	_ cloud.EventSink = (*kafka.EventProducer)(nil)
	_ job.EventSink   = (*kafka.EventProducer)(nil)
)

func newEventProducer(t *testing.T, cfg kafka.ProducerConfig) *kafka.EventProducer {
	t.Helper()
	p, err := kafka.NewEventProducer(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestProducersNeedTheirTopic: a topic that does not exist is an error at
// New (even on a broker that would create it on first use), and New does
// not create it.
func TestProducersNeedTheirTopic(t *testing.T) {
	k := testenv.StartKafka(t, "imcloud-push")
	_, err := kafka.NewEventProducer(kafka.ProducerConfig{Brokers: k.Brokers})
	require.ErrorIs(t, err, kafka.ErrNoTopic)
	require.ErrorContains(t, err, "imcloud-push.events")
	_, err = kafka.NewUpstreamProducer(kafka.ProducerConfig{Brokers: k.Brokers, Topic: "other.upstream"})
	require.ErrorIs(t, err, kafka.ErrNoTopic)
	require.ErrorContains(t, err, "other.upstream")
	_, err = kafka.NewEventProducer(kafka.ProducerConfig{})
	require.Error(t, err, "no brokers")

	_, err = kafka.NewEventProducer(kafka.ProducerConfig{Brokers: k.Brokers})
	require.ErrorIs(t, err, kafka.ErrNoTopic, "still missing: New did not create it")
}

// TestEventProducer: events go to "<topic>.events" as JSON, a
// connection's keyed by its key and in order, node_gone keyed by the node;
// Close flushes them all.
func TestEventProducer(t *testing.T) {
	k := testenv.StartKafka(t, kafka.EventsTopic("imcloud-push"))
	p := newEventProducer(t, kafka.ProducerConfig{Brokers: k.Brokers})
	require.Equal(t, "imcloud-push.events", p.Topic())
	const keys, each = 20, 30
	var sent []imcloud.Event
	at := time.Unix(1700000000, 0).UTC()
	for i := range each {
		for c := range keys {
			ev := imcloud.Event{Type: imcloud.EventRoomJoin, Node: "n1", Epoch: "e1", Key: fmt.Sprintf("k%d", c),
				Mid: int64(c + 1), Gen: uint64(c + 1), Room: fmt.Sprintf("live://%d", i), Time: at}
			p.Event(ev)
			sent = append(sent, ev)
		}
	}
	gone := imcloud.Event{Type: imcloud.EventNodeGone, Node: "n2", Epoch: "e2", Time: at}
	p.Event(gone)
	require.NoError(t, p.Close())
	require.Equal(t, kafka.ProducerStats{Sent: keys*each + 1}, p.Stats())
	p.Event(gone) // after Close: dropped
	require.EqualValues(t, 1, p.Stats().Dropped)

	byKey := map[string][]imcloud.Event{}
	for _, cm := range consumeTopic(t, k, "imcloud-push.events") {
		var ev imcloud.Event
		require.NoError(t, json.Unmarshal(cm.Value, &ev))
		if ev.Type == imcloud.EventNodeGone {
			assert.Equal(t, "n2", string(cm.Key))
			assert.Equal(t, gone, ev)
			continue
		}
		assert.Equal(t, ev.Key, string(cm.Key))
		byKey[ev.Key] = append(byKey[ev.Key], ev)
	}
	for _, ev := range sent {
		byKey[ev.Key+"/want"] = append(byKey[ev.Key+"/want"], ev)
	}
	for c := range keys {
		key := fmt.Sprintf("k%d", c)
		assert.Equal(t, byKey[key+"/want"], byKey[key], "%s: every event, in order", key)
	}
}

// TestEventProducerNeverWaits: with the broker gone, Event returns at
// once; what the buffer cannot hold is dropped, what sarama gives up on
// fails, both counted; every event is sent, dropped or failed, and the
// producer recovers when the broker is back.
func TestEventProducerNeverWaits(t *testing.T) {
	k := testenv.StartKafka(t, "ev")
	p := newEventProducer(t, kafka.ProducerConfig{Brokers: k.Brokers, Topic: "ev", Buffer: 8})
	k.Stop()
	const n = 5000
	for i := range n {
		p.Event(imcloud.Event{Type: imcloud.EventConnect, Node: "n", Key: fmt.Sprint(i % 7), Gen: uint64(i)})
	}
	require.NotZero(t, p.Stats().Dropped)
	k.Start()
	var st kafka.ProducerStats
	require.Eventually(t, func() bool {
		p.Event(imcloud.Event{Type: imcloud.EventConnect, Node: "n", Key: "after"})
		st = p.Stats()
		return st.Sent > 0
	}, 30*time.Second, 100*time.Millisecond, "sends again once the broker is back")
	require.NoError(t, p.Close())
	st = p.Stats()
	require.GreaterOrEqual(t, st.Sent+st.Dropped+st.Errors, uint64(n+1), "%+v", st)
	require.GreaterOrEqual(t, len(consumeTopic(t, k, "ev")), int(st.Sent))
}

// headers returns a record's headers by key.
func headers(cm *sarama.ConsumerMessage) map[string]string {
	out := map[string]string{}
	for _, h := range cm.Headers {
		out[string(h.Key)] = string(h.Value)
	}
	return out
}
