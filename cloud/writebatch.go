package cloud

import (
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
// arriving) gets a writer goroutine of its own.

// writeBatchSize is how many connections one batch writer serves.
const writeBatchSize = 32

// stallCheck is how long a batch may go without finishing a connection
// before its remaining connections move to a new goroutine.
const stallCheck = 5 * time.Millisecond

// writeBatch is one batch writer's work: conns[next:] remain.
type writeBatch struct {
	conns []*conn
	next  atomic.Int32 // index of the next connection to take
	done  atomic.Int32 // connections finished
	seen  int32        // done at the last check (check goroutines only)
	timer atomic.Pointer[time.Timer]
}

// startWriteBatch writes the queues of conns, each already claimed for
// writing, on a new goroutine.
func startWriteBatch(conns []*conn) {
	go runWriteBatch(conns)
}

func runWriteBatch(conns []*conn) {
	wb := &writeBatch{conns: conns}
	wb.timer.Store(time.AfterFunc(stallCheck, wb.check))
	var spare []outItem
	for {
		i := int(wb.next.Add(1)) - 1
		if i >= len(conns) {
			break
		}
		c := conns[i]
		if c.writeStep(&spare) && c.writeStep(&spare) {
			// More arrived during the write: a writer of its own.
			go c.writeFn()
		}
		spare = nil // now c's queue array, or dropped
		wb.done.Add(1)
	}
	wb.timer.Load().Stop()
}

// check runs every stallCheck while the batch is unfinished; it hands the
// remaining connections to a new goroutine when none finished since the
// last check (a write is blocked).
func (wb *writeBatch) check() {
	n := int32(len(wb.conns))
	d := wb.done.Load()
	if d >= n {
		return
	}
	if d != wb.seen {
		wb.seen = d
		wb.timer.Store(time.AfterFunc(stallCheck, wb.check))
		return
	}
	if old := wb.next.Swap(n); old < n {
		startWriteBatch(wb.conns[old:])
	}
}
