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
// queue, and written by a writer goroutine that exists only while the
// queue is non-empty. An idle connection holds one goroutine (its reader)
// and no buffers. Authenticator and UpstreamHook run on connection reader
// goroutines and must not block for long.
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
