// Package kafka is imcloud's Kafka backend (IBM/sarama): Queue is logic's
// Queue (the push topic's producer), Source is job's Source (a consumer
// group that commits contiguous watermarks), and DeadLetter sets aside
// records a job cannot read. It is the only imcloud package that imports
// sarama.
//
// Messages are partitioned by logic.PartitionKey: one node's key pushes,
// one room's pushes, one user's mids pushes (history on) and all
// broadcasts each keep their order.
//
// # Concurrency and lifecycle
//
// Queue.Publish, Source.Receive and Source.Commit are safe for concurrent
// use. Each type's Close is idempotent and releases its connections; the
// roles never close a backend they were given.
//
//	q, err := kafka.NewQueue(kafka.QueueConfig{Brokers: brokers})
//	p, err := logic.New(logic.Config{Router: router, Queue: q})
//
//	src, err := kafka.NewSource(kafka.SourceConfig{Brokers: brokers, GroupID: "imcloud-job", Topic: "imcloud-push"})
//	j, err := job.New(job.Config{Source: src, Directory: router, LinkSecret: secret})
package kafka
