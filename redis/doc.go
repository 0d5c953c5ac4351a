// Package redis is imcloud's Redis backend (gomodule/redigo): one Router
// value is logic's Router (who is online where), cloud's SessionStore
// (sessions, node registrations, room counts) and job's NodeDirectory (the
// live nodes), by its method set. It is the only imcloud package that
// imports redigo.
//
// Keys follow goim's schema (mid_{mid}, key_{key}, ol_{node}), extended by
// connection generations, a node registry and expiring room counts; see
// scripts.go. The router's own generation tells when Redis lost its data
// and starts a bounded rebuild; see generation.go. Writes are Lua scripts,
// atomic on the server; lookups from many goroutines share round trips.
//
// History (history.go) is the stream history for clustered deployments
// (docs/design.md, recovery): Redis Streams per user or room stream, with a
// metadata hash beside each, appended and read by Lua scripts over a
// Router's connections, each stream on its shard when the Router is
// sharded. A Redis that lost its data shows as a new epoch.
//
// Push lookups never starve a node's own traffic: they run on a pool of
// their own (one connection per Config.Lookups goroutine), apart from the
// writes, queries and node list (Config.PoolSize), so a cloud node
// registering through the Router a logic Pusher resolves with always finds
// a connection; and they reach Redis in script calls of at most
// Config.MaxMidsPerCall mids, so Redis serves the other clients (every
// node's registrations and heartbeats) between the calls instead of after
// one script of hundreds of thousands of mids. Small lookups (a push to a
// few users) have a goroutine of their own, so they do not wait behind a
// round trip of large ones either.
//
// # Several Redis instances
//
// With Config.Addrs, one Router spreads over several independent Redis
// instances (shard.go has the full rules): a connection's route lives on
// its key's shard (NodesByKeys asks each key's shard), a user's routes and
// a copy of its connections' entries on its mid's shard (NodesByMids,
// NodesByMidsOffline and Presence answer from it alone), a revocation on
// its mid's shard; shards are chosen by rendezvous hashing over the
// address list. The node registry, room counts and room membership are
// written to every shard and read from those that answer, so they stay
// readable with a shard down. Calls that need several shards reach them
// in parallel and are all or nothing: a lookup with one key or user on a
// shard that is down or rebuilding fails whole, so pushes work only when
// every target of the call is on a shard that answers; a shard that does
// not reply holds each call that reaches it for ReadTimeout (no fast
// failure). Each shard has its own generation and rebuilds on its own; an
// error from a shard names its address. History spreads by stream: a
// stream's entries and metadata live on one shard (a user's on the
// user's, a room's on the shard of its name), an Append
// reaches each of its streams' shards at once (one round trip each, one
// script call per MaxAppendsPerCall appends), a read its stream's shard;
// a shard that lost its data gives its streams new epochs, and so does
// a change of the address list, for every stream (history_layout.go). Every process must use the same address list, in the same
// order; changing it takes a coordinated restart.
//
// # Redis Cluster
//
// With Config.Cluster, Addr or Addrs are seed nodes of one Redis Cluster
// and the Router is the same sharded router over Config.ClusterShards
// (default 16) hash tags of it (cluster.go): shard i's keys all start
// with KeyPrefix + "{s<i>}", so they are one slot, on the master that
// owns it; every script declares that prefix as its key, so a call never
// leaves the slot. The slot map is read with CLUSTER SLOTS, lazily, and
// again when a slot moves (a MOVED reply, followed: the call is retried
// once) or a master stops answering (a refused or timed-out dial, a
// closed connection, a call timed out: a failover is followed once the
// Cluster has promoted a replica). ASK, TRYAGAIN (a slot being migrated)
// and CLUSTERDOWN fail the call naming the shard. Reads
// go to masters only. DB must be 0. History spreads over the shards by
// stream, as over addresses.
//
// # Concurrency and lifecycle
//
// Every method of Router is safe for concurrent use. NewRouter does not
// connect; Ping checks the server. Close releases the connections; calls
// after it return logic.ErrClosed.
//
//	r, err := redis.NewRouter(redis.Config{Addr: "127.0.0.1:6379"})
//	// or, over three shards:
//	// redis.NewRouter(redis.Config{Addrs: []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"}})
//	if err != nil { ... }
//	defer r.Close()
//	p, err := logic.New(logic.Config{Router: r, Queue: queue})
//	srv, err := cloud.New(cloud.Config{Store: r, ...})
package redis
