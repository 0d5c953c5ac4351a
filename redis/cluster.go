package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud/logic"
)

// A router over one Redis Cluster (Config.Cluster): the sharded router of
// shard.go whose shards are hash tags of the Cluster instead of addresses.
//
// Shard i is a single-instance Router with the key prefix KeyPrefix +
// "{s<i>}". The first {...} of a key is its hash tag, so every key of shard
// i ("{s3}key_abc", "app:{s3}mid_42", "{s3}{imcloud}:gen") is in the slot
// of tag s<i>, on whichever master owns that slot. Every Lua script
// declares the prefix as its one key (KEYS[1], scripts.go) and builds
// every key it touches from it; the plain commands (the MGET of key_
// entries, of revocations) name keys of one shard: every call is one slot.
// Redis refuses a script that touches a key of a slot its node does not
// serve, but lets a script without a shebang (ours have none, so they load
// on Redis before 7 as well) touch other slots of the same node: the tests
// check the one-slot rule (cluster_test.go). Not every key can be
// declared: a script finds some of them as it runs (a node's keys in
// nodekeys_, a user's in mid_), so the declared key stands for the slot,
// not for the keys. Everything else is
// shard.go's: rendezvous hashing (over the shard names {s0}..{sN-1}), what
// lives where (history by stream included: a stream's keys,
// "{s3}hist:{u:42}", are its shard's, the stream's own tag coming second),
// merged reads, generations per shard. One shard is one slot:
// its whole load is on one master, and more shards (ClusterShards) spread
// better over the masters.
//
// Why this file rather than a cluster client: redigo does not follow
// cluster redirections, its cluster companion (github.com/mna/redisc) is
// not among the modules the project can fetch, and go-redis or rueidis
// would be a second Redis client. A shard needs much less than a general
// cluster client: one slot, known in advance, and calls that are all
// idempotent (withConn). So:
//
//   - the slot map (the master of each shard's slot, cluster_slots.go) is
//     read with CLUSTER SLOTS from the first node that answers, lazily at
//     the first dial, so NewRouter does not need the Cluster up; one read
//     at a time, on its own time limits, the callers waiting for it with
//     their own;
//   - a shard's pools dial the master of its slot. A MOVED reply (the slot
//     moved to another master: resharding, or a replica promoted) pins the
//     slot to the master it names and reads the map again in the
//     background; a connection the server closed reads the map again;
//     either way the shard's idle connections are dropped and the call is
//     retried once (withPoolConn). A dial that fails (refused, or timed
//     out: the host is down) reads the map again and dials once more when
//     the slot's master changed; when the caller's wait ended first, the
//     read goes on and the next call dials the new master. A call that
//     times out (a frozen master) reads the map in the background and
//     drops the shard's idle connections, but is not retried: it may have
//     run. While a failed master has not been replaced (the Cluster's node
//     timeout) its shards' calls fail;
//   - ASK and TRYAGAIN (the slot is being migrated; a shard's keys are one
//     slot, moved key by key) and CLUSTERDOWN fail the call with an error
//     naming the shard, its slot and master. A script call declares the
//     shard's prefix as its key, a key that never exists, so every script
//     call of a shard gets ASK as soon as its slot is MIGRATING, even
//     while all its keys are still on the source: a shard's script calls
//     fail for the whole migration of its slot.
//
// Reads go to masters only (no READONLY on replicas).

// clusterSlots is the number of slots of a Redis Cluster.
const clusterSlots = 16384

// defaultClusterShards is Config.ClusterShards's default.
const defaultClusterShards = 16

// maxClusterShards bounds Config.ClusterShards: each shard has two pools
// and Lookups+1 goroutines, and the registry is written to every shard.
const maxClusterShards = 1024

// newClusterRouter returns a Router over ClusterShards hash-tag shards of
// the Redis Cluster that cfg.Addr or cfg.Addrs seed.
func newClusterRouter(cfg Config) (*Router, error) {
	switch {
	case cfg.DB != 0:
		return nil, fmt.Errorf("%w: Redis DB %d in cluster mode (a Redis Cluster has database 0 only)",
			logic.ErrInvalidArgument, cfg.DB)
	case strings.ContainsAny(cfg.KeyPrefix, "{}"):
		return nil, fmt.Errorf("%w: key prefix %q holds '{' or '}' in cluster mode (the shards' hash tags follow it)",
			logic.ErrInvalidArgument, cfg.KeyPrefix)
	case cfg.ClusterShards < 0 || cfg.ClusterShards > maxClusterShards:
		return nil, fmt.Errorf("%w: ClusterShards %d (1 to %d)", logic.ErrInvalidArgument, cfg.ClusterShards, maxClusterShards)
	case cfg.Addr != "" && len(cfg.Addrs) > 0:
		return nil, fmt.Errorf("%w: both Addr and Addrs set", logic.ErrInvalidArgument)
	}
	if cfg.ClusterShards == 0 {
		cfg.ClusterShards = defaultClusterShards
	}
	seeds := cfg.Addrs
	if len(seeds) == 0 {
		seeds = []string{cmp.Or(cfg.Addr, "127.0.0.1:6379")}
	}
	for _, s := range seeds {
		if s == "" {
			return nil, fmt.Errorf("%w: empty Redis address in Addrs", logic.ErrInvalidArgument)
		}
	}
	cfg = cfg.withDefaults()
	cl := &cluster{seeds: seeds, opts: dialOptions(cfg), nodeTimeout: cfg.DialTimeout + cfg.ReadTimeout,
		pinned: make(map[uint16]uint64), failed: make(map[string]bool)}
	cl.done, cl.stop = context.WithCancel(context.Background())
	names := make([]string, cfg.ClusterShards)
	for i := range names {
		names[i] = "{s" + strconv.Itoa(i) + "}"
		cl.want = append(cl.want, keySlot(cfg.KeyPrefix+names[i]))
	}
	r, err := newShards(cfg, names, func(i int, c Config) (*Router, error) {
		c.KeyPrefix = cfg.KeyPrefix + names[i]
		c.Addr, c.Addrs, c.Cluster, c.ClusterShards = names[i], nil, false, 0
		return newInstance(c, cl, cl.want[i])
	})
	if err != nil {
		return nil, err
	}
	r.cl = cl
	return r, nil
}

// dial connects to slot's master. When that fails (refused, or timed
// out), the map is read again and, if it names another master, that one
// is dialed; when ctx ends first, the read goes on for the next dial.
func (cl *cluster) dial(ctx context.Context, slot uint16) (redigo.Conn, error) {
	addr, err := cl.master(ctx, slot)
	if err != nil {
		return nil, err
	}
	seen := cl.version()
	c, err := redigo.DialContext(ctx, "tcp", addr, cl.opts...)
	if err == nil {
		return c, nil
	}
	if cl.refresh(ctx, seen) == nil {
		if again := cl.current(slot); again != "" && again != addr {
			c, err2 := redigo.DialContext(ctx, "tcp", again, cl.opts...)
			if err2 == nil {
				return c, nil
			}
			addr, err = again, err2
		}
	}
	return nil, fmt.Errorf("redis: cluster master %s: %w", addr, err)
}

// redirected reports what err, from a call on slot's master through a
// connection dialed under map version seen, means for the call: retry
// (once, on another connection) and drop (the shard's idle connections).
//   - a MOVED reply: the slot is pinned to the master it names and the
//     map read again in the background; retry and drop;
//   - a connection the server closed: the map is read again (the caller
//     waits for it); retry and drop;
//   - a timeout (the master may be frozen, or gone with its host): the
//     map is read again in the background; drop, but no retry (the call
//     may have run).
//
// Nil-safe: not in cluster mode, a closed connection is retried and
// dropped, and nothing else.
func (cl *cluster) redirected(ctx context.Context, slot uint16, seen uint64, err error) (retry, drop bool) {
	lost := isConnLost(err)
	if cl == nil {
		return lost, lost
	}
	if addr, ok := movedTo(err); ok {
		if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
			h, _, _ := net.SplitHostPort(cl.current(slot))
			addr = net.JoinHostPort(h, port) // Redis's "the node you asked"
		}
		cl.moved(slot, addr)
		return true, true
	}
	if lost {
		_ = cl.refresh(ctx, seen)
		return true, true
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		_, _ = cl.startRead(seen)
		return false, true
	}
	return false, false
}

// movedTo returns the address of a MOVED error reply in err ("MOVED
// <slot> <host>:<port>", the host an unbracketed IPv6 address or empty
// for the node asked).
func movedTo(err error) (string, bool) {
	var re redigo.Error
	if !errors.As(err, &re) {
		return "", false
	}
	f := strings.Fields(string(re))
	if len(f) != 3 || f[0] != "MOVED" {
		return "", false
	}
	i := strings.LastIndexByte(f[2], ':')
	if i < 0 {
		return "", false
	}
	return net.JoinHostPort(f[2][:i], f[2][i+1:]), true
}

// shardErr names the shard (its hash tag), its slot and master in err,
// and says what an ASK or TRYAGAIN reply means.
func (cl *cluster) shardErr(name string, slot uint16, err error) error {
	master := cmp.Or(cl.current(slot), "unknown")
	var re redigo.Error
	if errors.As(err, &re) && (strings.HasPrefix(string(re), "ASK ") || strings.HasPrefix(string(re), "TRYAGAIN")) {
		err = fmt.Errorf("%w (the slot is being migrated: the shard's calls fail until the migration ends)", err)
	}
	return fmt.Errorf("redis: shard %s (slot %d, master %s): %w", name, slot, master, err)
}

// keySlot is Redis Cluster's slot of key: CRC16 of its hash tag (the part
// between the first '{' and the next '}', when not empty) or of the whole
// key, modulo 16384.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % clusterSlots
}

// crc16 is the CRC16 Redis Cluster hashes keys with (XMODEM: polynomial
// 0x1021, initial value 0, no reflection). Bitwise, without a table: it
// runs once per shard, when the router is made. The standard library has
// no CRC16, and it is not worth a dependency.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
