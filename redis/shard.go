package redis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgryski/go-rendezvous"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
)

// A router over several Redis instances (Config.Addrs), or over the hash
// tags of one Redis Cluster (Config.Cluster, cluster.go): shards.
//
// Each shard is an independent Redis, or one slot of a Cluster, reached by
// a single-instance Router of its own: its pools, its lookup goroutines,
// its generation. The sharded Router sends each call to the shards it needs,
// in parallel (one round trip each, at the same time: a call's latency is
// its slowest shard's, not the sum), and every Lua script runs on one
// shard over that shard's keys only.
//
// Where a thing lives, by rendezvous (highest random weight) hashing of a
// shard key over the shard names, the address list or the Cluster's tags
// {s0}..{sN-1} (xxhash; adding or removing a shard moves only the things
// of that shard):
//
//   - a connection's route (key_, gen_, nodekeys_): on its key's shard;
//     NodesByKeys asks each key's shard, all of them at once;
//   - a user's routes (mid_ and a copy of each of its connections' key_,
//     gen_ and nodekeys_ entries): on its mid's shard, so that NodesByMids,
//     NodesByMidsOffline and Presence answer from the mid's shard alone,
//     checking each hash field against the copy as a single instance
//     checks it against the original. The put script also writes the
//     mid_ field on the key's shard, where nothing reads it: one hash
//     field per connection whose key and mid are on different shards,
//     expiring with the route. PutSessions writes each session to
//     its key's shard and its mid's shard (one, when they are the same),
//     one script call per shard per batch; RemoveSessions removes it from
//     both (the mid's only when the session carries its Mid), on each
//     conditionally on (node, gen) as on one instance; a key
//     that becomes another user's is removed from the previous user's shard
//     too (the key's shard tells the previous user; a removal that fails
//     is retried at the router's next PutSessions, shard_stale.go);
//   - a revocation (revoked_): on its mid's shard;
//   - the node registry (node_, nodes, epoch_, drained_), room counts
//     (ol_) and room membership (rn_): on every shard, written to all at
//     once (a node writes them per renewal and per room transition: a low
//     rate), so that they stay readable with a shard down. Nodes,
//     NodesByRooms and Drained merge what every shard that answers
//     returns (a node or a room member known to any); RoomCounts reads the
//     first shard (in Addrs order) that answers;
//   - a stream's history (History: its entries and metadata): a user's
//     on the user's shard, a room's on the shard of the stream's name
//     (history_shard.go); an Append is grouped
//     per shard, one round trip per shard, all at once, and a read goes
//     to the stream's shard.
//
// A node restarted with a new epoch (scripts.go) finds its routes on every
// shard, since its registration goes to every shard, and each shard
// removes its own copies.
//
// Generations are per shard (generation.go): a shard that lost its data
// rebuilds on its own, and the lookups it answers fail with
// logic.ErrRouterRebuilding for the window while the others answer as
// usual; NodesRebuilding reports rebuilding only when every shard that
// answered does. Generation returns the shards' generations joined by
// commas, so a cloud node re-registers everything when any shard lost its
// data.
//
// A call is all or nothing over the shards it needs: with one of them down
// or rebuilding, NodesByKeys, NodesByMids, NodesByMidsOffline and Presence
// fail whole (an error naming the shard's address), with no partial
// answer, so a push works only when every target of the call is on a shard
// that answers. Nodes, NodesByRooms, Drained and RoomCounts merge the
// shards that answer and stay readable. Nothing fails fast: a shard that
// does not reply holds every call that reaches it, merged reads included,
// for ReadTimeout or DialTimeout, and anyShard drops the errors of the
// shards left out without logging or counting them. PutNode, Generation
// and RemoveSessions fail while a shard they address is down (a write
// meant for every shard is done on the shards that answer and reported
// failed: its next renewal writes the shard again); PutSessions and
// History.Append write the groups of the shards that answer and fail.
//
// The address list is part of the schema: every process must use the same
// address strings in the same order (RoomCounts prefers the first that
// answers). A process cannot see another's list, so
// changing it takes a coordinated restart: routes written under one list
// are not found by lookups under another, for the things that moved. In a
// Cluster the same holds of ClusterShards and KeyPrefix (the seed
// addresses may differ: any node of the Cluster will do).

// newShardedRouter returns a Router over the shards at cfg.Addrs.
func newShardedRouter(cfg Config) (*Router, error) {
	seen := make(map[string]bool, len(cfg.Addrs))
	for _, addr := range cfg.Addrs {
		if addr == "" {
			return nil, fmt.Errorf("%w: empty Redis address in Addrs", logic.ErrInvalidArgument)
		}
		if seen[addr] {
			return nil, fmt.Errorf("%w: Redis address %s twice in Addrs", logic.ErrInvalidArgument, addr)
		}
		seen[addr] = true
	}
	return newShards(cfg, cfg.Addrs, func(_ int, c Config) (*Router, error) {
		c.Addr = c.Addrs[0]
		c.Addrs = nil
		return NewRouter(c)
	})
}

// newShards returns a Router over one shard per name, each opened by
// open from cfg with Addrs set to its name alone (and its Logger naming
// it).
func newShards(cfg Config, names []string, open func(i int, c Config) (*Router, error)) (*Router, error) {
	r := &Router{cfg: cfg, names: names, index: make(map[string]int, len(names))}
	for i, name := range names {
		r.index[name] = i
		c := cfg
		c.Addrs = []string{name}
		if cfg.Logger != nil {
			c.Logger = cfg.Logger.With("shard", name)
		}
		s, err := open(i, c)
		if err != nil {
			_ = r.Close()
			return nil, err
		}
		r.shards = append(r.shards, s)
	}
	r.ring = rendezvous.New(names, xxhash.Sum64String)
	return r, nil
}

// shardOf returns the index of the shard of shard key k.
func (r *Router) shardOf(k string) int {
	return r.index[r.ring.Lookup(k)]
}

// keyShard is the shard of connection key's route.
func (r *Router) keyShard(key string) int { return r.shardOf(key) }

// midShard is the shard of user mid's routes and revocation.
func (r *Router) midShard(mid int64) int { return r.shardOf(strconv.FormatInt(mid, 10)) }

// shardErr names shard i in err (and, in cluster mode, its master).
func (r *Router) shardErr(i int, err error) error {
	if err == nil {
		return nil
	}
	if r.cl != nil {
		return r.cl.shardErr(r.names[i], r.shards[i].slot, err)
	}
	return fmt.Errorf("redis: shard %s: %w", r.names[i], err)
}

// onShards runs fn for every shard i with want(i), in parallel, and
// returns the errors, indexed by shard, each naming its shard.
func (r *Router) onShards(want func(i int) bool, fn func(i int, s *Router) error) []error {
	errs := make([]error, len(r.shards))
	var wg sync.WaitGroup
	for i, s := range r.shards {
		if want(i) {
			wg.Go(func() { errs[i] = r.shardErr(i, fn(i, s)) })
		}
	}
	wg.Wait()
	return errs
}

// everyShard runs fn on every shard in parallel and fails if any failed
// (naming each that did).
func (r *Router) everyShard(ctx context.Context, fn func(i int, s *Router) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	all := func(int) bool { return true }
	return errors.Join(r.onShards(all, fn)...)
}

// anyShard runs fn on every shard in parallel and reports which answered;
// it fails only when none did.
func (r *Router) anyShard(ctx context.Context, fn func(i int, s *Router) error) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	all := func(int) bool { return true }
	errs := r.onShards(all, fn)
	ok := make([]bool, len(errs))
	answered := false
	for i, err := range errs {
		ok[i] = err == nil
		answered = answered || ok[i]
	}
	if !answered {
		return nil, errors.Join(errs...)
	}
	return ok, nil
}

// group splits items by shard.
func group[T any](n int, items []T, shard func(T) int) [][]T {
	out := make([][]T, n)
	for _, it := range items {
		i := shard(it)
		out[i] = append(out[i], it)
	}
	return out
}

// onGroups runs fn for each shard with a non-empty group, in parallel,
// and fails if any failed.
func onGroups[T any](ctx context.Context, r *Router, groups [][]T, fn func(i int, s *Router, items []T) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	has := func(i int) bool { return len(groups[i]) > 0 }
	return errors.Join(r.onShards(has, func(i int, s *Router) error { return fn(i, s, groups[i]) })...)
}

func (r *Router) shardedStats() Stats {
	var st Stats
	for _, s := range r.shards {
		one := s.Stats()
		st.Lookups += one.Lookups
		st.RoundTrips += one.RoundTrips
	}
	return st
}

// sessionGroups groups sessions by shard: each on its key's shard and,
// when it carries a Mid hashing elsewhere, on its mid's shard too.
func (r *Router) sessionGroups(sessions []imcloud.Session) [][]imcloud.Session {
	groups := make([][]imcloud.Session, len(r.shards))
	for _, s := range sessions {
		k := r.keyShard(s.Key)
		groups[k] = append(groups[k], s)
		if s.Mid != 0 {
			if m := r.midShard(s.Mid); m != k {
				groups[m] = append(groups[m], s)
			}
		}
	}
	return groups
}

// shardedPutSessions writes each session to its key's shard and its
// mid's, then removes from the previous user's shard the routes of keys
// that changed user (staleRoutes keeps the removals that failed for the
// next call).
func (r *Router) shardedPutSessions(ctx context.Context, sessions []imcloud.Session, ttl time.Duration) error {
	groups := r.sessionGroups(sessions)
	var mu sync.Mutex
	var moved []imcloud.Session
	err := onGroups(ctx, r, groups, func(_ int, s *Router, group []imcloud.Session) error {
		m, err := s.putSessionsMoved(ctx, group, ttl)
		mu.Lock()
		moved = append(moved, m...)
		mu.Unlock()
		return err
	})
	// The moves reported by every shard that took its group are cleaned
	// up even when another shard failed: a retry of the put finds the key
	// already moved and would report nothing.
	stale := append(r.stale.take(), r.movedAway(sessions, moved)...)
	return errors.Join(err, r.removeStale(ctx, stale))
}

// putSessionsMoved is PutSessions on one instance returning, as sessions
// (key, node, gen and mid), the previous routes of the keys that were
// another user's.
func (r *Router) putSessionsMoved(ctx context.Context, sessions []imcloud.Session, ttl time.Duration) ([]imcloud.Session, error) {
	replies, err := r.scriptReplies(ctx, putSessionsScript, sessionCalls(r.prefix, sessions, ttl))
	var moved []imcloud.Session // of the calls that ran, even if another failed
	for _, reply := range replies {
		vals, _ := reply.([]any)
		for j := 0; j+1 < len(vals); j += 2 {
			key, _ := vals[j].([]byte)
			entry, _ := vals[j+1].([]byte)
			parts := strings.SplitN(string(entry), "\n", 4)
			if len(parts) < 3 {
				continue
			}
			gen, err1 := strconv.ParseUint(parts[1], 10, 64)
			mid, err2 := strconv.ParseInt(parts[2], 10, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			moved = append(moved, imcloud.Session{Key: string(key), Node: parts[0], Gen: gen, Mid: mid})
		}
	}
	return moved, err
}

// shardedRemoveSessions removes each session from its key's shard and
// its mid's.
func (r *Router) shardedRemoveSessions(ctx context.Context, sessions []imcloud.Session) error {
	groups := r.sessionGroups(sessions)
	return onGroups(ctx, r, groups, func(_ int, s *Router, group []imcloud.Session) error {
		return s.RemoveSessions(ctx, group)
	})
}

// gather asks each shard for its group of items, all at once, and merges
// the maps the shards answer; any shard's failure fails the whole call.
func gather[T any, K comparable, V any](ctx context.Context, r *Router, groups [][]T, ask func(s *Router, group []T) (map[K]V, error)) (map[K]V, error) {
	out := make(map[K]V)
	var mu sync.Mutex
	err := onGroups(ctx, r, groups, func(_ int, s *Router, group []T) error {
		got, err := ask(s, group)
		mu.Lock()
		defer mu.Unlock()
		maps.Copy(out, got)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// shardedNodesByKeys asks each key's shard, all at once.
func (r *Router) shardedNodesByKeys(ctx context.Context, keys []string) (map[string]string, error) {
	return gather(ctx, r, group(len(r.shards), keys, r.keyShard), func(s *Router, g []string) (map[string]string, error) {
		return s.NodesByKeys(ctx, g)
	})
}

// shardedNodesByMids asks each mid's shard, all at once; with
// wantOffline, it lists the positive mids without a route in their order
// in mids, as NodesByMidsOffline.
func (r *Router) shardedNodesByMids(ctx context.Context, mids []int64, wantOffline bool) (map[string]string, []int64, error) {
	offline := make(map[int64]bool)
	var mu sync.Mutex
	out, err := gather(ctx, r, group(len(r.shards), mids, r.midShard), func(s *Router, g []int64) (map[string]string, error) {
		got, off, err := s.NodesByMidsOffline(ctx, g)
		mu.Lock()
		defer mu.Unlock()
		for _, mid := range off {
			offline[mid] = true
		}
		return got, err
	})
	if err != nil {
		return nil, nil, err
	}
	var off []int64
	if wantOffline {
		for _, mid := range mids {
			if offline[mid] {
				off = append(off, mid)
			}
		}
	}
	return out, off, nil
}

// shardedPresence asks each mid's shard, all at once.
func (r *Router) shardedPresence(ctx context.Context, mids []int64) (map[int64][]imcloud.Session, error) {
	return gather(ctx, r, group(len(r.shards), mids, r.midShard), func(s *Router, g []int64) (map[int64][]imcloud.Session, error) {
		return s.Presence(ctx, g)
	})
}

// shardedRevoke writes each user's revocation to its mid's shard.
func (r *Router) shardedRevoke(ctx context.Context, mids []int64, before time.Time, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("%w: revocation ttl %v", logic.ErrInvalidArgument, ttl)
	}
	groups := group(len(r.shards), mids, r.midShard)
	return onGroups(ctx, r, groups, func(_ int, s *Router, group []int64) error {
		return s.Revoke(ctx, group, before, ttl)
	})
}

// shardedRevokedBefore reads each user's revocation from its mid's shard.
func (r *Router) shardedRevokedBefore(ctx context.Context, mids []int64) (map[int64]time.Time, error) {
	groups := group(len(r.shards), mids, r.midShard)
	out := make(map[int64]time.Time)
	var mu sync.Mutex
	err := onGroups(ctx, r, groups, func(_ int, s *Router, group []int64) error {
		got, err := s.RevokedBefore(ctx, group)
		mu.Lock()
		defer mu.Unlock()
		for mid, t := range got {
			out[mid] = t
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// shardedNodes merges the node lists of every shard that answers: a
// node registered on any (its latest registration); rebuilding when every
// shard that answered is.
func (r *Router) shardedNodes(ctx context.Context) ([]imcloud.Node, bool, error) {
	lists := make([][]imcloud.Node, len(r.shards))
	rebuilding := make([]bool, len(r.shards))
	ok, err := r.anyShard(ctx, func(i int, s *Router) (err error) {
		lists[i], rebuilding[i], err = s.NodesRebuilding(ctx)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	byID := make(map[string]imcloud.Node)
	all := true
	for i, list := range lists {
		if !ok[i] {
			continue
		}
		all = all && rebuilding[i]
		for _, n := range list {
			if old, dup := byID[n.ID]; !dup || n.Updated.After(old.Updated) {
				byID[n.ID] = n
			}
		}
	}
	out := make([]imcloud.Node, 0, len(byID))
	for _, n := range byID {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b imcloud.Node) int { return strings.Compare(a.ID, b.ID) })
	return out, all, nil
}

// shardedNodesByRooms merges the rooms' member nodes of every shard that
// answers.
func (r *Router) shardedNodesByRooms(ctx context.Context, rooms []string) (map[string][]string, error) {
	maps := make([]map[string][]string, len(r.shards))
	ok, err := r.anyShard(ctx, func(i int, s *Router) (err error) {
		maps[i], err = s.NodesByRooms(ctx, rooms)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string)
	for i, m := range maps {
		if !ok[i] {
			continue
		}
		for room, ids := range m {
			out[room] = append(out[room], ids...)
		}
	}
	for room, ids := range out {
		slices.Sort(ids)
		out[room] = slices.Compact(ids)
	}
	return out, nil
}

// shardedDrained merges the drain tombstones of every shard that answers.
func (r *Router) shardedDrained(ctx context.Context, ids []string) (map[string]string, error) {
	maps := make([]map[string]string, len(r.shards))
	ok, err := r.anyShard(ctx, func(i int, s *Router) (err error) {
		maps[i], err = s.Drained(ctx, ids)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]string)
	for i, m := range maps {
		if !ok[i] {
			continue
		}
		for id, epoch := range m {
			if _, dup := out[id]; !dup || epoch != "" {
				out[id] = epoch
			}
		}
	}
	return out, nil
}

// shardedRoomCounts reads the room counts of the first shard (in Addrs
// order) that answers.
func (r *Router) shardedRoomCounts(ctx context.Context) (map[string]int32, error) {
	maps := make([]map[string]int32, len(r.shards))
	ok, err := r.anyShard(ctx, func(i int, s *Router) (err error) {
		maps[i], err = s.RoomCounts(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return maps[slices.Index(ok, true)], nil
}

// shardedGeneration is every shard's generation, joined by commas; known
// is split the same way (a list of another length, the address list
// changed, counts as none known).
func (r *Router) shardedGeneration(ctx context.Context, known string) (string, error) {
	parts := strings.Split(known, ",")
	if len(parts) != len(r.shards) {
		parts = make([]string, len(r.shards))
	}
	gens := make([]string, len(r.shards))
	err := r.everyShard(ctx, func(i int, s *Router) (err error) {
		gens[i], err = s.Generation(ctx, parts[i])
		return err
	})
	if err != nil {
		return "", err
	}
	return strings.Join(gens, ","), nil
}
