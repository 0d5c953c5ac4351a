package cloud

import (
	"cmp"
	"time"

	"github.com/imcloud/imcloud"
)

// Kicks close connections on purpose (docs/design.md, control plane): a
// kick by keys (imcloud.KindKick) from the queue, which job resolved from
// a kick by mids or logic published by keys, and the library calls Kick
// and KickMid. A kicked connection
//
//   - leaves its bucket and its rooms at once: no push delivered after the
//     kick was applied finds it, and its queue refuses any push that holds
//     it already;
//   - has its queued frames written first, in order (the user's pushes
//     before the kick arrive), then op 6 {"reason":..,"reconnect_ms":0,"kick":true}
//     if it opted into extensions (ver 2; on WebSocket followed by a close
//     frame 1001), then it is closed; a client that did not opt in is
//     closed without a word, as goim would;
//   - is closed anyway kickGrace after the kick if its queue has not
//     drained by then (a client that does not read).
//
// Its session leaves the store at once too. A kick by keys closes the
// connection registered under each key when the kick is applied, not the
// one the kick was resolved against: a client that reconnected with the
// same key in between (a replacement) is kicked too, since KindKick carries
// no connection gen. A kick is counted in
// Stats.Kicked once per connection it closed; keys this node does not hold
// are ignored. A kick from the queue whose message id was delivered
// recently is a redelivery and is dropped, as a push is (logic gives each
// user's kick an id of its own).

// defaultKickReason is op 6's reason for a kick that gives none.
const defaultKickReason = "kicked"

// kickGrace bounds how long a kicked connection's queued frames may take
// to be written before it is closed regardless.
const kickGrace = time.Second

// deliverKick applies a kick by keys from the queue. A kick by mids that
// reaches a node (job resolves those) was counted invalid by the caller.
func (s *Server) deliverKick(m *imcloud.Message) {
	reason := cmp.Or(m.Reason, defaultKickReason)
	for _, key := range m.Keys {
		if c := s.bs.of(key).get(key); c != nil {
			s.kick(c, reason)
		}
	}
}

// kick closes c as a kick with reason, as described above, and counts
// it; it does nothing if c was no longer registered (closed, replaced or
// kicked already).
func (s *Server) kick(c *conn, reason string) {
	if !c.b.kick(c) {
		return
	}
	s.stats.kicked.Add(1)
	c.endAs(imcloud.ReasonKicked, reason)
	s.sess.remove(imcloud.Session{Mid: c.mid, Key: c.key, Node: s.id, Gen: c.gen})
	var last []outItem
	if c.ext {
		last = c.disconnectItems(disconnectBody{Reason: reason, Kick: true})
	}
	c.closeWith(false, last...)
	time.AfterFunc(kickGrace, c.kill)
}

// kick unregisters c, a kicked connection, if it is still the connection
// under its key, and marks it kicked (see kicked).
func (b *bucket) kick(c *conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys[c.key] != c {
		return false
	}
	b.removeLocked(c)
	c.kicked = true
	return true
}

// wasKicked reports whether c was kicked: unregistered by the kick, its
// session must still leave the store when it ends (the removal is
// conditional on its gen: a successor's session stays).
func (c *conn) wasKicked() bool {
	c.b.mu.RLock()
	defer c.b.mu.RUnlock()
	return c.kicked
}
