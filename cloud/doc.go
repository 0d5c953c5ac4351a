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
// socket: a push is encoded once, appended to each receiver's bounded
// queue, and written by a writer that exists only while the queue is
// non-empty. A fan-out's connections are written by shared batch writers
// (one goroutine per 32 connections) which, on plain TCP, never wait on a
// socket: a write the socket cannot take at once continues on a goroutine
// of that connection's own, bounded by WriteTimeout. Connections that keep
// receiving pushes are then written round after round by the keepers
// (GOMAXPROCS-1 goroutines, so a P is always free to poll the network for
// push requests and link reads). Pushes that arrive while a connection's
// write is pending coalesce into its next write (op 9 on WebSocket), so
// under load a write carries many pushes instead of the machine making one
// system call per push per client. When most clients fall behind at once,
// Deliver waits for the node's backlog to drain rather than fill every
// queue (backpressure; Stats.QueuedBytes, Stats.Backpressured). An idle
// connection holds one goroutine (its reader) and no buffers.
// Authenticator and UpstreamHook run on connection reader goroutines and
// must not block for long.
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
