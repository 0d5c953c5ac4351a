package job

import (
	"context"
	"errors"
	"maps"
	"strings"
	"time"

	"github.com/imcloud/imcloud"
)

// Kicks (imcloud.KindKick) close connections; they are never pushes, never
// appended to a history and never fanned out to every node.
//
// A kick by keys (Node and Keys) is queued for its node as a keys message
// is (directory.route): behind the messages for that node received before
// it, waiting for a directory read when the node is not known yet.
//
// A kick by mids goes through its partition's stage as a mids message
// does: in offset order with the pushes to the same users (logic keys
// both by the user's stream), its users' connections looked up with the
// batch's (Config.Users), then one kick by keys per node of those
// connections, queued like the keys messages of the pushes around it. So
// a user's pushes published before the kick reach the user's node before
// it, and those published after it behind it. Without Config.Users it is
// set aside through Config.DeadLetter, as a mids message is. A kick that
// carries both mids and keys is a kick by mids.
//
// Kicks are counted in Stats.Kicks when routed (by mids: also when the
// users had no connection, which leaves nothing to close).
//
// A kick is a message of major version 3. A node of an older release
// refuses a delivery holding one with the decoding error
// imcloud.ErrNewerVersion; job then delivers the rest around it and skips
// the kick (Stats.Skipped, logged), rather than retry the node's queue
// forever: the node's pushes go on, its kicks are lost until it is
// upgraded.

// toUsers reports whether m targets users whose connections job resolves:
// a mids message, or a kick by mids.
func toUsers(m *imcloud.Message) bool {
	switch m.Kind {
	case imcloud.KindMids:
		return true
	case imcloud.KindKick:
		return len(m.Mids) > 0
	}
	return false
}

// routeKick queues a kick by mids, its users resolved in routes, as one
// kick by keys per node of their connections.
func (s *stage) routeKick(ctx context.Context, it staged, routes map[int64]map[string]string, now time.Time) {
	s.j.c.kicks.Add(1)
	conns := make(map[string]string)
	for _, mid := range it.m.Mids {
		maps.Copy(conns, routes[mid])
	}
	m := it.m
	sent := eachNode(conns, func(node string, keys []string) {
		msg := &imcloud.Message{ID: m.ID, Kind: imcloud.KindKick, Node: node, Keys: keys,
			Reason: m.Reason, Accepted: m.Accepted, Expires: m.Expires}
		it.e.remaining.Add(1)
		s.j.dir.route(ctx, node, item{m: msg, e: it.e, at: now.UnixNano()}, now)
	})
	if !sent {
		s.j.log.Debug("job: no connection for the users of a kick", "id", m.ID, "users", len(m.Mids))
	}
}

// refusedAsNewer reports whether err is a node's refusal of a delivery
// because a message of it has a newer major version than the node reads
// (the node's decoding error, imcloud.ErrNewerVersion, as the ack's text).
func refusedAsNewer(err error) bool {
	return errors.Is(err, ErrRejected) && strings.Contains(err.Error(), imcloud.ErrNewerVersion.Error())
}
