// Package kafka is imcloud's Kafka backend (IBM/sarama): Queue is logic's
// Queue (the push topic's producer), Source is job's Source (a consumer
// group that commits contiguous watermarks), and DeadLetter sets aside
// records a job cannot read. EventProducer publishes the connection
// events of cloud nodes and the node_gone events of jobs to
// "<topic>.events" (JSON, keyed by connection key); UpstreamProducer is a
// node's UpstreamHook, publishing what clients send to "<topic>.upstream"
// (the client's bytes, the verified sender in headers). Both never make
// their caller wait (a full buffer drops, counted in Stats), deliver at
// least once and in order per connection, and need their topic to exist.
// It is the only imcloud package that imports sarama.
//
// Messages are partitioned by logic.PartitionKey: one node's key pushes,
// one room's pushes, one user's mids pushes (history on) and all
// broadcasts each keep their order.
//
// # Concurrency and lifecycle
//
// Queue.Publish, Source.Receive, Source.Commit, EventProducer.Event and
// UpstreamProducer.Upstream are safe for concurrent use. Each type's Close is idempotent and releases its connections; the
// roles never close a backend they were given.
//
//	q, err := kafka.NewQueue(kafka.QueueConfig{Brokers: brokers})
//	p, err := logic.New(logic.Config{Router: router, Queue: q})
//
//	src, err := kafka.NewSource(kafka.SourceConfig{Brokers: brokers, GroupID: "imcloud-job", Topic: "imcloud-push"})
//	j, err := job.New(job.Config{Source: src, Directory: router, LinkSecret: secret})
//
//	events, err := kafka.NewEventProducer(kafka.ProducerConfig{Brokers: brokers}) // imcloud-push.events
//	up, err := kafka.NewUpstreamProducer(kafka.ProducerConfig{Brokers: brokers}) // imcloud-push.upstream
//	srv, err := cloud.New(cloud.Config{Events: events, UpstreamHook: up.Upstream, ...})
package kafka
