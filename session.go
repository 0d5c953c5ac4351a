package imcloud

import "time"

// Session is one authenticated client connection as the cluster sees it:
// cloud records it in its session store on auth, renews it while the client
// heartbeats and removes it on disconnect; logic looks it up to resolve key
// and mid pushes to nodes.
type Session struct {
	// Mid is the user id; one user may hold many connections.
	Mid int64
	// Key identifies this connection, unique across the cluster.
	Key string
	// Room is the room key ("type://id") the connection is in, or "".
	Room string
	// Platform is what the client said it runs on ("web", "ios", ...).
	Platform string
	// Accepts are the push ops the connection takes for key, mid and
	// broadcast pushes.
	Accepts []int32
	// Node is the id of the cloud node holding the connection.
	Node string
	// Since is when the connection authenticated (presence).
	Since time.Time
	// Gen is the connection's generation on Node, increasing per
	// connection. A removal names (Node, Gen) and only deletes a route that
	// still carries both, so neither a stale connection on another node nor
	// a same-key replacement on this node removes a live route.
	Gen uint64
}

// Node describes one cloud node as it registers itself.
type Node struct {
	// ID is unique per node process (host, listen address and a random
	// restart epoch by default).
	ID string
	// LinkAddr is the host:port where job reaches the node's link server.
	LinkAddr string
	// PublicAddrs are where clients connect, as URLs:
	// "tcp://host:3101", "ws://host:3102/sub", "wss://host:443/sub".
	PublicAddrs []string
	// Conns is the number of connections the node holds.
	Conns int
	// IPs is the number of distinct client IPs among them.
	IPs int
	// Updated is when the node last registered.
	Updated time.Time
	// Since is when the node's process first registered: cloud sets it
	// once, before the node accepts any client, and registers it
	// unchanged on every renewal. job hands a node it learns of after
	// fanning out room pushes and broadcasts the ones accepted since then
	// (job's catch-up, docs/design.md). Zero: unknown (a node of an
	// earlier release), which job takes as "catch up everything it kept".
	Since time.Time
	// Epoch is random per node process. The router takes an ID registered
	// again with another Epoch for a restart: the routes the previous
	// process left behind are removed, so a stable, explicit ID (a
	// StatefulSet name) does not keep routing to a dead process until its
	// sessions expire. "" registers no epoch.
	Epoch string
}
