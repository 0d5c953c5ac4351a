package node

import (
	"crypto/tls"
	"fmt"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"github.com/imcloud/imcloud/logic"
)

// openBackends opens the router and the queue (producer and/or consumer
// side) this process's roles need: in memory when not clustered, Redis and
// Kafka otherwise. Clients of unreachable backends are still built: Redis
// pools dial lazily, and Kafka clients are created by the roles' retry
// loops where the APIs allow it.
func (a *App) openBackends() error {
	if !a.cfg.Clustered() {
		r := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
		q := logic.NewMemoryQueue(logic.MemoryQueueConfig{MaxDelay: a.cfg.QueueMaxDelay})
		a.router, a.queue, a.source = r, q, q
		a.closer = append(a.closer, q.Close)
		if a.cfg.History {
			a.history = logic.NewMemoryHistory(logic.MemoryHistoryConfig{
				MaxLen: a.cfg.HistoryLen, MaxAge: a.cfg.HistoryAge, MaxBytes: a.cfg.HistoryBytes})
		}
		return nil
	}
	return a.openClustered()
}

// kafkaSecurity applies the TLS and SASL flags to a Kafka client
// configuration.
func (a *App) kafkaSecurity(sc *sarama.Config) error {
	if a.cfg.KafkaTLS {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if a.cfg.KafkaSASLUser != "" {
		sc.Net.SASL.Enable = true
		sc.Net.SASL.User = a.cfg.KafkaSASLUser
		sc.Net.SASL.Password = a.cfg.KafkaSASLPassword
		switch a.cfg.KafkaSASLMech {
		case "PLAIN":
			sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		case "SCRAM-SHA-256":
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
		case "SCRAM-SHA-512":
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
		default:
			return fmt.Errorf("%w: -kafka-sasl-mechanism: %q", ErrUsage, a.cfg.KafkaSASLMech)
		}
	}
	return nil
}

// scramClient adapts xdg-go/scram to sarama's SCRAMClient.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (c *scramClient) Begin(user, pass, authzID string) error {
	cl, err := c.hash.NewClient(user, pass, authzID)
	if err != nil {
		return err
	}
	c.conv = cl.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }
func (c *scramClient) Done() bool                            { return c.conv.Done() }
