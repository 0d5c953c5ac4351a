// Package cloud is the imcloud gateway (goim's comet): it holds long-lived
// client connections over TCP and WebSocket, speaks the goim v2 wire
// protocol byte for byte (package protocol), authenticates clients through
// a pluggable Authenticator, keeps heartbeats, rooms and op filters, and
// gets pushes onto connections without letting one slow client hold up the
// others.
//
// # Concurrency
//
// Every Server method is safe for concurrent use. Deliver never blocks on a
// socket: a push is encoded once and appended to each receiver's bounded
// outbound queue (outq.go), whose state machine records who may write the
// connection. One scheduler (sched.go) decides who does: connections with
// a non-blocking socket (plain TCP and WebSocket on Linux,
// rawwrite_linux.go) wait on one ready list for a few writer goroutines
// (GOMAXPROCS-1 under sustained load, so a P is always free to poll the
// network for push requests and link reads; a fan-out that finds them
// idle may use one per P), which write each one without waiting and put
// it back while pushes keep arriving; a socket that takes only part of a
// write, or one without a non-blocking path (TLS; every socket off
// Linux), is written by a goroutine of its own, bounded by WriteTimeout,
// until its queue is empty. Pushes that arrive while a connection waits
// or is written coalesce into its next write (op 9 on WebSocket), so under
// load a write carries many pushes instead of the machine making one
// system call per push per client. When most clients fall behind at once,
// Deliver waits for the node's backlog to drain rather than fill every
// queue (backpressure; Stats.QueuedBytes, Stats.Backpressured). An idle
// connection holds one goroutine (its reader) and no buffers.
// Authenticator and UpstreamHook run on connection reader goroutines and
// must not block for long. The event sink (Config.Events: connect,
// disconnect with its reason, room changes) is called from one goroutine
// of the node's own, in order; a slow sink delays events, never a client
// (a full queue drops them, counted: Stats.EventsDropped).
//
// # Recovery
//
// With Config.History set (logic.MemoryHistory, redis.History), a client
// that authenticates with ver 2 and "recover": true gets, before any live
// push, the pushes of its user's and its room's streams it missed since
// the positions it sent, once each and in order, then an op 25 frame
// saying per stream whether that was all; its pushes of a stream carry
// their place in it (op 24). Other clients see no difference (recover.go;
// docs/protocol-recovery.md).
//
// # Kicks and revocation
//
// A kick (imcloud.KindKick from job, or Kick and KickMid) takes a
// connection out of its bucket, its rooms and the store at once, writes
// what was queued for it, then op 6 with the kick's reason to ver-2
// clients, and closes it within 1 s (kick.go). With a store that keeps
// revocations (RevocationStore), an auth whose Identity.IssuedAt is
// before its user's revocation is refused (revoke.go).
//
// # Failures
//
// New refuses a Config without an Authenticator (ErrNoAuthenticator) or
// with a TLS config that has no certificate (ErrNoCertificate), and
// ServeLink one without a LinkSecret (ErrNoLinkSecret) unless
// InsecureLink says so. What fails at run time is counted in Stats, so a
// node with a nil Logger is not a silent one: failed session-store calls
// (Config.Store: the router) in StoreErrors, which the node retries;
// refused link hellos in LinkRefused; refused clients by reason in
// Refused; messages dropped before fan-out in Duplicates, Expired,
// Invalid and Reserved; pushes a connection does not accept in Filtered;
// frames lost to slow clients in Dropped and SlowDisconnects; streams a
// recovery could not replay in full in Recoveries, by reason. The metrics
// package exports them (imcloud_cloud_store_errors_total,
// imcloud_cloud_link_refused_total,
// imcloud_cloud_connections_rejected_total,
// imcloud_cloud_messages_dropped_total,
// imcloud_cloud_frames_filtered_total, ...; docs/metrics.md).
//
// # Lifecycle
//
//	srv, err := cloud.New(cloud.Config{Authenticator: cloud.NewTokenAuthenticator(secret), Store: router})
//	go srv.ServeTCP(tcpLn)           // goim TCP clients
//	go srv.ServeWS(wsLn)             // WebSocket on /sub, or mount srv as an http.Handler
//	go srv.ServeLink(linkLn)         // job's link connections
//	...
//	err = srv.Shutdown(ctx)          // deregister, op 6 to opted-in clients, paced close
//
// In one process, job delivers straight through (*Server).Deliver, which
// satisfies job.Link.
package cloud
