package cloud

import (
	"context"

	"github.com/imcloud/imcloud/protocol"
)

// Upstream messages: a client frame whose op the node does not serve
// (and, on a goim connection, Join and Leave, and Refresh on one that did
// not opt in) is the application's, handed to Config.UpstreamHook with who
// sent it and its primary room.

// upstream serves an upstream message: the reply has the same op and seq
// and an empty body, and the message goes to the application.
func (c *conn) upstream(f *protocol.Frame) {
	s := c.srv
	s.stats.upstream.Add(1)
	if h := s.cfg.UpstreamHook; h != nil {
		h(context.Background(), Upstream{Mid: c.mid, Key: c.key, Room: c.b.roomOf(c), Op: f.Op, Seq: f.Seq, Body: f.Body, Node: s.id})
	}
	// The reply after the hook: a client that has it knows the
	// application was handed the message.
	c.reply(f, f.Op, nil)
}
