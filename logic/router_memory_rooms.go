package logic

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Room membership: which nodes have at least one member in a room, so that
// job sends a room push only to them (cloud.RoomStore writes it, job.Rooms
// reads it; docs/design.md, rooms). The memory router keeps, per room, each
// member node's expiry; a membership is visible while it has not expired
// and its node's registration is live (so RemoveNode or a lapsed
// registration hides it at once), and is reclaimed by the sweep.

// PutRooms records for ttl that node has at least one member in each room
// of joined (a renewal overwrites the expiry) and that it has none in each
// room of left. A room in both is joined: a stale membership only costs the
// node a push it drops, a missing one would lose pushes. Empty room names
// are ignored; an empty node id is an ErrInvalidArgument.
func (r *MemoryRouter) PutRooms(ctx context.Context, node string, joined, left []string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if node == "" {
		return fmt.Errorf("%w: room membership without a node id", ErrInvalidArgument)
	}
	if len(joined) == 0 && len(left) == 0 {
		return nil
	}
	now := r.now()
	exp := now.Add(ttl)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, room := range left {
		if nodes := r.rooms[room]; nodes != nil {
			delete(nodes, node)
			if len(nodes) == 0 {
				delete(r.rooms, room)
			}
		}
	}
	for _, room := range joined {
		if room == "" {
			continue
		}
		nodes := r.rooms[room]
		if nodes == nil {
			nodes = make(map[string]time.Time, 1)
			r.rooms[room] = nodes
		}
		nodes[node] = exp
	}
	r.maybeSweep(now)
	return nil
}

// NodesByRooms returns, for each of rooms with members, the ids (sorted)
// of the live nodes whose membership has not expired; a room without
// members is absent. Within the rebuild window after a Wipe it fails with
// ErrRouterRebuilding: a room's members may be on nodes that have not
// written their rooms again yet.
func (r *MemoryRouter) NodesByRooms(ctx context.Context, rooms []string) (map[string][]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := r.now()
	out := make(map[string][]string)
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(rooms) > 0 && r.rebuilding(now) {
		return nil, ErrRouterRebuilding
	}
	for _, room := range rooms {
		var ids []string
		for id, exp := range r.rooms[room] {
			if n, ok := r.nodes[id]; ok && now.Before(exp) && now.Before(n.expires) {
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			slices.Sort(ids)
			out[room] = ids
		}
	}
	return out, nil
}

// sweepRooms drops expired memberships. r.mu is held for writing.
func (r *MemoryRouter) sweepRooms(now time.Time) {
	for room, nodes := range r.rooms {
		for id, exp := range nodes {
			if !now.Before(exp) {
				delete(nodes, id)
			}
		}
		if len(nodes) == 0 {
			delete(r.rooms, room)
		}
	}
}
