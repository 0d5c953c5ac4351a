package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

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
// check the one-slot rule (cluster_test.go). Not every key can be declared: a script finds some of
// them as it runs (a node's keys in nodekeys_, a user's in mid_), so the
// declared key stands for the slot, not for the keys. Everything else is
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
//   - the slot map (the master of each shard's slot) is read with CLUSTER
//     SLOTS from the first node that answers (the node that answered
//     last, the seeds of Addr/Addrs, then the masters of the last map),
//     lazily at the first dial, so NewRouter does not need the Cluster up.
//     One read at a time: callers that want one while it runs wait for
//     it and take its outcome;
//   - a shard's pools dial the master of its slot. A MOVED reply (the slot
//     moved to another master: resharding, or a replica promoted) pins the
//     slot to the master it names and reads the map again; a connection
//     the server closed reads the map again; either way the shard's idle
//     connections are dropped and the call is retried once (withPoolConn).
//     A dial that fails reads the map again and dials once more when the
//     slot's master changed: while a failed master has not been replaced
//     (the Cluster's node timeout) its shards' calls fail;
//   - ASK and TRYAGAIN (the slot is being migrated; a shard's keys are one
//     slot, moved key by key) and CLUSTERDOWN fail the call with an error
//     naming the shard, its slot and master: a shard's calls fail until
//     its slot's migration ends.
//
// Reads go to masters only (no READONLY on replicas).

// clusterSlots is the number of slots of a Redis Cluster.
const clusterSlots = 16384

// defaultClusterShards is Config.ClusterShards's default.
const defaultClusterShards = 16

// newClusterRouter returns a Router over ClusterShards hash-tag shards of
// the Redis Cluster that cfg.Addr or cfg.Addrs seed.
func newClusterRouter(cfg Config) (*Router, error) {
	switch {
	case cfg.DB != 0:
		return nil, fmt.Errorf("%w: Redis DB %d in cluster mode (a Redis Cluster has database 0 only)", logic.ErrInvalidArgument, cfg.DB)
	case strings.ContainsAny(cfg.KeyPrefix, "{}"):
		return nil, fmt.Errorf("%w: key prefix %q holds '{' or '}' in cluster mode (the shards' hash tags follow it)", logic.ErrInvalidArgument, cfg.KeyPrefix)
	case cfg.ClusterShards < 0:
		return nil, fmt.Errorf("%w: ClusterShards %d", logic.ErrInvalidArgument, cfg.ClusterShards)
	case cfg.Addr != "" && len(cfg.Addrs) > 0:
		return nil, fmt.Errorf("%w: both Addr and Addrs set", logic.ErrInvalidArgument)
	}
	if cfg.ClusterShards == 0 {
		cfg.ClusterShards = defaultClusterShards
	}
	seeds := cfg.Addrs
	if len(seeds) == 0 {
		seeds = []string{orDefault(cfg.Addr, "127.0.0.1:6379")}
	}
	for _, s := range seeds {
		if s == "" {
			return nil, fmt.Errorf("%w: empty Redis address in Addrs", logic.ErrInvalidArgument)
		}
	}
	cfg = cfg.withDefaults()
	cl := &cluster{seeds: seeds, opts: dialOptions(cfg), sem: make(chan struct{}, 1)}
	names := make([]string, cfg.ClusterShards)
	for i := range names {
		names[i] = "{s" + strconv.Itoa(i) + "}"
		cl.want = append(cl.want, keySlot(cfg.KeyPrefix+names[i]))
	}
	r, err := newShards(cfg, names, func(i int, c Config) (*Router, error) {
		c.KeyPrefix = cfg.KeyPrefix + names[i]
		c.Addr, c.Addrs, c.Cluster, c.ClusterShards = names[i], nil, false, 0
		slot := cl.want[i]
		s, err := newInstance(c, func(ctx context.Context) (redigo.Conn, error) { return cl.dial(ctx, slot) })
		if err != nil {
			return nil, err
		}
		s.cl, s.slot = cl, slot
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	r.cl = cl
	return r, nil
}

// orDefault returns a, or b when a is empty.
func orDefault(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

// cluster is the slot map the shards of a Cluster router share, and how
// they dial.
type cluster struct {
	seeds []string
	opts  []redigo.DialOption
	want  []uint16      // the shards' slots
	sem   chan struct{} // held by the one map read at a time

	mu      sync.Mutex
	masters map[uint16]string // slot -> master address, for the slots of want
	known   []string          // the masters of the last map read
	last    string            // the node that answered the last read
	ver     uint64            // counts the map's reads and pins
	err     error             // the last read's outcome
}

// version is the slot map's version (0 for a nil cluster: not in cluster
// mode, or no map read yet).
func (cl *cluster) version() uint64 {
	if cl == nil {
		return 0
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.ver
}

// current returns the address of slot's master in the map ("" for none).
func (cl *cluster) current(slot uint16) string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.masters[slot]
}

// master returns the address of slot's master, reading the map first if
// it has none.
func (cl *cluster) master(ctx context.Context, slot uint16) (string, error) {
	cl.mu.Lock()
	addr, ok := cl.masters[slot]
	ver := cl.ver
	cl.mu.Unlock()
	if ok {
		return addr, nil
	}
	if err := cl.refresh(ctx, ver); err != nil {
		return "", err
	}
	cl.mu.Lock()
	addr, ok = cl.masters[slot]
	cl.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("redis: cluster: no master serves slot %d", slot)
	}
	return addr, nil
}

// refresh reads the slot map again, unless it changed since version seen
// (someone read or pinned it meanwhile: that outcome is returned).
func (cl *cluster) refresh(ctx context.Context, seen uint64) error {
	select {
	case cl.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-cl.sem }()
	cl.mu.Lock()
	if cl.ver != seen {
		err := cl.err
		cl.mu.Unlock()
		return err
	}
	nodes := append([]string{cl.last}, cl.seeds...)
	nodes = append(nodes, cl.known...)
	cl.mu.Unlock()

	var errs []error
	tried := make(map[string]bool, len(nodes))
	for _, addr := range nodes {
		if addr == "" || tried[addr] {
			continue
		}
		tried[addr] = true
		masters, known, err := cl.readFrom(ctx, addr)
		if err == nil {
			cl.mu.Lock()
			cl.masters, cl.known, cl.last, cl.err = masters, known, addr, nil
			cl.ver++
			cl.mu.Unlock()
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	err := fmt.Errorf("redis: cluster: no node answered CLUSTER SLOTS: %w", errors.Join(errs...))
	cl.mu.Lock()
	cl.err = err
	cl.ver++
	cl.mu.Unlock()
	return err
}

// readFrom reads the slot map from the node at addr: the masters of the
// shards' slots, and every master's address.
func (cl *cluster) readFrom(ctx context.Context, addr string) (map[uint16]string, []string, error) {
	c, err := redigo.DialContext(ctx, "tcp", addr, cl.opts...)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	ranges, err := redigo.Values(redigo.DoContext(c, ctx, "CLUSTER", "SLOTS"))
	if err != nil {
		return nil, nil, fmt.Errorf("CLUSTER SLOTS: %w", err)
	}
	seedHost, _, _ := net.SplitHostPort(addr)
	masters := make(map[uint16]string, len(cl.want))
	var known []string
	for _, rg := range ranges {
		// start, end, then the master [host, port, id, ...], then replicas.
		v, err := redigo.Values(rg, nil)
		if err != nil || len(v) < 3 {
			return nil, nil, fmt.Errorf("CLUSTER SLOTS: malformed reply")
		}
		start, err1 := redigo.Int(v[0], nil)
		end, err2 := redigo.Int(v[1], nil)
		node, err3 := redigo.Values(v[2], nil)
		if err1 != nil || err2 != nil || err3 != nil || len(node) < 2 {
			return nil, nil, fmt.Errorf("CLUSTER SLOTS: malformed reply")
		}
		host, _ := redigo.String(node[0], nil)
		port, err := redigo.Int(node[1], nil)
		if err != nil || host == "?" {
			continue // a master whose address the node does not know
		}
		if host == "" {
			host = seedHost // Redis's "the node you asked"
		}
		m := net.JoinHostPort(host, strconv.Itoa(port))
		known = append(known, m)
		for _, slot := range cl.want {
			if int(slot) >= start && int(slot) <= end {
				masters[slot] = m
			}
		}
	}
	return masters, known, nil
}

// pin makes addr slot's master (a MOVED reply named it).
func (cl *cluster) pin(slot uint16, addr string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.masters[slot] == addr {
		return
	}
	if cl.masters == nil {
		cl.masters = make(map[uint16]string)
	}
	cl.masters[slot] = addr
	cl.ver++
}

// dial connects to slot's master. When that fails, the map is read again
// and, if it names another master, that one is dialed.
func (cl *cluster) dial(ctx context.Context, slot uint16) (redigo.Conn, error) {
	seen := cl.version()
	addr, err := cl.master(ctx, slot)
	if err != nil {
		return nil, err
	}
	c, err := redigo.DialContext(ctx, "tcp", addr, cl.opts...)
	if err == nil {
		return c, nil
	}
	if cl.refresh(ctx, seen) == nil {
		if again, _ := cl.master(ctx, slot); again != "" && again != addr {
			c, err2 := redigo.DialContext(ctx, "tcp", again, cl.opts...)
			if err2 == nil {
				return c, nil
			}
			addr, err = again, err2
		}
	}
	return nil, fmt.Errorf("redis: cluster master %s: %w", addr, err)
}

// redirected reports whether err, from a call on slot's master through a
// connection dialed under map version seen, sends the call elsewhere: a
// MOVED reply (the slot is pinned to the master it names and the map
// read again) or a connection the server closed (the map read again).
// Then the caller drops the shard's idle connections and retries once.
// Nil-safe: false when not in cluster mode.
func (cl *cluster) redirected(ctx context.Context, slot uint16, seen uint64, err error) bool {
	if cl == nil {
		return false
	}
	if addr, ok := movedTo(err); ok {
		_ = cl.refresh(ctx, seen)
		if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
			cur, _ := cl.master(ctx, slot)
			h, _, _ := net.SplitHostPort(cur)
			addr = net.JoinHostPort(h, port) // Redis's "the node you asked"
		}
		cl.pin(slot, addr)
		return true
	}
	if isConnLost(err) {
		_ = cl.refresh(ctx, seen)
		return true
	}
	return false
}

// movedTo returns the address of a MOVED error reply in err.
func movedTo(err error) (string, bool) {
	var re redigo.Error
	if !errors.As(err, &re) {
		return "", false
	}
	f := strings.Fields(string(re))
	if len(f) != 3 || f[0] != "MOVED" {
		return "", false
	}
	return f[2], true
}

// shardErr names the shard (its hash tag), its slot and master in err,
// and says what an ASK or TRYAGAIN reply means.
func (cl *cluster) shardErr(name string, slot uint16, err error) error {
	master := orDefault(cl.current(slot), "unknown")
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
