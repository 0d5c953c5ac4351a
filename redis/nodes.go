package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
)

// The node registry (PutNode, RemoveNode, Nodes) and the room counts
// (PutRoomCounts, RoomCounts); the scripts are in scripts.go.

// nodeRecord is a node's registration as stored in Redis.
type nodeRecord struct {
	ID          string   `json:"id"`
	LinkAddr    string   `json:"link_addr,omitempty"`
	PublicAddrs []string `json:"public_addrs,omitempty"`
	Conns       int      `json:"conns"`
	IPs         int      `json:"ips"`
	Updated     int64    `json:"updated"` // unix nanoseconds
	Epoch       string   `json:"epoch,omitempty"`
	Since       int64    `json:"since,omitempty"` // unix nanoseconds, 0 for none
}

// PutNode registers or renews node for ttl. Updated is set to now when
// zero. A node id registered before with another Epoch is a restarted
// process: its predecessor's routes are removed first (see scripts.go).
func (r *Router) PutNode(ctx context.Context, node imcloud.Node, ttl time.Duration) error {
	if r.shards != nil {
		return r.everyShard(ctx, func(_ int, s *Router) error { return s.PutNode(ctx, node, ttl) })
	}
	if node.Updated.IsZero() {
		node.Updated = time.Now()
	}
	b, err := json.Marshal(nodeRecord{node.ID, node.LinkAddr, node.PublicAddrs, node.Conns, node.IPs,
		node.Updated.UnixNano(), node.Epoch, unixNanos(node.Since)})
	if err != nil {
		return err
	}
	n, err := redigo.Int(r.script(ctx, putNodeScript, r.prefix, node.ID, ttlMillis(ttl), b, node.Epoch))
	if n > 0 {
		r.log.Info("redis: node restarted with a new epoch; removed its previous process's routes",
			"node", node.ID, "routes", n)
	}
	return err
}

// unixNanos is t in Unix nanoseconds, 0 for the zero time (whose
// UnixNano is out of range).
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNanos is unixNanos's inverse.
func fromUnixNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// RemoveNode deregisters the node and drops its room counts, and
// remembers the drain for logic.DrainedTTL (Drained).
func (r *Router) RemoveNode(ctx context.Context, id string) error {
	if r.shards != nil {
		return r.everyShard(ctx, func(_ int, s *Router) error { return s.RemoveNode(ctx, id) })
	}
	_, err := r.script(ctx, removeNodeScript, r.prefix, id, logic.DrainedTTL.Milliseconds())
	return err
}

// Nodes returns the live nodes, ordered by id.
func (r *Router) Nodes(ctx context.Context) ([]imcloud.Node, error) {
	nodes, _, err := r.NodesRebuilding(ctx)
	return nodes, err
}

// NodesRebuilding returns the live nodes, ordered by id, and whether the
// router is rebuilding after losing its data (see Generation): then a node
// missing from the list may simply not have registered again yet. The
// list and the state come from one round trip (job.RebuildingDirectory).
func (r *Router) NodesRebuilding(ctx context.Context) ([]imcloud.Node, bool, error) {
	if r.shards != nil {
		return r.shardedNodes(ctx)
	}
	vals, err := redigo.Values(r.script(ctx, nodesScript, r.prefix))
	if err != nil {
		return nil, false, err
	}
	if len(vals) < 2 {
		return nil, false, fmt.Errorf("%w: malformed nodes reply", logic.ErrRouter)
	}
	gen, _ := vals[0].([]byte)
	marker, _ := vals[1].([]byte)
	rebuilding, err := r.observe(ctx, gen, marker)
	if err != nil {
		return nil, false, err
	}
	out := make([]imcloud.Node, 0, len(vals)-2)
	for _, v := range vals[2:] {
		b, _ := v.([]byte)
		var rec nodeRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			r.log.Warn("redis: undecodable node registration in Redis", "err", err)
			continue
		}
		out = append(out, imcloud.Node{ID: rec.ID, LinkAddr: rec.LinkAddr, PublicAddrs: rec.PublicAddrs,
			Conns: rec.Conns, IPs: rec.IPs, Updated: time.Unix(0, rec.Updated), Epoch: rec.Epoch,
			Since: fromUnixNanos(rec.Since)})
	}
	slices.SortFunc(out, func(a, b imcloud.Node) int { return strings.Compare(a.ID, b.ID) })
	return out, rebuilding, nil
}

// PutRoomCounts replaces node's room counts for ttl.
func (r *Router) PutRoomCounts(ctx context.Context, node string, counts map[string]int32, ttl time.Duration) error {
	if r.shards != nil {
		return r.everyShard(ctx, func(_ int, s *Router) error { return s.PutRoomCounts(ctx, node, counts, ttl) })
	}
	args := make([]any, 0, 3+2*len(counts))
	args = append(args, r.prefix, node, ttlMillis(ttl))
	for room, n := range counts {
		args = append(args, room, n)
	}
	_, err := r.script(ctx, putCountsScript, args...)
	return err
}

// RoomCounts returns the sum of every unexpired node report per room, in
// one round trip.
func (r *Router) RoomCounts(ctx context.Context) (map[string]int32, error) {
	if r.shards != nil {
		return r.shardedRoomCounts(ctx)
	}
	vals, err := redigo.Values(r.script(ctx, roomCountsScript, r.prefix))
	if err != nil {
		return nil, err
	}
	out := make(map[string]int32, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		room, err1 := redigo.String(vals[i], nil)
		n, err2 := redigo.Int64(vals[i+1], nil)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("redis: room counts: unexpected reply")
		}
		out[room] = int32(n)
	}
	return out, nil
}
