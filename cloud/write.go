package cloud

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/imcloud/imcloud/protocol"
)

// Kinds of outbound item.
const (
	// itemPush is one or more complete push frames back to back (shared,
	// immutable). TCP writes them as they are; WebSocket wraps consecutive
	// pushes into op 9 messages under the batch cap.
	itemPush uint8 = iota
	// itemFrame is one frame that must travel alone on WebSocket (replies,
	// op 6): never inside an op 9.
	itemFrame
	// itemControl is a complete WebSocket control frame (pong, close);
	// never queued on TCP.
	itemControl
)

// outItem is one entry of a connection's outbound queue.
type outItem struct {
	b    []byte
	kind uint8
}

// keepQueueCap is the largest queue capacity an idle connection keeps, so
// steady pushes do not allocate while idle connections stay small.
const keepQueueCap = 8

// writeBufs pools the buffers writers assemble a write in; connections
// hold none while idle.
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8192); return &b }}

// maxPooledBuf keeps one huge write from pinning its buffer in the pool.
const maxPooledBuf = 256 << 10

// enqueue appends an item to c's queue and starts a writer if none runs.
// It never blocks on the socket. It reports whether the item was queued.
func (c *conn) enqueue(it outItem) bool {
	queued, start := c.enqueueClaim(it, nil)
	if start {
		go c.writeFn()
	}
	return queued
}

// enqueueClaim is enqueue without starting the writer: start reports that
// the caller claimed it (claimWriterLocked) and must run it, either with
// go c.writeFn() or in a batch writer (writebatch.go). With a non-nil
// backlog, the change to the node's backlog is added there for the caller
// to count (a fan-out counts a bucket's at once) instead of counted here.
func (c *conn) enqueueClaim(it outItem, backlog *int64) (queued, start bool) {
	s := c.srv
	c.mu.Lock()
	if c.dead || c.closing {
		c.mu.Unlock()
		return false, false
	}
	if len(c.q) >= s.cfg.QueueLength {
		if !s.cfg.DropOldest {
			c.mu.Unlock()
			s.stats.slowDisconnects.Add(1)
			c.disconnect("slow consumer", 0)
			return false, false
		}
		// Drop the oldest push, never a reply or control frame if a push
		// can go instead.
		drop := 0
		for i := range c.q {
			if c.q[i].kind == itemPush {
				drop = i
				break
			}
		}
		added := -int64(len(c.q[drop].b))
		copy(c.q[drop:], c.q[drop+1:])
		c.q[len(c.q)-1] = outItem{}
		c.q = c.q[:len(c.q)-1]
		s.stats.dropped.Add(1)
		c.addQueuedLocked(added)
	}
	c.q = append(c.q, it)
	if backlog != nil {
		*backlog += c.backlogDeltaLocked(int64(len(it.b)))
	} else {
		c.addQueuedLocked(int64(len(it.b)))
	}
	start = c.claimWriterLocked()
	c.mu.Unlock()
	return true, start
}

// writerCounter is where c's running writer is counted: its bucket's
// counter once registered (spreading the atomic over shards so fan-out
// workers do not fight over one cache line), the server's before auth.
// Called under c.mu; the writer decrements the counter it was started
// with (c.wctr).
func (c *conn) writerCounter() *atomic.Int64 {
	if b := c.b; b != nil {
		return &b.writers
	}
	return &c.srv.writers
}

// addQueuedLocked records that c's queue holds n more bytes (fewer for a
// negative n); every change to c.q calls it, under c.mu. The node's
// backlog (backlog.go) counts each connection's bytes up to
// backlogConnCap, spread over buckets like writerCounter; only the sum,
// Server.queuedBytes, is exact.
func (c *conn) addQueuedLocked(n int64) { c.countBacklogLocked(c.backlogDeltaLocked(n)) }

// backlogDeltaLocked records that c's queue holds n more bytes and
// returns the change to the node's backlog, for the caller to count.
func (c *conn) backlogDeltaLocked(n int64) int64 {
	old := c.qbytes + c.sbytes
	c.qbytes += n
	return cappedChange(old, n)
}

// addSlowLocked is addQueuedLocked for the bytes a slow write holds
// (c.slow): the client is behind by those too.
func (c *conn) addSlowLocked(n int64) {
	old := c.qbytes + c.sbytes
	c.sbytes += n
	c.countBacklogLocked(cappedChange(old, n))
}

// cappedChange is how much a connection's share of the backlog moves when
// its bytes go from old to old+n: its share is capped at backlogConnCap.
func cappedChange(old, n int64) int64 {
	return min(old+n, backlogConnCap) - min(old, backlogConnCap)
}

// countBacklogLocked adds d to the node's backlog, on c's bucket's counter
// (the server's before registration). Called under c.mu.
func (c *conn) countBacklogLocked(d int64) {
	switch {
	case d == 0:
	case c.b != nil:
		c.b.queued.Add(d)
	default:
		c.srv.queued.Add(d)
	}
}

// writeLoop writes everything queued, coalescing what arrived during a
// write into the next one, and exits when the queue is empty. It runs on
// a goroutine of its own, so its writes may block.
func (c *conn) writeLoop() {
	var spare []outItem
	for c.writeStep(&spare, true) == stepWrote {
	}
}

// What one writeStep did.
type stepResult uint8

const (
	// stepIdle: nothing was queued; the writer claim is released.
	stepIdle stepResult = iota
	// stepWrote: everything queued was written (or the connection died);
	// the caller still holds the writer claim and should step again.
	stepWrote
	// stepHandedOff: the socket took only part of a write; the rest, and
	// the writer claim, went to a goroutine of the connection's own.
	stepHandedOff
)

// writeStep performs one write of everything queued. With nothing queued
// (or the connection dead) it releases the writer claim
// (claimWriterLocked), closes the socket if a close was pending, and
// reports stepIdle. spare is the queue array recycled between steps, of
// this connection or the next one a shared writer writes: each step
// leaves c the spare as its new queue and the spare the array it wrote
// from, so queues stop allocating once their arrays are big enough.
//
// own says the caller is a goroutine dedicated to c, which may block in
// the write. A shared writer (own false) never blocks on a plain TCP
// socket: it writes without waiting (c.raw) and, if the socket buffer is
// full, hands the rest to a new goroutine (stepHandedOff).
func (c *conn) writeStep(spare *[]outItem, own bool) stepResult {
	c.mu.Lock()
	if c.dead || len(c.q) == 0 {
		closeNow := c.closing && !c.dead
		if len(c.q) > 0 { // dead: what was queued is dropped
			c.addQueuedLocked(-c.qbytes)
		}
		if c.dead || cap(c.q) > keepQueueCap {
			c.q = nil
		}
		if c.q == nil && !c.dead && cap(*spare) <= keepQueueCap {
			// Keep a small queue so the next push does not allocate.
			c.q = (*spare)[:0]
			*spare = nil // c's now
		}
		c.writing = false
		if closeNow {
			c.dead = true
		}
		ctr := c.wctr
		c.mu.Unlock()
		ctr.Add(-1)
		if closeNow {
			_ = c.nc.Close()
		}
		return stepIdle
	}
	batch := c.q
	k, n := itemsWithin(c.q, maxWriteBytes)
	c.addQueuedLocked(-int64(n))
	if k < len(c.q) {
		// Leave the rest queued, in order: one step writes what a socket
		// can plausibly take, so a shared writer's pass stays short.
		c.q = append((*spare)[:0], c.q[k:]...)
		clear(batch[k:])
		batch = batch[:k]
	} else {
		c.q = (*spare)[:0]
	}
	c.mu.Unlock()

	bp := writeBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	if c.ws {
		buf = c.encodeWS(buf, batch)
	} else {
		for i := range batch {
			buf = append(buf, batch[i].b...)
		}
	}
	clear(batch)
	*spare = batch
	rest := buf
	var err error
	if c.raw != nil {
		var n int
		n, err = c.tryWrite(buf)
		rest = buf[n:]
	}
	result := stepWrote
	switch {
	case err != nil || len(rest) == 0:
	case own || c.raw == nil:
		err = c.writeBlocking(rest)
	default:
		c.slow = append(c.slow[:0], rest...)
		c.mu.Lock()
		c.addSlowLocked(int64(len(c.slow)))
		c.mu.Unlock()
		result = stepHandedOff
	}
	if cap(buf) <= maxPooledBuf {
		*bp = buf[:0]
		writeBufs.Put(bp)
	}
	if err != nil {
		c.kill()
	}
	if result == stepHandedOff {
		go c.finishSlowWrite()
	}
	return result
}

// maxWriteBytes bounds the queued bytes one writeStep takes (at least one
// item), and so what a slow write holds (c.slow) while its client catches
// up: 256 KiB held the server at 584-685 MB of RSS with 5,000 clients
// behind, 64 KiB at 274-294 MB (BENCHMARKS.md, cloud).
const maxWriteBytes = 64 << 10

// itemsWithin returns how many items from the start of q fit in max bytes,
// at least one, and their bytes.
func itemsWithin(q []outItem, max int) (items, bytes int) {
	n := 0
	for i := range q {
		if n+len(q[i].b) > max && i > 0 {
			return i, n
		}
		n += len(q[i].b)
	}
	return len(q), n
}

// writeBlocking writes b, waiting for the socket at most WriteTimeout, or
// until the grace deadline of a connection being closed (disconnect).
func (c *conn) writeBlocking(b []byte) error {
	c.mu.Lock()
	if !c.closing {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	}
	c.mu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// finishSlowWrite is the goroutine of a connection whose socket buffer
// filled: it writes what the shared writer could not, then whatever
// queued meanwhile, until the queue is empty.
func (c *conn) finishSlowWrite() {
	err := c.writeBlocking(c.slow)
	c.mu.Lock()
	c.addSlowLocked(-c.sbytes)
	c.mu.Unlock()
	// Keep nothing: an idle connection holds no buffer (a slow write's
	// rest is up to maxWriteBytes, and socket-full episodes are rare).
	c.slow = nil
	if err != nil {
		c.kill()
	}
	c.writeLoop()
}

// tryWrite writes as much of b as the socket takes now, without waiting:
// the shared writers' path on plain TCP (no write deadline to arm, and
// one client that does not read cannot hold up the others).
func (c *conn) tryWrite(b []byte) (int, error) {
	c.rawBuf, c.rawN, c.rawErr = b, 0, nil
	// Control, not Write: the writer claim already keeps other writes out,
	// and this never waits for the poller, so Write's write lock, poll
	// reset and deadline check buy nothing here; Control still keeps the
	// descriptor from being closed (and reused) meanwhile. With the raw
	// system call below: 7% more writes per second on the same CPU at 800
	// room pushes/s to 5,000 clients (BENCHMARKS.md, cloud).
	err := c.raw.Control(c.rawFn)
	n, werr := c.rawN, c.rawErr
	c.rawBuf, c.rawErr = nil, nil
	if err == nil {
		err = werr
	}
	return n, err
}

// rawWrite is tryWrite's loop on the descriptor: it writes c.rawBuf until
// done or the socket is full, leaving the count in c.rawN and a failure
// in c.rawErr.
func (c *conn) rawWrite(fd uintptr) {
	b := c.rawBuf
	for c.rawN < len(b) {
		p := b[c.rawN:]
		// RawSyscall: the descriptor is non-blocking, so the call cannot
		// block, and the scheduler need not hand the P off around it.
		m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == 0 && int(m) > 0 {
			c.rawN += int(m)
		}
		switch e {
		case 0, syscall.EINTR:
		case syscall.EAGAIN:
			return
		default:
			c.rawErr = e
			return
		}
	}
}

// rawConnOf returns the raw socket under nc when writes can go to it
// directly: a plain TCP connection, possibly behind a replay of bytes
// read ahead. TLS connections return nil.
func rawConnOf(nc net.Conn) syscall.RawConn {
	switch t := nc.(type) {
	case *net.TCPConn:
		rc, err := t.SyscallConn()
		if err != nil {
			return nil
		}
		return rc
	case *prefixConn:
		return rawConnOf(t.Conn)
	}
	return nil
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
				buf = appendWSHeader(buf, wsOpBinary, len(it.b))
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
		buf = appendWSHeader(buf, wsOpBinary, protocol.HeaderLen+body)
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

// WebSocket opcodes.
const (
	wsOpCont   byte = 0x0
	wsOpText   byte = 0x1
	wsOpBinary byte = 0x2
	wsOpClose  byte = 0x8
	wsOpPing   byte = 0x9
	wsOpPong   byte = 0xA
)

// appendWSHeader appends an unmasked, final server frame header.
func appendWSHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// claimWriterLocked marks the connection as having a writer and reports
// whether the caller must start it (go c.writeFn() after unlocking): true
// when none was running. Call with c.mu held.
func (c *conn) claimWriterLocked() bool {
	if c.writing {
		return false
	}
	c.writing = true
	c.wctr = c.writerCounter()
	c.wctr.Add(1)
	return true
}
