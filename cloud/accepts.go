package cloud

import (
	"bytes"
	"strconv"

	"github.com/imcloud/imcloud/protocol"
)

// A connection's op filter (goim's Sub and Unsub, docs/protocol.md): the
// ops of the key, mid and broadcast pushes it accepts, from its identity's
// Accepts at auth, changed by op 14 (Sub) and op 16 (Unsub) with a body of
// comma-separated ops. The filter is copy-on-write (conn.accepts): pushes
// read it without a lock.

// subscribe serves Sub and Unsub: the filter changes, then the reply
// (echoing the body) is queued and the session put.
func (c *conn) subscribe(f *protocol.Frame) {
	ops := parseOps(f.Body)
	cur := *c.accepts.Load()
	next := make([]int32, 0, len(cur)+len(ops))
	replyOp := protocol.OpSubReply
	if f.Op == protocol.OpSub {
		next = append(next, cur...)
		for _, op := range ops {
			if !containsOp(next, op) {
				next = append(next, op)
			}
		}
	} else {
		replyOp = protocol.OpUnsubReply
		for _, op := range cur {
			if !containsOp(ops, op) {
				next = append(next, op)
			}
		}
	}
	// Update before replying: a client that saw the reply relies on it.
	c.accepts.Store(&next)
	c.reply(f, replyOp, f.Body)
	c.putSession()
}

// parseOps reads a Sub or Unsub body, skipping what is not an op.
func parseOps(body []byte) []int32 {
	var ops []int32
	for _, p := range bytes.Split(body, []byte(",")) {
		p = bytes.TrimSpace(p)
		if n, err := strconv.ParseInt(string(p), 10, 32); err == nil {
			ops = append(ops, int32(n))
		}
	}
	return ops
}

// containsOp reports whether op is among ops.
func containsOp(ops []int32, op int32) bool {
	for _, o := range ops {
		if o == op {
			return true
		}
	}
	return false
}

// acceptsOp reports whether key, mid and broadcast pushes of op reach c.
func (c *conn) acceptsOp(op int32) bool {
	p := c.accepts.Load()
	return p != nil && containsOp(*p, op)
}
