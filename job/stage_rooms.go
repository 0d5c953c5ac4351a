package job

import (
	"context"
	"slices"
	"time"

	"github.com/imcloud/imcloud"
)

// roomRoutes is where a batch's room messages go.
type roomRoutes struct {
	// all: to every live node (no Config.Rooms, or the lookup failed).
	all bool
	// nodes is room -> member nodes, unless all; a room without members
	// is absent.
	nodes map[string][]string
}

// lookupRooms finds the member nodes of the batch's rooms with one
// Config.Rooms call. It returns false only if ctx ended first.
//
// The race guarantee: a node writes its membership of a room before it
// answers the join that made it a member (cloud), and the API accepts a
// push by writing it to the queue. The batch was taken from the stage
// after each of its records was added (take), that is after each was
// received from the queue, so this lookup starts after every record of
// the batch was received: a push the API accepted after a join's reply
// finds the membership that reply waited for, even if the joining
// connection is the room's first member on its node. Only removals may
// be stale, which costs a node a push it drops.
//
// A failed lookup (a router that lost its data and rebuilds, a store
// that is down) is not retried, which would hold the partition: the
// batch's room messages fan out to every live node, as without
// Config.Rooms, which loses nothing. Failures are counted and logged
// once per streak.
func (s *stage) lookupRooms(ctx context.Context, batch []staged) (roomRoutes, bool) {
	if s.j.cfg.Rooms == nil {
		return roomRoutes{all: true}, true
	}
	rooms := s.rooms[:0]
	for _, it := range batch {
		if it.m.Kind == imcloud.KindRoom {
			rooms = append(rooms, it.m.Room)
		}
	}
	if len(rooms) > 1 {
		slices.Sort(rooms)
		rooms = slices.Compact(rooms)
	}
	s.rooms = rooms
	if len(rooms) == 0 {
		return roomRoutes{}, true
	}
	nodes, err := s.j.cfg.Rooms.NodesByRooms(ctx, rooms)
	if err != nil {
		if ctx.Err() != nil {
			return roomRoutes{}, false
		}
		s.j.c.roomLookupErrors.Add(1)
		if s.j.stages.roomsFailing.CompareAndSwap(false, true) {
			s.j.log.Warn("job: room member lookup failed; room pushes fan out to every node until it works again",
				"partition", s.partition, "rooms", len(rooms), "err", err)
		}
		return roomRoutes{all: true}, true
	}
	if s.j.stages.roomsFailing.CompareAndSwap(true, false) {
		s.j.log.Info("job: room member lookups going through again", "partition", s.partition)
	}
	return roomRoutes{nodes: nodes}, true
}

// routeRoom queues a room message for the member nodes of its room, as
// keys messages are queued for their node (directory.route: a node the
// job does not know yet waits for a directory read), or for every live
// node if r says so. A member-routed message is not recorded among the
// recent fan-outs: a node's membership is written before its client's
// join is answered, so a node the job learns of late is found by the
// lookup.
func (s *stage) routeRoom(ctx context.Context, it staged, r roomRoutes, now time.Time) {
	if r.all {
		if s.j.cfg.Rooms != nil {
			s.j.c.roomFallbacks.Add(1)
		}
		s.targets = s.j.fanOut(ctx, it.m, it.e, now.UnixNano(), s.targets)
		return
	}
	nodes := r.nodes[it.m.Room]
	if len(nodes) == 0 {
		s.j.c.roomNoMembers.Add(1)
		s.j.log.Debug("job: no member of the room on any node", "id", it.m.ID, "room", it.m.Room)
		return
	}
	// One delivery per member node (the stage's hold keeps the entry
	// open while they are queued).
	it.e.remaining.Add(int32(len(nodes)))
	for _, node := range nodes {
		s.j.dir.route(ctx, node, item{m: it.m, e: it.e, at: now.UnixNano()}, now)
	}
}
