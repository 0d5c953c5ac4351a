// Package job is imcloud's consumer: it reads push messages from the queue
// (a Source: logic's memory queue, or a Kafka consumer group through
// package kafka's Source), sends each to the cloud nodes that need it over the link
// (a Link per node: a LinkClient over TCP, or *cloud.Server in process),
// and commits queue offsets only once the nodes accepted the messages.
//
// # Dispatch
//
// A keys message goes to the one node it names; a room message to the
// nodes that have members in the room (with Config.Rooms, see below) or to
// every live node of the NodeDirectory (without); a broadcast to every
// live node. The directory is read every RefreshInterval. Each node has
// its own bounded queue and worker, so a node that is unreachable delays
// nobody else: its worker retries with backoff while the others deliver.
// Messages for one node stay in order (and so do one room's, which share a
// partition). A worker makes one Deliver call at a time, carrying whatever
// queued up for the node while the previous call was in flight, up to
// MaxDelivery messages: room merging without a timer, one message per call
// at low rates, large calls under load. A broadcast's pace (connections
// per second) is split across the nodes in proportion to their
// connections.
//
// # Rooms
//
// With Config.Rooms (the router's NodesByRooms; cloud nodes write their
// room memberships to it), room messages pass through their partition's
// stage (below), which looks up the member nodes of a batch's rooms in
// one call and queues each message for each of its room's member nodes,
// as a keys message is queued for its node (one the job does not know
// yet waits for a directory read). A room without members is done at
// once (Stats.RoomNoMembers). The lookup starts after every record of
// its batch was received, and a node writes a membership before it
// answers the join that made it, so a push the API accepted after a
// join's reply reaches the joining connection's node, even as the room's
// first member there; only removals may be stale, costing a node a push
// it drops. If the lookup fails (a router that lost its data and
// rebuilds, a store that is down), the batch's room messages fan out to
// every live node as without Rooms: never lost, never held, counted in
// Stats.RoomFallbacks and RoomLookupErrors and logged once per streak of
// failures. Without Rooms (a store that keeps no memberships) every room
// push goes to every live node.
//
// # Nodes that join
//
// job learns of a node at the first read of the directory after the node
// registered, up to RefreshInterval later; the node may have taken clients
// into rooms meanwhile, and a room message or broadcast fanned out in that
// time did not go to it. Keys messages, and room messages routed to their
// member nodes, wait for the read (a node job does not know yet is asked
// for at once); what fans out to every node cannot, since job does not
// know which nodes it is for. Instead job records every room (without
// Rooms, or after a failed lookup) and broadcast fan-out (paced broadcasts
// too) under the same lock as the list of live nodes it went to, so a
// fan-out either went to a node or is in the record when the node joins.
// The joining node's worker is handed, before anything newer, every
// recorded fan-out accepted since the node registered (imcloud.Node.Since,
// less a second for the clocks of logic and the node; all of them for a
// node without Since), oldest first; a paced broadcast at the node's share
// of its pace. Clients connect to a node only after it registered, so
// every client in a room when a push was accepted gets it. These catch-ups
// are best effort: they take no part in commits (their records may be
// committed already, and a node that does not take them holds up nothing),
// and the node drops by message id any it already had. The record keeps
// three RefreshIntervals of fan-outs, at most CatchUpMessages and
// CatchUpBytes; a node that joins after it dropped one the node may need
// (job read the directory late, or the push rate outgrew the record) is
// counted in Stats.CatchUpGaps, the messages handed in Stats.CaughtUp. A
// job that restarts starts with an empty record: a node that registered
// shortly before and that the previous job had not listed may miss what
// that job fanned out and committed.
//
// # Pushes to users and streams
//
// A mids message (imcloud.KindMids: a push to users, as logic publishes it
// with history on) needs Config.Users, the router's NodesByMids: the job
// looks up the users' connections and sends one keys message per node
// (per node and user with history). Without Users it is set aside through
// Config.DeadLetter, never delivered to the wrong audience.
//
// A kick (imcloud.KindKick) closes connections and is never a push: a
// kick by keys goes to its node as a keys message does; a kick by mids is
// resolved like a mids message, in offset order with the users' pushes,
// into one kick by keys per node, and is appended to no history (see
// kick.go).
//
// With Config.History (which requires Users), pushes to users and rooms
// belong to streams (docs/design.md, recovery): each mids message is
// appended to each of its users' streams, and each room message to its
// room's, at the record's offset, before anything of it is delivered; what
// is delivered carries the stream, the epoch the store answered and the
// offset. Key pushes and broadcasts belong to no stream and go as before.
// These records pass through a stage per queue partition, which handles
// whatever waited as one batch (up to MaxDelivery records): one
// History.Append call, the batch's user lookups (made together), the room
// lookup (with Rooms), then the messages queued for their nodes in offset
// order. An append or a user lookup that fails is retried with backoff
// while the partition's staged records wait, undelivered and uncommitted:
// pushes stall, none is lost. A redelivered record (after a restart)
// appends the same offset and message id again, which the store takes as a
// no-op, and is delivered with the same offset. A user with no connection
// gets nothing delivered; the push stays in the history for the user's
// next connection.
//
// # Commits and delivery guarantees
//
// Offsets are committed per partition by a contiguous watermark: an offset
// is committed only when its record and every earlier one of the partition
// were appended to their streams (with History) and accepted by all their
// target nodes, or had nothing to deliver, or their node left the
// directory (its registration expired: its clients reconnect elsewhere).
// A job stopped or killed at any point is followed by one that delivers
// again what was in flight: at-least-once to the nodes, which drop
// redeliveries by message id. Expired messages are dropped and counted;
// undecodable records are logged, counted and skipped; records of a newer
// major version (and mids messages without Users) go to
// Config.DeadLetter. No record stops consumption; a history store that
// fails stalls the partitions whose pushes it must hold until it is back.
//
// # Nodes that crash
//
// A cloud node killed without a drain reports no disconnect for its
// connections. With Config.Events, when the directory drops a node
// because its registration expired, the job sends one
// imcloud.EventNodeGone with the node id and its process epoch: every
// connection of that process ended. A drained node (cloud's Shutdown,
// which deregisters it through RemoveNode) reported every disconnect
// itself and gets none: RemoveNode leaves a tombstone with the epoch it
// removed for logic.DrainedTTL (10 minutes), which the job reads through
// DrainedDirectory (the memory and Redis routers) for the nodes that left
// its directory. A node that restarts under the same id before its
// registration expires stays listed, with another epoch: the job sends
// node_gone for the epoch it knew (unless a tombstone says that one
// drained). Without tombstones it sends node_gone for a drained node
// too, redundant but true. Every job that knew the node sends one (at
// least once); events.go has the details.
//
// # Failures
//
// New refuses what cannot work: no Source (ErrNoSource), no Directory
// (ErrNoDirectory), the default Connect without a LinkSecret
// (ErrNoLinkSecret), a History without Users (ErrNoUsers). What fails at
// run time is retried and counted in Stats, so a job with a nil Logger is
// not a silent one: a node that cannot be dialled or refuses deliveries in
// Retried and in its NodeStats (Retried, LastError), messages with no node
// to go to in Unroutable, a failing directory (the router) in
// DirectoryErrors, failing commits in CommitErrors, failing history
// appends and user lookups in HistoryErrors and LookupErrors, failed room
// lookups (which fan out instead) in RoomLookupErrors, records set
// aside or lost in DeadLettered and DeadLetterFailed. The metrics package
// exports them (imcloud_job_delivery_retries_total,
// imcloud_job_node_failing, imcloud_job_messages_unroutable_total,
// imcloud_job_directory_errors_total, imcloud_job_commit_failures_total,
// imcloud_job_history_append_failures_total, ...; docs/metrics.md).
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
