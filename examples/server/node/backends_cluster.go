package node

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/nometrics"
	"github.com/imcloud/imcloud/kafka"
	"github.com/imcloud/imcloud/metrics/redismetrics"
	"github.com/imcloud/imcloud/redis"
)

// deadLetterSuffix names the topic where job sets aside messages of a newer
// major version: "<topic>.dead-letter".
const deadLetterSuffix = ".dead-letter"

// openClustered opens Redis (every role) and the Kafka producer (logic) or
// consumer group (job). The Redis pool dials lazily, so a Redis that is
// down at start shows as failing calls, retried by the roles; Kafka clients
// connect in the background until a broker answers.
func (a *App) openClustered() error {
	rc := redis.Config{
		Addrs:    a.cfg.RedisAddrs(),
		Username: a.cfg.RedisUser,
		Password: a.cfg.RedisPassword,
		DB:       a.cfg.RedisDB,
		Cluster:  a.cfg.RedisCluster,
		Logger:   a.log.With("backend", "redis"),
	}
	if a.cfg.RedisTLS {
		rc.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	r, err := redis.NewRouter(rc)
	if err != nil {
		return fmt.Errorf("%w: -redis-addr: %v", ErrUsage, err)
	}
	a.router = r
	a.closer = append(a.closer, r.Close)
	if a.cfg.History {
		a.history = redis.NewHistory(r, redis.HistoryConfig{MaxLen: a.cfg.HistoryLen, MaxAge: a.cfg.HistoryAge})
	}
	a.admin.register(redismetrics.Router(r))

	if a.cfg.needs(RoleLogic) {
		sc := kafka.NewProducerConfig()
		if err := a.kafkaSecurity(sc); err != nil {
			return err
		}
		c := connect("kafka producer", a.log, func() (*kafka.Queue, error) {
			return kafka.NewQueue(kafka.QueueConfig{Brokers: a.cfg.KafkaBrokers, Topic: a.cfg.KafkaTopic, Sarama: sc, Logger: a.log})
		}, (*kafka.Queue).Close)
		a.queue = lazyQueue[*kafka.Queue]{c}
		a.closer = append(a.closer, c.Close)
	}
	if a.cfg.needs(RoleJob) {
		sc := sarama.NewConfig()
		sc.ClientID = "imcloud-job"
		sc.MetricRegistry = nometrics.Registry{} // as logic's default: sarama's metrics cost CPU per request
		if err := a.kafkaSecurity(sc); err != nil {
			return err
		}
		src := connect("kafka consumer group", a.log, func() (*kafka.Source, error) {
			return kafka.NewSource(kafka.SourceConfig{
				Brokers: a.cfg.KafkaBrokers, GroupID: a.cfg.KafkaGroup, Topic: a.cfg.KafkaTopic,
				Sarama: sc, Logger: a.log.With("backend", "kafka"),
			})
		}, (*kafka.Source).Close)
		a.source = lazySource[*kafka.Source]{src}
		a.closer = append(a.closer, src.Close)

		dlq := connect("kafka dead-letter producer", a.log, func() (*kafka.DeadLetter, error) {
			return kafka.NewDeadLetter(kafka.DeadLetterConfig{Brokers: a.cfg.KafkaBrokers, Topic: a.cfg.KafkaTopic + deadLetterSuffix, Sarama: sc})
		}, (*kafka.DeadLetter).Close)
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
