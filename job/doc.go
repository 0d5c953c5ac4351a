// Package job is imcloud's consumer: it reads push messages from the queue
// (a Source: logic's memory queue, or a Kafka consumer group through
// package kafka's Source), sends each to the cloud nodes that need it over the link
// (a Link per node: a LinkClient over TCP, or *cloud.Server in process),
// and commits queue offsets only once the nodes accepted the messages.
//
// # Dispatch
//
// A keys message goes to the one node it names; room and broadcast
// messages go to every live node of the NodeDirectory, read every
// RefreshInterval. Each node has its own bounded queue and worker, so a
// node that is unreachable delays nobody else: its worker retries with
// backoff while the others deliver. Messages for one node stay in order
// (and so do one room's, which share a partition). A worker makes one
// Deliver call at a time, carrying whatever queued up for the node while
// the previous call was in flight, up to MaxDelivery messages: room merging
// without a timer, one message per call at low rates, large calls under
// load. A broadcast's pace (connections per second) is split across the
// nodes in proportion to their connections.
//
// # Commits and delivery guarantees
//
// Offsets are committed per partition by a contiguous watermark: an offset
// is committed only when its record and every earlier one of the partition
// were accepted by all their target nodes, or had nothing to deliver, or
// their node left the directory (its registration expired: its clients
// reconnect elsewhere). A job stopped or killed at any point is followed
// by one that delivers again what was in flight: at-least-once to the
// nodes, which drop redeliveries by message id. Expired messages are
// dropped and counted; undecodable records are logged, counted and
// skipped; records of a newer major version go to Config.DeadLetter. No
// record stops consumption.
//
// # Failures
//
// New refuses what cannot work: no Source (ErrNoSource), no Directory
// (ErrNoDirectory), and the default Connect without a LinkSecret
// (ErrNoLinkSecret). What fails at run time is retried and counted in
// Stats, so a job with a nil Logger is not a silent one: a node that
// cannot be dialled or refuses deliveries in Retried and in its
// NodeStats (Retried, LastError), messages with no node to go to in
// Unroutable, a failing directory (the router) in DirectoryErrors,
// failing commits in CommitErrors, records set aside or lost in
// DeadLettered and DeadLetterFailed. The metrics package exports them
// (imcloud_job_delivery_retries_total, imcloud_job_node_failing,
// imcloud_job_messages_unroutable_total,
// imcloud_job_directory_errors_total,
// imcloud_job_commit_failures_total, ...; docs/metrics.md).
//
// # Concurrency and lifecycle
//
// Run consumes until its context ends or Shutdown; Shutdown stops
// consuming, lets the records in flight be delivered and committed until
// its context ends, and returns. A Job runs once. Stats is safe to call at
// any time. Source, NodeDirectory and Link implementations must be safe
// for concurrent use; the job never closes the ones it is given.
//
//	src, _ := kafka.NewSource(kafka.SourceConfig{Brokers: brokers, GroupID: "imcloud-job", Topic: "imcloud-push"})
//	j, _ := job.New(job.Config{Source: src, Directory: router, LinkSecret: secret})
//	go j.Run(ctx)
//	...
//	_ = j.Shutdown(shutdownCtx)
//	_ = src.Close()
package job
