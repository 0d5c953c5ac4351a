// Package imcloud is a distributed push middleware: an application says
// "deliver this to user 42", "to everyone in room live://1000" or "to
// everybody", and imcloud gets it onto the right long-lived TCP and
// WebSocket client connections across many gateway machines, in
// milliseconds. It descends from goim (and speaks its client protocol byte
// for byte, so goim clients connect unchanged) and from im-cloud.
//
// # Roles and data flow
//
//	application ── PushMids/PushRoom/… or POST /goim/push/… ──► logic
//	logic:  resolves keys and mids to nodes (Router), publishes Messages (Queue)
//	queue:  Kafka topic, or in memory
//	job:    consumes, groups by node, batches rooms, paces broadcasts,
//	        delivers over the link, commits only what nodes acknowledged
//	cloud:  the gateway; holds connections, auth, heartbeats, rooms, fan-out;
//	        registers sessions and itself in the Router (Redis, or in memory)
//
// This package is the vocabulary the roles share: the queue Message and its
// versioned binary encoding, Record (a consumed message and its offset),
// Session, Node, and room key helpers. The roles live in the logic, job
// and cloud packages; kafka and redis hold their Kafka and Redis backends;
// protocol is the client wire codec; cloud/client is a Go client; metrics
// exports the roles' Stats (and their Histograms) to Prometheus.
// examples/server wires everything into one binary: all roles in one
// process on in-memory backends by default, or one role of a cluster with
// Redis and Kafka.
//
// # Glossary
//
// One name per concept, in the code and in the docs:
//
//   - push: an application's request to deliver one body with one op to an
//     audience (a logic.Target): keys, mids, a room, or every connection
//     (broadcast).
//   - op: a frame's operation. A push op is the application's choice,
//     1000 and above by convention; lower ops belong to the protocol.
//   - key: one client connection, unique in the cluster (goim's key).
//   - mid: one user (goim's member id); a user holds any number of keys.
//     logic resolves a mid push to keys, so it travels as a keys message.
//   - session: an authenticated connection as the cluster records it
//     (Session): mid, key, room, accepted ops, node and generation.
//   - generation: a connection's number on its node (Session.Gen). A route
//     is removed only while its node and generation still match.
//   - node: one running gateway, a cloud.Server (goim's comet), named by
//     Node.ID. "cloud" is the role and its package, not a machine.
//   - room: a named group of connections, "type://id". A connection has at
//     most one primary room (goim's: auth room_id, ChangeRoom; the
//     heartbeat's online count) and may join more (ops 18-21, ver-2
//     clients), up to 32 in all. Entering one is authorized.
//   - router: where sessions, nodes and room counts live: logic's Router,
//     which cloud sees as its SessionStore and job as its NodeDirectory. One
//     value (in memory, or Redis) serves all three.
//   - queue: what carries messages from logic to job: logic publishes to a
//     Queue, job consumes a Source (Kafka, or one in-memory value for both).
//   - message: what the queue carries (Message): one per room or broadcast
//     push, one per target node for a key or mid push (kind keys).
//   - record: a message as a queue partition holds it (Record), with its
//     offset; job commits offsets.
//   - stream: pushes that keep their order from the push API to the socket:
//     one room's, the key pushes for one node, all broadcasts. Each is one
//     partition key of the queue; there is no order across streams.
//   - link: job's connection to one node (job.Link): framed TCP to the
//     node's link listener, or a direct call in one process.
//   - delivery: one Link.Deliver call, the messages waiting for one node;
//     the node acknowledges it once it accepted them.
//   - accepted: taken by the next stage, not yet at the client: the queue
//     acknowledged a message; a node placed it on its connections' queues.
//   - batch: an op 9 frame, push frames back to back in one frame
//     (protocol.Batch). Other groupings have their own names: a delivery;
//     a room run (consecutive pushes to one room in a delivery, queued to
//     each connection as one item); a write (what one write(2) carries).
//   - backlog: the bytes waiting in a node's connection queues, each
//     connection counted up to 64 KiB (cloud.Stats.QueuedBytes). While it
//     is over its limit, the node holds back new deliveries.
//
// # Delivery guarantees
//
//   - A push returns success only once the queue accepted it (Kafka:
//     acknowledged by the broker). An early-reply HTTP mode that answers
//     "accepted" first exists, off by default.
//   - job commits queue offsets by a contiguous watermark: an offset is
//     committed only when it and every earlier one in its partition were
//     acknowledged by all their target nodes (or the node's registration
//     expired). A job crash redelivers rather than loses: at-least-once to
//     the gateways.
//   - Cloud nodes remember recent message IDs and drop redeliveries, so a
//     job restart shows clients no duplicates.
//   - A message may carry an expiry; job drops expired messages and counts
//     them.
//   - The Message encoding is forward compatible: unknown fields are
//     skipped; a newer major version is refused with ErrNewerVersion and set
//     aside (a dead-letter topic), never silently dropped. Upgrade job and
//     cloud before logic.
//   - Pushes to users who are not online succeed and reach no one (goim
//     semantics); results say how many nodes and keys were targeted.
//   - Every queue is bounded. A client that cannot keep up is disconnected
//     (counted) rather than silently skipped; when most clients of a cloud
//     node fall behind together, the node stops taking deliveries until its
//     backlog drains; overload at the push API is an explicit error (503),
//     never unbounded memory.
//   - With Redis down, cloud nodes keep serving connected clients and
//     re-register their sessions when it returns; pushes fail with clear
//     errors meanwhile.
//
// # Rooms and the control plane
//
// job sends a room push only to the nodes with members in the room: a node
// writes its membership to the router before it answers the member who
// made it the room's first there, and job reads memberships after it
// received the push, so a client that had its Join answered gets every
// push the API accepted afterwards. Broadcasts go to every node.
//
// The application acts on connections and hears about them through the
// same cluster: kicks (a Message of KindKick, never a push, queued behind
// the user's earlier pushes; optionally revoking the user's older
// tokens), presence and the offline users of a mids push, connection
// events (Event: connect, disconnect with its reason, room changes;
// at least once and in order per connection, node_gone for a gateway that
// died), upstream messages with the sender's verified identity, and token
// lifetime (a connection closes at its token's expiry unless refreshed).
// docs/design.md says how each works and what it guarantees.
//
// # Embedding
//
// A service pushes through a logic.Pusher wired to the cluster's Router and
// Queue (see the logic package for constructing them):
//
//	pusher, err := logic.New(logic.Config{Router: router, Queue: queue})
//	if err != nil { ... }
//	defer pusher.Shutdown(ctx)
//	res, err := pusher.PushMids(ctx, 1000, []int64{42}, []byte("hello"))
//
// or mounts the goim-compatible REST API in its own mux:
//
//	mux.Handle("/goim/", logic.NewHandler(pusher, logic.HandlerConfig{}))
package imcloud
