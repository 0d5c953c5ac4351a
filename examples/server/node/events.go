package node

import (
	"context"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/kafka"
)

// Connection events and upstream messages, for the application
// (-events, on by default).
//
// Clustered, a cloud node publishes its connection events (connect,
// disconnect with its reason, room changes) to the Kafka topic
// "<kafka-topic>.events" and what its clients send upstream to
// "<kafka-topic>.upstream" (package kafka's EventProducer and
// UpstreamProducer), and job publishes node_gone events (a node that
// crashed) to the events topic. Both topics must exist: like the other
// Kafka clients, the producers connect in the background, and a missing
// topic is logged and retried (and reported by /readyz and
// imcloud_backend_up) until it is created; meanwhile events are dropped
// and counted.
//
// All in one process, they go to in-process callbacks that log each one
// at debug level (-log-level debug) and count them: an application
// embedding the node sets cloud.Config.Events and UpstreamHook to its own.
//
// Either way imcloud_app_messages_total{stream,outcome} counts them.

// appEvents is where this process's roles send events and upstream
// messages.
type appEvents struct {
	events   cloud.EventSink                             // cloud's and job's Config.Events; nil: off
	upstream func(ctx context.Context, m cloud.Upstream) // cloud.Config.UpstreamHook; nil: off
	stats    func() (events, upstream kafka.ProducerStats)
}

// openEvents builds them for cfg: nothing with -events=false, the Kafka
// producers when clustered, the in-process callbacks otherwise.
func (a *App) openEvents() error {
	a.events = &appEvents{}
	if !a.cfg.Events {
		return nil
	}
	if !a.cfg.Clustered() {
		a.events.local(a)
	} else if err := a.events.kafka(a); err != nil {
		return err
	}
	if a.events.stats != nil {
		a.admin.register(a.events)
	}
	return nil
}

// local logs and counts in process.
func (e *appEvents) local(a *App) {
	log := a.log.With("role", RoleCloud)
	var events, upstream atomic.Uint64
	e.events = cloud.EventFunc(func(ev imcloud.Event) {
		events.Add(1)
		log.Debug("event", "type", ev.Type, "node", ev.Node, "key", ev.Key, "mid", ev.Mid, "gen", ev.Gen,
			"room", ev.Room, "primary", ev.Primary, "reason", ev.Reason, "detail", ev.Detail)
	})
	e.upstream = func(_ context.Context, m cloud.Upstream) {
		upstream.Add(1)
		log.Debug("upstream message", "mid", m.Mid, "key", m.Key, "room", m.Room, "op", m.Op, "seq", m.Seq, "bytes", len(m.Body))
	}
	e.stats = func() (kafka.ProducerStats, kafka.ProducerStats) {
		return kafka.ProducerStats{Sent: events.Load()}, kafka.ProducerStats{Sent: upstream.Load()}
	}
}

// kafka connects the producers the roles of this process need.
func (e *appEvents) kafka(a *App) error {
	if !a.cfg.needs(RoleCloud) && !a.cfg.needs(RoleJob) {
		return nil
	}
	events, err := producer(a, kafka.EventsTopic(a.cfg.KafkaTopic), kafka.NewEventProducer, (*kafka.EventProducer).Close)
	if err != nil {
		return err
	}
	ev := &lazyEvents{lazyProducer[*kafka.EventProducer]{c: events}}
	e.events = ev
	var up *lazyUpstream
	if a.cfg.needs(RoleCloud) {
		c, err := producer(a, kafka.UpstreamTopic(a.cfg.KafkaTopic), kafka.NewUpstreamProducer, (*kafka.UpstreamProducer).Close)
		if err != nil {
			return err
		}
		up = &lazyUpstream{lazyProducer[*kafka.UpstreamProducer]{c: c}}
		e.upstream = up.Upstream
	}
	e.stats = func() (kafka.ProducerStats, kafka.ProducerStats) {
		s := ev.stats()
		if up == nil {
			return s, kafka.ProducerStats{}
		}
		return s, up.stats()
	}
	return nil
}

// producer connects one producer of topic in the background (see
// connect), closed with the other backends, and reported by /readyz.
func producer[T any](a *App, topic string, newP func(kafka.ProducerConfig) (T, error), closeFn func(T) error) (*connector[T], error) {
	sc := kafka.NewAsyncProducerConfig()
	if err := a.kafkaSecurity(sc); err != nil {
		return nil, err
	}
	c := connect("kafka producer "+topic, a.log, func() (T, error) {
		return newP(kafka.ProducerConfig{Brokers: a.cfg.KafkaBrokers, Topic: topic, Sarama: sc, Logger: a.log.With("backend", "kafka")})
	}, closeFn)
	a.closer = append(a.closer, c.Close)
	a.admin.addCheck("kafka-"+topic, func(context.Context) error { _, err := c.get(); return err })
	return c, nil
}

// lazyProducer is a producer that connects in the background (see
// connect); until then what it would send is dropped and counted.
type lazyProducer[T interface{ Stats() kafka.ProducerStats }] struct {
	c       *connector[T]
	dropped atomic.Uint64
}

// get returns the producer, or counts a drop.
func (l *lazyProducer[T]) get() (T, bool) {
	p, err := l.c.get()
	if err != nil {
		l.dropped.Add(1)
		return p, false
	}
	return p, true
}

func (l *lazyProducer[T]) stats() kafka.ProducerStats {
	var s kafka.ProducerStats
	if p, err := l.c.get(); err == nil {
		s = p.Stats()
	}
	s.Dropped += l.dropped.Load()
	return s
}

// lazyEvents is cloud's and job's EventSink.
type lazyEvents struct {
	lazyProducer[*kafka.EventProducer]
}

func (l *lazyEvents) Event(ev imcloud.Event) {
	if p, ok := l.get(); ok {
		p.Event(ev)
	}
}

// lazyUpstream is cloud's UpstreamHook.
type lazyUpstream struct {
	lazyProducer[*kafka.UpstreamProducer]
}

func (l *lazyUpstream) Upstream(ctx context.Context, m cloud.Upstream) {
	if p, ok := l.get(); ok {
		p.Upstream(ctx, m)
	}
}

var appMessagesDesc = prometheus.NewDesc("imcloud_app_messages_total",
	"Connection events (stream events) and upstream client messages (stream upstream) for the application, by outcome: sent (acknowledged by Kafka, or handed to the in-process callback), failed (Kafka gave up after its retries), dropped (the producer's buffer was full, or it had not connected yet).",
	[]string{"stream", "outcome"}, nil)

// Describe and Collect export the counters (prometheus.Collector).
func (e *appEvents) Describe(ch chan<- *prometheus.Desc) { ch <- appMessagesDesc }

func (e *appEvents) Collect(ch chan<- prometheus.Metric) {
	if e.stats == nil {
		return
	}
	ev, up := e.stats()
	for _, s := range []struct {
		name string
		st   kafka.ProducerStats
	}{{"events", ev}, {"upstream", up}} {
		ch <- prometheus.MustNewConstMetric(appMessagesDesc, prometheus.CounterValue, float64(s.st.Sent), s.name, "sent")
		ch <- prometheus.MustNewConstMetric(appMessagesDesc, prometheus.CounterValue, float64(s.st.Errors), s.name, "failed")
		ch <- prometheus.MustNewConstMetric(appMessagesDesc, prometheus.CounterValue, float64(s.st.Dropped), s.name, "dropped")
	}
}
