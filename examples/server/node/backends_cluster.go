package node

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/nometrics"
	"github.com/imcloud/imcloud/job"
	"github.com/imcloud/imcloud/logic"
)

// deadLetterSuffix names the topic where job sets aside messages of a newer
// major version: "<topic>.dead-letter".
const deadLetterSuffix = ".dead-letter"

// openClustered opens Redis (every role) and the Kafka producer (logic) or
// consumer group (job). The Redis pool dials lazily, so a Redis that is
// down at start shows as failing calls, retried by the roles; Kafka clients
// connect in the background until a broker answers.
func (a *App) openClustered() error {
	rc := logic.RedisConfig{
		Addr:     a.cfg.RedisAddr,
		Username: a.cfg.RedisUser,
		Password: a.cfg.RedisPassword,
		DB:       a.cfg.RedisDB,
		Logger:   a.log.With("backend", "redis"),
	}
	if a.cfg.RedisTLS {
		rc.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	r, err := logic.NewRedisRouter(rc)
	if err != nil {
		return fmt.Errorf("%w: -redis-addr: %v", ErrUsage, err)
	}
	a.router = r
	a.closer = append(a.closer, r.Close)

	if a.cfg.needs(RoleLogic) {
		sc := logic.NewKafkaSaramaConfig()
		if err := a.kafkaSecurity(sc); err != nil {
			return err
		}
		c := connect("kafka producer", a.log, func() (*logic.KafkaQueue, error) {
			return logic.NewKafkaQueue(logic.KafkaConfig{Brokers: a.cfg.KafkaBrokers, Topic: a.cfg.KafkaTopic, Sarama: sc, Logger: a.log})
		}, (*logic.KafkaQueue).Close)
		a.queue = lazyQueue[*logic.KafkaQueue]{c}
		a.closer = append(a.closer, c.Close)
	}
	if a.cfg.needs(RoleJob) {
		sc := sarama.NewConfig()
		sc.ClientID = "imcloud-job"
		sc.MetricRegistry = nometrics.Registry{} // as logic's default: sarama's metrics cost CPU per request
		if err := a.kafkaSecurity(sc); err != nil {
			return err
		}
		src := connect("kafka consumer group", a.log, func() (*job.KafkaSource, error) {
			return job.NewKafkaSource(job.KafkaSourceConfig{
				Brokers: a.cfg.KafkaBrokers, GroupID: a.cfg.KafkaGroup, Topic: a.cfg.KafkaTopic,
				Sarama: sc, Logger: a.log.With("backend", "kafka"),
			})
		}, (*job.KafkaSource).Close)
		a.source = lazySource[*job.KafkaSource]{src}
		a.closer = append(a.closer, src.Close)

		dlq := connect("kafka dead-letter producer", a.log, func() (*job.KafkaDeadLetter, error) {
			return job.NewKafkaDeadLetter(job.KafkaDeadLetterConfig{Brokers: a.cfg.KafkaBrokers, Topic: a.cfg.KafkaTopic + deadLetterSuffix, Sarama: sc})
		}, (*job.KafkaDeadLetter).Close)
		a.dlq = func(ctx context.Context, rec imcloud.Record) error {
			d, err := dlq.get()
			if err != nil {
				return err
			}
			return d.Publish(ctx, rec)
		}
		a.closer = append(a.closer, dlq.Close)
	}
	return nil
}

// deadLetter is job's DeadLetter: the Kafka dead-letter topic when
// clustered; in memory there is no newer writer, so nil (counted).
func (a *App) deadLetter() func(context.Context, imcloud.Record) error { return a.dlq }
