package cloud

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

// The write path: pushes append to a connection's queue (outq.go), the
// scheduler (sched.go) decides which goroutine writes it, and the writes
// below turn a batch of queued items into one buffer for the socket: as
// they are on TCP, in WebSocket frames (op 9 for runs of pushes) on
// WebSocket. A connection's socket is written through its sockWriter
// without waiting when it has one (rawwrite_linux.go), through net.Conn
// with a deadline otherwise.

// sockWriter writes to a connection's socket without waiting.
type sockWriter interface {
	// tryWrite writes as much of b as the socket takes now. A count short
	// of len(b) with a nil error means the socket is full. Only the
	// connection's writer claim calls it, one call at a time.
	tryWrite(b []byte) (int, error)
}

// writeBufs pools the buffers writers assemble a write in; connections
// hold none while idle.
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8192); return &b }}

// maxPooledBuf keeps one huge write from pinning its buffer in the pool.
const maxPooledBuf = 256 << 10

// maxWriteBytes bounds the queued bytes one write takes (at least one
// item): what a write holds while its client catches up (held by a
// blocking write), and so the server's memory with many clients behind
// (BENCHMARKS.md, cloud).
const maxWriteBytes = 64 << 10

// enqueue appends an item to c's queue and, if c was idle, hands it to the
// scheduler. It never blocks on the socket. It reports whether the item
// was queued.
func (c *conn) enqueue(it outItem) bool {
	queued, start := c.push(it, nil)
	if start != qIdle {
		c.srv.sched.start(c, start)
	}
	return queued
}

// push is enqueue without starting the writer: start is the state c left
// idle for (qIdle if it had an owner), which the caller hands to the
// scheduler (a fan-out collects them: readyBatch). A full queue closes
// the connection as a slow consumer, or drops its oldest push
// (Config.DropOldest); both are counted. backlog is as for outq.push.
func (c *conn) push(it outItem, backlog *int64) (queued bool, start qstate) {
	s := c.srv
	res, start := c.out.push(it, s.cfg.QueueLength, s.cfg.DropOldest, backlog)
	switch res {
	case pushFull:
		s.stats.slowDisconnects.Add(1)
		c.endAs(imcloud.ReasonSlowConsumer, "")
		c.disconnect("slow consumer", 0)
		return false, qIdle
	case pushRefused:
		return false, qIdle
	case pushDropped:
		s.stats.dropped.Add(1)
	}
	return true, start
}

// resume lets c's queue be written after the handshake paused it.
func (c *conn) resume() {
	if start := c.out.resume(); start != qIdle {
		c.srv.sched.start(c, start)
	}
}

// closeWith queues items as c's last (dropping what was queued first with
// replace) and closes the socket once they are written, within closeGrace.
func (c *conn) closeWith(replace bool, items ...outItem) {
	ok, start := c.out.close(replace, c.armCloseDeadline, items...)
	if ok && start != qIdle {
		c.srv.sched.start(c, start)
	}
}

// closeGrace bounds the final write of a connection being closed.
const closeGrace = 2 * time.Second

// armCloseDeadline bounds what is left to write by closeGrace. Called
// under c.out.mu, so a blocking write starting later cannot extend it
// (blockingWrite).
func (c *conn) armCloseDeadline() { _ = c.nc.SetWriteDeadline(time.Now().Add(closeGrace)) }

// writeReady is a scheduler writer's turn at c (state ready): one write of
// what is queued, without waiting. It reports whether c goes back on the
// ready list. A socket that takes only part hands the rest, and the
// claim, to a goroutine of c's own (writeBlocking).
func (c *conn) writeReady(spare *[]outItem) bool {
	batch, ok, closeNow := c.out.take(spare, maxWriteBytes)
	if !ok {
		c.srv.sched.release(c, closeNow)
		return false
	}
	c.sampleLatency(batch)
	bp, buf := c.encode(batch)
	clear(batch)
	*spare = batch
	w, err := c.w.tryWrite(buf)
	var held []byte
	if err == nil && w < len(buf) {
		held = append([]byte(nil), buf[w:]...)
	}
	putWriteBuf(bp, buf)
	if err != nil {
		c.kill() // the next take drops what is left and releases
	}
	switch c.out.settle(0, int64(len(held))) {
	case qReady:
		return true
	case qBlocking:
		go c.writeBlocking(held)
	case qIdle:
		c.srv.sched.release(c, false)
	}
	return false
}

// writeBlocking is the goroutine of a connection whose writes may wait on
// the socket (state blocking): it writes held (what a scheduler writer
// could not), then everything queued, until the queue is empty. Pushes
// that arrive during a write coalesce into the next one.
func (c *conn) writeBlocking(held []byte) {
	if len(held) > 0 {
		if err := c.blockingWrite(held); err != nil {
			c.kill()
		}
		if c.out.settle(int64(len(held)), 0) == qIdle {
			c.srv.sched.release(c, false)
			return
		}
	}
	var spare []outItem
	for {
		batch, ok, closeNow := c.out.take(&spare, maxWriteBytes)
		if !ok {
			c.srv.sched.release(c, closeNow)
			return
		}
		c.sampleLatency(batch)
		bp, buf := c.encode(batch)
		clear(batch)
		spare = batch
		err := c.blockingWrite(buf)
		putWriteBuf(bp, buf)
		if err != nil {
			c.kill()
		}
		if c.out.settle(0, 0) == qIdle {
			c.srv.sched.release(c, false)
			return
		}
	}
}

// blockingWrite writes b, waiting for the socket at most WriteTimeout, or
// until the grace deadline of a connection being closed (closeWith).
func (c *conn) blockingWrite(b []byte) error {
	c.out.mu.Lock()
	if !c.out.closing {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	}
	c.out.mu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// encode assembles batch into one write: a single TCP item is written
// from its own (immutable, shared) bytes; anything else goes into a
// pooled buffer, which putWriteBuf returns (bp nil: nothing to return).
func (c *conn) encode(batch []outItem) (bp *[]byte, buf []byte) {
	if !c.ws && len(batch) == 1 {
		return nil, batch[0].b
	}
	bp = writeBufs.Get().(*[]byte)
	buf = (*bp)[:0]
	if c.ws {
		return bp, c.encodeWS(buf, batch)
	}
	for i := range batch {
		buf = append(buf, batch[i].b...)
	}
	return bp, buf
}

// putWriteBuf returns encode's buffer to the pool.
func putWriteBuf(bp *[]byte, buf []byte) {
	if bp != nil && cap(buf) <= maxPooledBuf {
		*bp = buf[:0]
		writeBufs.Put(bp)
	}
}

// encodeWS frames a batch as WebSocket binary messages: consecutive pushes
// share op 9 messages whose body stays under MaxBatchBody; replies, op 6
// and control frames go alone, in order.
func (c *conn) encodeWS(buf []byte, batch []outItem) []byte {
	limit := c.srv.cfg.MaxBatchBody
	i, off := 0, 0 // cursor: frame at batch[i].b[off:]
	for i < len(batch) {
		it := &batch[i]
		if it.kind != itemPush {
			if it.kind == itemControl {
				buf = append(buf, it.b...)
			} else {
				buf = appendWSFrameHeader(buf, ws.OpBinary, len(it.b))
				buf = append(buf, it.b...)
			}
			i, off = i+1, 0
			continue
		}
		// Measure how many push frames fit in one op 9 body.
		body := 0
		ei, eo := i, off
		for ei < len(batch) && batch[ei].kind == itemPush {
			n := frameLen(batch[ei].b[eo:])
			if body > 0 && body+n > limit {
				break
			}
			body += n
			eo += n
			if eo >= len(batch[ei].b) {
				ei, eo = ei+1, 0
			}
			if body >= limit {
				break
			}
		}
		buf = appendWSFrameHeader(buf, ws.OpBinary, protocol.HeaderLen+body)
		buf = protocol.AppendHeader(buf, body, protocol.VerGoim, protocol.OpRaw, 0)
		for i < ei || (i == ei && off < eo) {
			b := batch[i].b
			end := len(b)
			if i == ei {
				end = eo
			}
			buf = append(buf, b[off:end]...)
			i, off = i+1, 0
		}
		i, off = ei, eo
	}
	return buf
}

// frameLen is the length of the frame at the start of b (validated when
// the item was built), or len(b) if it cannot be read.
func frameLen(b []byte) int {
	if len(b) < protocol.HeaderLen {
		return len(b)
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < protocol.HeaderLen || n > len(b) {
		return len(b)
	}
	return n
}
