package logic

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sort"
	"sync"
	"time"

	"github.com/imcloud/imcloud"
)

var _ Router = (*MemoryRouter)(nil)

// MemoryRouterConfig configures a MemoryRouter. The zero value is ready.
type MemoryRouterConfig struct {
	// Now is the clock; nil means time.Now. Tests move it to expire
	// entries without sleeping.
	Now func() time.Time
	// RebuildWindow is how long lookups that may be incomplete fail with
	// ErrRouterRebuilding after Wipe. Default 3 s, as the Redis router's.
	RebuildWindow time.Duration
}

// DefaultRebuildWindow is the routers' default rebuild window: how long
// after a router lost its data (a new generation) lookups that may be
// incomplete fail with ErrRouterRebuilding. It covers a cloud node's
// generation check (every second by default) and its re-registration of
// every session in pipelined batches (BENCHMARKS.md, cloud).
const DefaultRebuildWindow = 3 * time.Second

// MemoryRouter is the in-process Router, the embedded default for a
// single-process deployment. It is also the session and node store cloud
// writes to (cloud.SessionStore) and the node directory job reads
// (job.NodeDirectory), by its method set.
//
// Entries expire like the Redis router's: a session, node or room-count
// report not renewed within its ttl disappears. Expired entries are
// invisible at once and their memory is reclaimed by a sweep that runs at
// most once a second, piggybacked on writes. All methods are safe for
// concurrent use and never block on I/O; ctx is accepted for the contract
// and checked once on entry.
//
// It never loses its data on its own; Wipe simulates a Redis that came back
// empty (for tests of the rebuild): a new generation and a rebuild window,
// as the Redis router has after a restart or a FLUSHALL.
type MemoryRouter struct {
	now    func() time.Time
	window time.Duration

	mu        sync.RWMutex
	keys      map[string]memRoute             // connection key -> route
	mids      map[int64]map[string]struct{}   // mid -> its keys
	nodes     map[string]memNode              // node id -> registration
	counts    map[string]memCounts            // node id -> room counts
	epochs    map[string]string               // node id -> epoch last registered
	rooms     map[string]map[string]time.Time // room -> node id -> membership expiry
	revoked   map[int64]memRevocation         // mid -> revocation (router_memory_revoke.go)
	drained   map[string]memDrained           // node id -> drain tombstone (router_memory_drained.go)
	lastSweep time.Time
	gen       string    // changes on Wipe
	rebuildTo time.Time // end of the rebuild window after a Wipe
}

type memRoute struct {
	mid     int64
	node    string
	gen     uint64
	expires time.Time
	// platform, room (the primary room) and since are what Presence
	// reports (router_memory_presence.go).
	platform, room string
	since          time.Time
}

type memNode struct {
	node    imcloud.Node
	expires time.Time
}

type memCounts struct {
	counts  map[string]int32
	expires time.Time
}

// NewMemoryRouter returns an empty MemoryRouter.
func NewMemoryRouter(cfg MemoryRouterConfig) *MemoryRouter {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	window := cfg.RebuildWindow
	if window <= 0 {
		window = DefaultRebuildWindow
	}
	r := &MemoryRouter{now: now, window: window}
	r.reset()
	return r
}

// reset empties the router under a new generation. r.mu is held, or r is
// not shared yet.
func (r *MemoryRouter) reset() {
	r.keys = make(map[string]memRoute)
	r.mids = make(map[int64]map[string]struct{})
	r.nodes = make(map[string]memNode)
	r.counts = make(map[string]memCounts)
	r.epochs = make(map[string]string)
	r.rooms = make(map[string]map[string]time.Time)
	r.revoked = make(map[int64]memRevocation)
	r.drained = make(map[string]memDrained)
	var b [8]byte
	_, _ = rand.Read(b[:])
	r.gen = hex.EncodeToString(b[:])
}

// Wipe drops every session, node, room count and room membership at
// once, as a Redis that restarted empty or was flushed, and starts a new
// generation: lookups that may be incomplete fail with
// ErrRouterRebuilding for the rebuild window, NodesRebuilding reports
// rebuilding, and Generation returns a new value, so cloud nodes
// re-register everything.
func (r *MemoryRouter) Wipe() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reset()
	r.rebuildTo = r.now().Add(r.window)
}

// Generation returns the router's generation: it changes when the router
// loses its data (Wipe). known is not needed here: the router knows its
// own wipes.
func (r *MemoryRouter) Generation(ctx context.Context, known string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.gen, nil
}

// rebuilding reports whether now is within the rebuild window. r.mu is
// held.
func (r *MemoryRouter) rebuilding(now time.Time) bool {
	return now.Before(r.rebuildTo)
}

// NodesByKeys returns key -> node id for the keys that are online. Within
// the rebuild window after a Wipe, a key without a route fails the call
// with ErrRouterRebuilding.
func (r *MemoryRouter) NodesByKeys(ctx context.Context, keys []string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := r.now()
	out := make(map[string]string, len(keys))
	r.mu.RLock()
	defer r.mu.RUnlock()
	missing := false
	for _, k := range keys {
		if rt, ok := r.keys[k]; ok && now.Before(rt.expires) {
			out[k] = rt.node
		} else {
			missing = true
		}
	}
	if missing && r.rebuilding(now) {
		return nil, ErrRouterRebuilding
	}
	return out, nil
}

// NodesByMids returns key -> node id for every online connection of mids.
// Within the rebuild window after a Wipe it fails with
// ErrRouterRebuilding: a user's connections may be on nodes that have not
// registered again yet.
func (r *MemoryRouter) NodesByMids(ctx context.Context, mids []int64) (map[string]string, error) {
	out, _, err := r.nodesByMids(ctx, mids, false)
	return out, err
}

// PutSessions records or renews sessions for ttl.
func (r *MemoryRouter) PutSessions(ctx context.Context, sessions []imcloud.Session, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := r.now()
	exp := now.Add(ttl)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range sessions {
		if old, ok := r.keys[s.Key]; ok && old.mid != s.Mid {
			r.unlinkMid(old.mid, s.Key)
		}
		r.keys[s.Key] = memRoute{mid: s.Mid, node: s.Node, gen: s.Gen, expires: exp,
			platform: s.Platform, room: s.Room, since: s.Since}
		if s.Mid != 0 {
			set := r.mids[s.Mid]
			if set == nil {
				set = make(map[string]struct{}, 1)
				r.mids[s.Mid] = set
			}
			set[s.Key] = struct{}{}
		}
	}
	r.maybeSweep(now)
	return nil
}

// RemoveSessions removes the sessions whose routes still name the same
// Node and Gen.
func (r *MemoryRouter) RemoveSessions(ctx context.Context, sessions []imcloud.Session) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range sessions {
		rt, ok := r.keys[s.Key]
		if !ok || rt.node != s.Node || rt.gen != s.Gen {
			continue
		}
		delete(r.keys, s.Key)
		r.unlinkMid(rt.mid, s.Key)
	}
	return nil
}

func (r *MemoryRouter) unlinkMid(mid int64, key string) {
	if set := r.mids[mid]; set != nil {
		delete(set, key)
		if len(set) == 0 {
			delete(r.mids, mid)
		}
	}
}

// PutNode registers or renews node for ttl. Updated is set to now when
// zero. A node id registered before with another Epoch is a restarted
// process: every route still naming the id (its predecessor's) is removed
// first, as the Redis router does. That scans every route, once per
// restart, never on renewals.
func (r *MemoryRouter) PutNode(ctx context.Context, node imcloud.Node, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := r.now()
	if node.Updated.IsZero() {
		node.Updated = now
	}
	node.PublicAddrs = append([]string(nil), node.PublicAddrs...)
	r.mu.Lock()
	defer r.mu.Unlock()
	if node.Epoch != "" {
		if old, ok := r.epochs[node.ID]; ok && old != node.Epoch {
			for k, rt := range r.keys {
				if rt.node == node.ID {
					delete(r.keys, k)
					r.unlinkMid(rt.mid, k)
				}
			}
		}
		r.epochs[node.ID] = node.Epoch
	}
	r.nodes[node.ID] = memNode{node: node, expires: now.Add(ttl)}
	r.maybeSweep(now)
	return nil
}

// RemoveNode deregisters the node and drops its room counts at once,
// and remembers the drain for DrainedTTL (Drained).
func (r *MemoryRouter) RemoveNode(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tombstoneLocked(id, r.now())
	delete(r.nodes, id)
	delete(r.counts, id)
	return nil
}

// Nodes returns the live nodes, ordered by id.
func (r *MemoryRouter) Nodes(ctx context.Context) ([]imcloud.Node, error) {
	nodes, _, err := r.NodesRebuilding(ctx)
	return nodes, err
}

// NodesRebuilding returns the live nodes, ordered by id, and whether the
// router is within the rebuild window after a Wipe (a node missing from
// the list may not have registered again yet).
func (r *MemoryRouter) NodesRebuilding(ctx context.Context) ([]imcloud.Node, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	now := r.now()
	r.mu.RLock()
	rebuilding := r.rebuilding(now)
	out := make([]imcloud.Node, 0, len(r.nodes))
	for _, n := range r.nodes {
		if now.Before(n.expires) {
			nd := n.node
			nd.PublicAddrs = append([]string(nil), nd.PublicAddrs...)
			out = append(out, nd)
		}
	}
	r.mu.RUnlock()
	sortNodes(out)
	return out, rebuilding, nil
}

// PutRoomCounts replaces node's room counts for ttl.
func (r *MemoryRouter) PutRoomCounts(ctx context.Context, node string, counts map[string]int32, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := r.now()
	cp := make(map[string]int32, len(counts))
	for k, v := range counts {
		cp[k] = v
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[node] = memCounts{counts: cp, expires: now.Add(ttl)}
	r.maybeSweep(now)
	return nil
}

// RoomCounts returns the sum of every unexpired node report per room.
func (r *MemoryRouter) RoomCounts(ctx context.Context) (map[string]int32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := r.now()
	out := make(map[string]int32)
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, c := range r.counts {
		if !now.Before(c.expires) {
			continue
		}
		for room, n := range c.counts {
			out[room] += n
		}
	}
	for room, n := range out {
		if n == 0 {
			delete(out, room)
		}
	}
	return out, nil
}

func sortNodes(nodes []imcloud.Node) {
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
}

// maybeSweep drops expired entries, at most once a second. r.mu is held
// for writing.
func (r *MemoryRouter) maybeSweep(now time.Time) {
	if now.Sub(r.lastSweep) < time.Second {
		return
	}
	r.lastSweep = now
	routed := make(map[string]bool)
	for k, rt := range r.keys {
		if !now.Before(rt.expires) {
			delete(r.keys, k)
			r.unlinkMid(rt.mid, k)
		} else {
			routed[rt.node] = true
		}
	}
	for id, n := range r.nodes {
		if !now.Before(n.expires) {
			delete(r.nodes, id)
		}
	}
	// An epoch is kept while the node is registered or routes name it
	// (a restart must still find them).
	for id := range r.epochs {
		if _, ok := r.nodes[id]; !ok && !routed[id] {
			delete(r.epochs, id)
		}
	}
	for id, c := range r.counts {
		if !now.Before(c.expires) {
			delete(r.counts, id)
		}
	}
	r.sweepRooms(now)
	r.sweepRevoked(now)
	r.sweepDrained(now)
}
