package cloud

import (
	"sync"
	"sync/atomic"
	"time"
)

// Fan-out writers. A room push or broadcast reaches thousands of idle
// connections at once; starting one writer goroutine per connection cost
// most of the fan-out (goroutine creation and a scheduler wake-up each).
// Fan-out instead hands the connections it claimed a writer for
// (claimWriterLocked) to batch writers: one goroutine per writeBatchSize
// connections, writing each connection's queue in turn. Connections stay
// writer-on-demand: nothing runs for an idle connection.
//
// A socket write can block (a client whose socket buffer is full) until
// WriteTimeout. So that one slow client does not hold up the rest of its
// batch, each batch is watched: if it completes no connection for a whole
// stallCheck period, its remaining connections are handed to a new batch
// goroutine. A connection still busy after two writes (pushes keep
// arriving) gets a writer goroutine of its own. On plain TCP, writes never
// block (write.go, tryWrite): a batch hands the connections it wrote to
// the server's keepers (keepers.go), which write them pass after pass
// while pushes keep arriving, and a socket that is full gets a goroutine
// of its own for the rest. A batch that holds such connections never
// writes one that may block (TLS, wrapped sockets) itself: that gets a
// writer of its own, so the kept connections do not wait for it.

// writeBatchSize is how many connections one batch writer serves.
const writeBatchSize = 32

// stallCheck is how long a batch may go without finishing a connection
// before its remaining connections move to a new goroutine.
const stallCheck = 5 * time.Millisecond

// writeBatch is one batch writer's work: conns[next:n] remain. Batches
// are pooled (with their timer and bound functions) so fan-out allocates
// nothing per batch in the steady state.
type writeBatch struct {
	conns [writeBatchSize]*conn
	n     atomic.Int32 // connections in conns
	next  atomic.Int32 // index of the next connection to take
	done  atomic.Int32 // connections finished
	seen  atomic.Int32 // done at the last check
	timer atomic.Pointer[time.Timer]
	runFn func() // wb.run and wb.check, bound once
	check func()
}

// writeBatches pools batches (no New: its closure would make an
// initialization cycle through run).
var writeBatches sync.Pool

// newWriteBatch returns an empty batch.
func newWriteBatch() *writeBatch {
	if v := writeBatches.Get(); v != nil {
		return v.(*writeBatch)
	}
	wb := &writeBatch{}
	wb.runFn, wb.check = wb.run, wb.checkStall
	return wb
}

// add appends c, already claimed for writing, and reports whether the
// batch is full.
func (wb *writeBatch) add(c *conn) bool {
	n := wb.n.Load()
	wb.conns[n] = c
	wb.n.Store(n + 1)
	return n+1 == writeBatchSize
}

// start writes the batch's connections on a new goroutine.
func (wb *writeBatch) start() { go wb.runFn() }

func (wb *writeBatch) run() {
	if t := wb.timer.Load(); t != nil {
		t.Reset(stallCheck)
	} else {
		wb.timer.Store(time.AfterFunc(stallCheck, wb.check))
	}
	n := wb.n.Load()
	var spare []outItem
	// again holds the plain TCP connections that had something to write:
	// more may arrive while the batch runs, so they go to the keepers.
	var again [writeBatchSize]*conn
	na := 0
	for {
		i := wb.next.Add(1) - 1
		if i >= n {
			break
		}
		c := wb.conns[i]
		if c.raw == nil && na > 0 {
			// Its write may block, and this goroutine holds the writers of
			// the connections in again: they would wait for it (their
			// queues filling up to a slow-consumer drop). A writer of its
			// own instead.
			go c.writeFn()
		} else if c.writeStep(&spare, false) == stepWrote {
			if c.raw != nil {
				again[na] = c
				na++
			} else if c.writeStep(&spare, false) == stepWrote {
				// More arrived during a write that may block: a
				// writer of its own.
				go c.writeFn()
			}
		}
		wb.done.Add(1)
	}
	// Reuse the batch only if no stall check is running or can still run
	// (Stop found the timer pending); otherwise leave it to the GC.
	if wb.timer.Load().Stop() {
		clear(wb.conns[:n])
		wb.n.Store(0)
		wb.next.Store(0)
		wb.done.Store(0)
		wb.seen.Store(0)
		writeBatches.Put(wb)
	}
	// Those connections may keep receiving pushes: the keepers write them
	// pass after pass (keepers.go).
	if na > 0 {
		again[0].srv.keep.add(again[:na])
	}
}

// checkStall runs every stallCheck while the batch is unfinished; it hands
// the remaining connections to a new batch when none finished since the
// last check (a write is blocked).
func (wb *writeBatch) checkStall() {
	n := wb.n.Load()
	d := wb.done.Load()
	if d >= n {
		return
	}
	if d != wb.seen.Load() {
		wb.seen.Store(d)
		wb.timer.Load().Reset(stallCheck) // last: run may reuse wb once the timer is pending
		return
	}
	old := wb.next.Swap(n)
	if old >= n {
		return
	}
	rest := newWriteBatch()
	for _, c := range wb.conns[old:n] {
		rest.add(c)
	}
	rest.start()
}
