// Package logic is imcloud's producing side: the Pusher that applications
// call (or reach through the goim-compatible HTTP API from NewHandler), the
// Router and Queue contracts it depends on, and their implementations: the
// in-process MemoryRouter and MemoryQueue (the embedded default), and
// MemoryHistory, the in-process stream history job appends to and cloud
// and the Pusher read (docs/design.md, recovery). The Redis router and
// history are package redis and the Kafka queue package kafka, so a
// program on the memory backends links neither redigo nor sarama.
//
// A key or mid push is resolved through the Router into one queue message
// per target cloud node (a mid push with history on is one message per
// user instead: see History); a room or broadcast push is one message.
// The work runs on an ants pool owned by the Pusher, bounded in workers and in
// waiting callers, and is admitted by its cost (targets plus body KiB)
// against a budget for small pushes and one for large pushes
// (Config.MaxSmallPushCost, Config.MaxPushCost), so an overloaded Pusher
// answers ErrOverloaded (HTTP 503 with Retry-After) at once instead of
// growing without bound or making callers wait for seconds, and a burst of
// large pushes does not hold up the small ones.
//
// # Retries
//
// Every push has a message id (Result.ID), the same on all its messages;
// WithID chooses it, and the HTTP API derives it from an Idempotency-Key
// (imcloud.MessageIDForKey). The cloud nodes drop a message whose id they
// delivered within their dedup window (the last 65,536 messages each node
// received, cloud.Config.DedupSize), so a push retried with the same id
// after an error or a lost answer reaches each connection once. A retry
// resolves its users again: a user who moved to another node between the
// two attempts may be reached on both.
//
// # Pushing
//
// Pusher.Push sends a body with an op to a Target: ToKeys (connections),
// ToMids (users), ToRoom (a room) or ToAll (a broadcast, paced by
// WithSpeed); PushOptions set the expiry. PushKeys, PushMids, PushRoom and
// Broadcast are Push with the target spelled out. The HTTP handler is built
// on Push and PushAsync alone, as any other API over a Pusher can be.
//
// # Delivery
//
// A synchronous push (Push and its named forms) returns nil only once the
// Queue accepted every message (Kafka: acknowledged by the broker). Its
// work keeps the caller's context values (context.WithoutCancel) but not
// its cancellation: it is bounded by Config.Timeout instead. PushAsync
// returns once the pool took the work and reports the outcome to a
// callback; the HTTP handler's EarlyReply mode uses it. A push to users who
// are not online succeeds and targets nobody (Result.Keys == 0), as in
// goim, except while the Router rebuilds after losing its data: then a mid
// push, or a key push with a key not found, fails with ErrRouterRebuilding
// (nothing is published; retry), since the router cannot tell offline
// users from those whose node has not registered again yet.
//
// # History
//
// With Config.History set, history is on (docs/design.md, recovery): a
// push to users belongs to each user's stream. The Pusher publishes one
// KindMids message per distinct positive mid, online or not, keyed by the
// user's stream (PartitionKey), so the queue's offset is the push's
// position in it; job appends the push to the user's history and then
// finds the user's connections. The Pusher still looks the users up, for
// the answer only: its Result reports Nodes and Keys (the connections
// online when it was accepted) and Users (the users published to, one
// message each). Its admission cost is per user (each
// message carries the body). Room pushes are published as before (a
// room's stream is keyed by the room); key pushes and broadcasts belong
// to no stream. Pusher.History (and the HTTP API's history route) reads
// the last pushes of a stream, for late joiners and backlogs; without a
// History it answers ErrHistoryOff. With Config.History nil everything
// is as described above.
//
// # Kicks
//
// Pusher.Kick closes connections across the cluster: every connection of
// some users, or connections named by their keys, with a reason ver-2
// clients read in op 6 (WithReason). It travels the queue as an
// imcloud.KindKick message, never as a push, keyed like the pushes it must
// follow: by node with history off (the Router resolves it here, as a mid
// push), by the user's stream with history on (job resolves it in offset
// order with the user's pushes). Room pushes and broadcasts, in other
// partitions, may reach a connection until its node applies the kick.
// WithRevoke also records, before publishing, that the users' credentials
// issued before now are revoked (Revoker, for Config.RevokeTTL): the cloud
// nodes refuse them at auth. The HTTP API's kick route is Kick.
//
// # Presence
//
// Pusher.Presence reports users' connections (imcloud.Session: key, node,
// platform, primary room, since) on live nodes, through a Router that is a
// PresenceRouter (ErrPresenceUnsupported otherwise; the HTTP API's presence
// route). A mid push's Result.Offline lists the users it found no
// connection for when it was accepted, from the same lookup (an
// OfflineRouter answers it in the same call), with history on or off, so
// the application can fall back to mobile push. Both are as fresh as the
// Router: a connection is there once its AuthReply was sent, a closed one
// gone after its node's next store flush (milliseconds); the connections
// of a node that crashed leave presence when its registration expires
// (cloud.Config.NodeTTL, 30 s), and stay in a push's lookup, and so out of
// Offline, until their sessions expire (cloud.Config.SessionTTL) or the
// node restarts.
//
// # Failures
//
// New refuses a Config without a Router or a Queue (ErrInvalidArgument).
// A push that fails returns its error (ErrRouter or ErrQueue wrapping the
// backend's, ErrOverloaded, ErrRouterRebuilding) to its caller, and is
// counted in Stats, so a Pusher with a nil Logger is not a silent one:
// Failed (AsyncFailed for PushAsync, whose callers may have been answered
// already) and Overloaded. The metrics package exports them
// (imcloud_logic_push_failures_total, imcloud_logic_async_push_failures_total,
// imcloud_logic_overloaded_pushes_total; docs/metrics.md).
//
// # Concurrency and lifecycle
//
// Every exported method of Pusher, MemoryRouter, MemoryQueue and
// MemoryHistory is safe for
// concurrent use. Asynchronous callbacks run on a
// pool worker and must not block. Backends handed to New are the caller's:
// Pusher.Shutdown waits for pushes in flight and releases the pool, but
// closes neither the Router nor the Queue.
//
//	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
//	queue := logic.NewMemoryQueue(logic.MemoryQueueConfig{})
//	p, err := logic.New(logic.Config{Router: router, Queue: queue})
//	if err != nil { ... }
//	defer p.Shutdown(ctx)
//	res, err := p.PushMids(ctx, 1000, []int64{42}, []byte("hello"))
//	http.Handle("/goim/", logic.NewHandler(p, logic.HandlerConfig{}))
package logic
