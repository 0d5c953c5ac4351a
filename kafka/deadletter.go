package kafka

import (
	"context"
	"fmt"
	"strconv"

	"github.com/IBM/sarama"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/nometrics"
)

// DeadLetterConfig configures a DeadLetter.
type DeadLetterConfig struct {
	// Brokers are the bootstrap brokers (required).
	Brokers []string
	// Topic is the dead-letter topic (required).
	Topic string
	// Sarama is the base client configuration (TLS, SASL, version).
	// Default sarama.NewConfig() with sarama's internal metrics off (a
	// no-op MetricRegistry). It is copied; the publisher sets
	// Producer.Return.Successes and waits for all in-sync replicas.
	Sarama *sarama.Config
}

// DeadLetter writes records the job cannot read (a newer major
// version) to a dead-letter topic, unchanged, with headers naming where
// they came from. Its Publish method is a Config.DeadLetter.
type DeadLetter struct {
	topic    string
	producer sarama.SyncProducer
}

// NewDeadLetter connects the dead-letter producer.
func NewDeadLetter(cfg DeadLetterConfig) (*DeadLetter, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return nil, fmt.Errorf("%w: brokers and dead-letter topic are required", ErrConfig)
	}
	sc := sarama.NewConfig()
	sc.MetricRegistry = nometrics.Registry{}
	if cfg.Sarama != nil {
		c := *cfg.Sarama
		sc = &c
	}
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	p, err := sarama.NewSyncProducer(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka: dead-letter producer: %w", err)
	}
	return &DeadLetter{topic: cfg.Topic, producer: p}, nil
}

// Publish writes rec to the dead-letter topic and returns once the broker
// acknowledged it. ctx is not consulted: the producer's own timeouts
// bound the call.
func (d *DeadLetter) Publish(ctx context.Context, rec imcloud.Record) error {
	_, _, err := d.producer.SendMessage(&sarama.ProducerMessage{
		Topic: d.topic,
		Key:   sarama.ByteEncoder(rec.Key),
		Value: sarama.ByteEncoder(rec.Value),
		Headers: []sarama.RecordHeader{
			{Key: []byte("imcloud-partition"), Value: []byte(strconv.Itoa(int(rec.Partition)))},
			{Key: []byte("imcloud-offset"), Value: []byte(strconv.FormatInt(rec.Offset, 10))},
		},
	})
	if err != nil {
		return fmt.Errorf("kafka: dead-letter publish: %w", err)
	}
	return nil
}

// Close closes the producer.
func (d *DeadLetter) Close() error { return d.producer.Close() }
