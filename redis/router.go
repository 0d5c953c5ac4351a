package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgryski/go-rendezvous"
	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
)

var _ logic.Router = (*Router)(nil)

// Config configures a Router. Every zero field means the
// documented default.
type Config struct {
	// Addr is the server's host:port. Default "127.0.0.1:6379".
	Addr string
	// Addrs, with more than one host:port, spreads the router over several
	// independent Redis instances (shards; see shard.go): each session,
	// user and revocation lives on the shard its key or mid hashes to
	// (rendezvous hashing over this list), the node registry and room
	// membership on every shard. Addr must then be empty. One address is
	// the same as Addr. Every other field applies to each shard (PoolSize
	// and Lookups per shard).
	Addrs []string
	// Cluster makes Addr or Addrs seed nodes of one Redis Cluster (any of
	// its nodes; the slot map is read from the first that answers): the
	// router is then sharded over ClusterShards hash tags of that Cluster,
	// each shard one slot on the master that owns it (cluster.go). DB must
	// be 0 and KeyPrefix must not hold '{' or '}'.
	Cluster bool
	// ClusterShards is the number of hash-tag shards of a Cluster router
	// (only with Cluster). More shards spread the load over more masters
	// (a few times the number of masters), but the node registry and room
	// membership are written to every shard and the merged reads ask every
	// shard. Changing it moves routes: a coordinated restart, like the
	// address list. Default 16, at most 1024.
	ClusterShards int
	// Username and Password authenticate (AUTH, or ACL AUTH with a
	// username). Default none.
	Username, Password string
	// DB is the database number. Default 0.
	DB int
	// TLS, when set, makes connections use TLS with this configuration.
	TLS *tls.Config
	// PoolSize bounds the open connections of everything but the key and
	// mid lookups: session and node writes (a cloud node's registrations),
	// the online queries, the node list. A caller waits for a free one (up
	// to PoolWait). Default 32. The lookups have a pool of their own, one
	// connection per lookup goroutine (Lookups, plus one for the small
	// lookups: see SmallLookup), so however many pushes are being
	// resolved, a node's registrations through the same Router always find
	// a connection.
	PoolSize int
	// PoolWait is how long a call waits for a free connection before
	// failing. Default 1s.
	PoolWait time.Duration
	// IdleTimeout closes connections idle this long. Default 4m.
	IdleTimeout time.Duration
	// DialTimeout, ReadTimeout and WriteTimeout bound connecting and each
	// read and write, whatever the caller's ctx. Defaults 2s, 2s, 2s.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// KeyPrefix is prepended to every key, to share a Redis between
	// deployments. Default "": goim's bare key names.
	KeyPrefix string
	// Lookups is the number of goroutines that carry the key and mid
	// lookups larger than SmallLookup to Redis (the small ones have one
	// goroutine of their own); concurrent lookups waiting for one are coalesced into a
	// single round trip (one MGET and one script call), so throughput grows
	// with load without a fixed batching delay. Default 1: one loop makes
	// the biggest batches, and a round trip's fixed cost, many times a
	// looked-up mid's, is what a busy Redis spends most on (BENCHMARKS.md,
	// logic, measures one loop against two). The price: one slow round trip
	// (bounded by PoolWait and ReadTimeout) holds up every lookup behind
	// it. More loops help when one round trip's latency, not Redis's CPU,
	// is the limit (a distant or sometimes slow Redis).
	Lookups int
	// MaxLookupsPerTrip bounds the lookups coalesced into one round
	// trip. Default 256.
	MaxLookupsPerTrip int
	// SmallLookup is the most keys or mids a small lookup has. Small
	// lookups (a push to a few users, the common case) are carried by a
	// goroutine of their own, besides the Lookups goroutines that carry
	// the larger ones, so they never wait behind a round trip of large
	// lookups: with MaxMidsPerCall, Redis answers them between two script
	// calls of a large one. Default 64.
	SmallLookup int
	// MaxMidsPerCall bounds the mids one lookup script call resolves; a
	// round trip with more pipelines several calls. Redis runs a script
	// alone, serving no other client meanwhile, so this bounds how long
	// push lookups of many users hold Redis at a time: the cloud nodes'
	// registrations and heartbeats are served between the calls instead of
	// timing out behind one call of hundreds of thousands of mids.
	// Default 1000.
	MaxMidsPerCall int
	// RebuildWindow is how long after the router lost its data (a new
	// generation, see Generation) lookups that may be incomplete fail with
	// logic.ErrRouterRebuilding and NodesRebuilding reports rebuilding.
	// It must cover the cloud nodes' generation check interval
	// (cloud.Config.StoreCheckInterval, 1 s) plus their re-registration,
	// and be the same in every process (whoever notices the loss first
	// starts the window). Default logic.DefaultRebuildWindow (3 s).
	RebuildWindow time.Duration
	// Logger receives connection problems. Nil is silent.
	Logger *slog.Logger
}

// Router is logic's Router, cloud's SessionStore and job's NodeDirectory
// over Redis (gomodule/redigo), with goim's key schema extended by
// connection generations, a node registry and expiring room counts (see
// scripts.go). Every call is one round trip whatever the
// number of keys, mids or sessions; concurrent lookups share round trips.
// Writes are Lua scripts, atomic on the server.
//
// Safe for concurrent use. Close releases the connections.
type Router struct {
	cfg  Config
	pool *redigo.Pool // writes, queries, node list
	// lookupPool is the lookups' own, one connection per lookup
	// goroutine (Lookups, plus the small lookups' one): a burst of push
	// lookups never takes the connections the writes need.
	lookupPool *redigo.Pool
	prefix     string
	log        *slog.Logger

	lookups chan *lookup // the larger lookups
	small   chan *lookup // lookups of at most SmallLookup keys or mids
	stats   struct{ lookups, roundTrips atomic.Uint64 }
	// seenGen is the last generation this router's lookups and Nodes
	// read ("" before the first): a different one means the data was lost
	// since (see generation.go).
	seenGen atomic.Pointer[string]
	// connLost is when (unix ns) a call last found its connection closed
	// by the server (a restart): idle connections returned to the pool
	// before it are dropped instead of failing one call each.
	connLost atomic.Int64

	quit      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once

	// shards, for a router over several Redis instances (Config.Addrs)
	// or the hash tags of a Redis Cluster (Config.Cluster), are one
	// single-instance Router each, and every method above dispatches to
	// them (shard.go); nil for one instance.
	shards []*Router
	names  []string               // shard names: addresses, or hash tags
	ring   *rendezvous.Rendezvous // shard names, by rendezvous hashing
	stale  staleRoutes            // removals to retry (shard_stale.go)
	index  map[string]int         // shard name -> index in shards

	// cl, in cluster mode, is the slot map the shards share, and slot is
	// this shard's (cluster.go).
	cl   *cluster
	slot uint16
}

// NewRouter returns a router over the Redis at cfg.Addr (or the shards at
// cfg.Addrs, or the Redis Cluster they seed with cfg.Cluster). It does not
// connect until first used; call Ping to check the server.
func NewRouter(cfg Config) (*Router, error) {
	if cfg.Cluster {
		return newClusterRouter(cfg)
	}
	if cfg.ClusterShards != 0 {
		return nil, fmt.Errorf("%w: ClusterShards without Cluster", logic.ErrInvalidArgument)
	}
	if len(cfg.Addrs) > 0 {
		if cfg.Addr != "" {
			return nil, fmt.Errorf("%w: both Addr and Addrs set", logic.ErrInvalidArgument)
		}
		if len(cfg.Addrs) > 1 {
			return newShardedRouter(cfg)
		}
		cfg.Addr, cfg.Addrs = cfg.Addrs[0], nil
	}
	return newInstance(cfg, nil, 0)
}

// withDefaults returns cfg with every zero field set to its default.
func (cfg Config) withDefaults() Config {
	if cfg.Addr == "" && len(cfg.Addrs) == 0 {
		cfg.Addr = "127.0.0.1:6379"
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 32
	}
	if cfg.PoolWait <= 0 {
		cfg.PoolWait = time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 4 * time.Minute
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 2 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 2 * time.Second
	}
	if cfg.Lookups <= 0 {
		cfg.Lookups = 1
	}
	if cfg.MaxLookupsPerTrip <= 0 {
		cfg.MaxLookupsPerTrip = 256
	}
	if cfg.SmallLookup <= 0 {
		cfg.SmallLookup = 64
	}
	if cfg.MaxMidsPerCall <= 0 {
		cfg.MaxMidsPerCall = 1000
	}
	if cfg.RebuildWindow <= 0 {
		cfg.RebuildWindow = logic.DefaultRebuildWindow
	}
	return cfg
}

// dialOptions are the options every connection of cfg is dialed with.
func dialOptions(cfg Config) []redigo.DialOption {
	opts := []redigo.DialOption{
		redigo.DialConnectTimeout(cfg.DialTimeout),
		redigo.DialReadTimeout(cfg.ReadTimeout),
		redigo.DialWriteTimeout(cfg.WriteTimeout),
		redigo.DialDatabase(cfg.DB),
	}
	if cfg.Password != "" {
		opts = append(opts, redigo.DialPassword(cfg.Password))
	}
	if cfg.Username != "" {
		opts = append(opts, redigo.DialUsername(cfg.Username))
	}
	if cfg.TLS != nil {
		opts = append(opts, redigo.DialUseTLS(true), redigo.DialTLSConfig(cfg.TLS))
	}
	return opts
}

// newInstance returns a router over one Redis: the one at cfg.Addr, or,
// when cl is not nil, the master of slot in that Cluster (a shard of a
// Cluster router).
func newInstance(cfg Config, cl *cluster, slot uint16) (*Router, error) {
	cfg = cfg.withDefaults()
	if cfg.DB < 0 {
		return nil, fmt.Errorf("%w: negative Redis DB %d", logic.ErrInvalidArgument, cfg.DB)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Router{
		cfg:     cfg,
		prefix:  cfg.KeyPrefix,
		log:     log,
		lookups: make(chan *lookup, cfg.MaxLookupsPerTrip*cfg.Lookups),
		small:   make(chan *lookup, cfg.MaxLookupsPerTrip),
		quit:    make(chan struct{}),
		cl:      cl,
		slot:    slot,
	}
	opts := dialOptions(cfg)
	dial := func(ctx context.Context) (redigo.Conn, error) {
		return redigo.DialContext(ctx, "tcp", cfg.Addr, opts...)
	}
	if cl != nil {
		dial = func(ctx context.Context) (redigo.Conn, error) { return cl.dial(ctx, slot) }
	}
	r.pool = r.newPool(dial, cfg.PoolSize)
	r.lookupPool = r.newPool(dial, cfg.Lookups+1)
	r.wg.Add(1 + cfg.Lookups)
	go r.lookupLoop(r.small)
	for i := 0; i < cfg.Lookups; i++ {
		go r.lookupLoop(r.lookups)
	}
	return r, nil
}

// Close stops the lookup goroutines and closes the connections. Calls in
// flight fail; later calls return ErrClosed. Idempotent.
func (r *Router) Close() error {
	if r.shards != nil {
		if r.cl != nil {
			r.cl.stop() // ends the slot map's reads (cluster_slots.go)
		}
		for _, s := range r.shards {
			_ = s.Close()
		}
		return nil
	}
	r.closeOnce.Do(func() {
		close(r.quit)
		r.wg.Wait()
		_ = r.pool.Close()
		_ = r.lookupPool.Close()
	})
	return nil
}

// Stats are a Router's counters since NewRouter.
type Stats struct {
	// Lookups is the number of NodesByKeys and NodesByMids calls that
	// reached Redis.
	Lookups uint64
	// RoundTrips is the number of round trips that carried them;
	// Lookups/RoundTrips is how many lookups shared one.
	RoundTrips uint64
}

// Stats returns the router's counters.
func (r *Router) Stats() Stats {
	if r.shards != nil {
		return r.shardedStats()
	}
	return Stats{Lookups: r.stats.lookups.Load(), RoundTrips: r.stats.roundTrips.Load()}
}

// Ping checks that the server answers.
func (r *Router) Ping(ctx context.Context) error {
	if r.shards != nil {
		return r.everyShard(ctx, func(_ int, s *Router) error { return s.Ping(ctx) })
	}
	_, err := r.do(ctx, "PING")
	return err
}

// newPool returns a pool of at most size connections from dial that
// drops idle connections older than the last one the server closed.
func (r *Router) newPool(dial func(context.Context) (redigo.Conn, error), size int) *redigo.Pool {
	return &redigo.Pool{
		DialContext: dial,
		TestOnBorrow: func(_ redigo.Conn, lastUsed time.Time) error {
			if lastUsed.UnixNano() <= r.connLost.Load() {
				return errStaleConn
			}
			return nil
		},
		MaxIdle:     size,
		MaxActive:   size,
		Wait:        true,
		IdleTimeout: r.cfg.IdleTimeout,
	}
}

// conn takes a connection from pool, waiting at most PoolWait.
func (r *Router) conn(ctx context.Context, pool *redigo.Pool) (redigo.Conn, error) {
	select {
	case <-r.quit:
		return nil, logic.ErrClosed
	default:
	}
	wctx, cancel := context.WithTimeout(ctx, r.cfg.PoolWait)
	defer cancel()
	c, err := pool.GetContext(wctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("redis: %s: %w", r.cfg.Addr, err)
	}
	return c, nil
}

func (r *Router) do(ctx context.Context, cmd string, args ...any) (any, error) {
	var reply any
	err := r.withConn(ctx, func(c redigo.Conn) (err error) {
		reply, err = redigo.DoContext(c, ctx, cmd, args...)
		if err != nil {
			return fmt.Errorf("redis: %s: %w", cmd, err)
		}
		return nil
	})
	return reply, err
}

// withConn runs fn on a pooled connection. If the server had closed that
// connection (it restarted), fn runs once more on another: every call
// the router makes is idempotent for the data (reads, and scripts that
// set rather than add), though not for what a script reports (see
// scriptReplies), and the idle connections from before the restart are
// dropped by the pool's TestOnBorrow, so the retry dials afresh. In cluster mode a
// MOVED reply is followed the same way, to the master it names, and a
// call that timed out drops the idle connections and has the slot map
// read again, but is not retried (cluster.go's redirected).
func (r *Router) withConn(ctx context.Context, fn func(c redigo.Conn) error) error {
	return r.withPoolConn(ctx, r.pool, fn)
}

// withPoolConn is withConn on a connection of pool.
func (r *Router) withPoolConn(ctx context.Context, pool *redigo.Pool, fn func(c redigo.Conn) error) error {
	for attempt := 0; ; attempt++ {
		seen := r.cl.version() // cluster mode: the slot map dialed with
		c, err := r.conn(ctx, pool)
		if err != nil {
			return err
		}
		err = fn(c)
		c.Close()
		if err == nil {
			return nil
		}
		retry, drop := r.cl.redirected(ctx, r.slot, seen, err)
		if drop {
			r.connLost.Store(time.Now().UnixNano())
		}
		if !retry || attempt > 0 || ctx.Err() != nil {
			return err
		}
	}
}

// errStaleConn is TestOnBorrow's verdict on an idle connection older than
// the last connection the server closed.
var errStaleConn = errors.New("redis: idle connection from before the server closed one")

// isConnLost reports whether err is the server having closed the
// connection (it restarted or dropped clients), rather than an error
// reply or a timeout.
func isConnLost(err error) bool {
	var re redigo.Error
	if errors.As(err, &re) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// script runs s with args in one round trip: EVALSHA, and EVAL (which
// loads it) when the server does not know it yet (first use, restart).
func (r *Router) script(ctx context.Context, s *redigo.Script, args ...any) (any, error) {
	var reply any
	err := r.withConn(ctx, func(c redigo.Conn) (err error) {
		reply, err = s.DoContext(ctx, c, args...)
		if err != nil {
			return fmt.Errorf("redis: script: %w", err)
		}
		return nil
	})
	return reply, err
}

// sessionChunk bounds the sessions per script call, so one call never
// holds the server for long.
const sessionChunk = 256

// PutSessions records or renews sessions for ttl, in one round trip, with
// what Presence reports of them (Platform, Room and Since, to the second).
func (r *Router) PutSessions(ctx context.Context, sessions []imcloud.Session, ttl time.Duration) error {
	if r.shards != nil {
		return r.shardedPutSessions(ctx, sessions, ttl)
	}
	return r.scripts(ctx, putSessionsScript, sessionCalls(r.prefix, sessions, ttl))
}

// sessionCalls are the putSessionsScript calls that put sessions.
func sessionCalls(prefix string, sessions []imcloud.Session, ttl time.Duration) [][]any {
	ms := ttlMillis(ttl)
	var calls [][]any
	for i := 0; i < len(sessions); i += sessionChunk {
		chunk := sessions[i:min(i+sessionChunk, len(sessions))]
		args := make([]any, 0, 2+5*len(chunk))
		args = append(args, prefix, ms)
		for _, s := range chunk {
			args = append(args, strconv.FormatInt(s.Mid, 10), s.Key, s.Node, strconv.FormatUint(s.Gen, 10), presenceInfo(s))
		}
		calls = append(calls, args)
	}
	return calls
}

// RemoveSessions removes the sessions whose routes still name the same
// Node and Gen, in one round trip.
func (r *Router) RemoveSessions(ctx context.Context, sessions []imcloud.Session) error {
	if r.shards != nil {
		return r.shardedRemoveSessions(ctx, sessions)
	}
	var calls [][]any
	for i := 0; i < len(sessions); i += sessionChunk {
		chunk := sessions[i:min(i+sessionChunk, len(sessions))]
		args := make([]any, 0, 1+3*len(chunk))
		args = append(args, r.prefix)
		for _, s := range chunk {
			args = append(args, s.Key, s.Node, strconv.FormatUint(s.Gen, 10))
		}
		calls = append(calls, args)
	}
	return r.scripts(ctx, removeSessionsScript, calls)
}

func ttlMillis(ttl time.Duration) int64 {
	ms := ttl.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return ms
}
