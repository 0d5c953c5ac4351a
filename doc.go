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
// and cloud packages; protocol is the client wire codec; cloud/client is a
// Go client. examples/server wires everything into one binary: all roles in
// one process on in-memory backends by default, or one role of a cluster
// with Redis and Kafka.
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
