package eventtest

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcloud/imcloud"
)

// Record is one record of a Kafka topic, as ReadTopic read it.
type Record struct {
	Partition int32
	Offset    int64
	Key       string
	Value     []byte
	Headers   map[string]string
}

// Event decodes an events topic record.
func (r Record) Event(t testing.TB) imcloud.Event {
	t.Helper()
	var ev imcloud.Event
	if err := json.Unmarshal(r.Value, &ev); err != nil {
		t.Fatalf("eventtest: record %d/%d is not an event: %v: %q", r.Partition, r.Offset, err, r.Value)
	}
	return ev
}

// ReadTopic reads topic from its first record, every partition at once,
// until done (called with everything read so far, in the order read:
// each partition's records in offset order) returns true or timeout
// passes; it returns what it read. The caller checks it.
func ReadTopic(t testing.TB, brokers []string, topic string, timeout time.Duration, done func([]Record) bool) []Record {
	t.Helper()
	c, err := sarama.NewConsumer(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatalf("eventtest: consumer: %v", err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatalf("eventtest: partitions of %s: %v", topic, err)
	}
	recs := make(chan Record, 1024)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("eventtest: consume %s/%d: %v", topic, p, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.AsyncClose()
			for {
				select {
				case m := <-pc.Messages():
					r := Record{Partition: m.Partition, Offset: m.Offset, Key: string(m.Key), Value: m.Value, Headers: map[string]string{}}
					for _, h := range m.Headers {
						r.Headers[string(h.Key)] = string(h.Value)
					}
					select {
					case recs <- r:
					case <-stop:
						return
					}
				case <-stop:
					return
				}
			}
		}()
	}
	defer wg.Wait()
	defer close(stop)
	var got []Record
	deadline := time.After(timeout)
	for {
		if done(got) {
			return got
		}
		select {
		case r := <-recs:
			got = append(got, r)
		case <-deadline:
			return got
		}
		for more := true; more; { // what else is there, before asking done again
			select {
			case r := <-recs:
				got = append(got, r)
			default:
				more = false
			}
		}
	}
}
