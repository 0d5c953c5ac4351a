package cloud

import (
	"runtime"
	"sync"
)

// Keepers write the connections that stay busy: under a stream of room
// pushes, a connection's queue refills while it is being written, so it
// needs pass after pass. A batch writer (writebatch.go) hands the plain
// TCP connections it wrote to the server's keepers instead of looping over
// them itself, and a few keeper goroutines write every busy connection, a
// slice at a time, in FIFO order.
//
// Why: with each batch looping over its own connections, 5,000 busy
// connections were ~160 runnable writer goroutines taking turns through
// the scheduler's global run queue. The Go scheduler polls the network
// only when it has nothing else to run (or from sysmon, every 10 ms), and
// puts what it finds at the tail of that queue, so under fan-out load an
// HTTP push request or a link read waited for a whole round of writers:
// the push API answered in 30 ms at the median at 800 room pushes/s to
// 5,000 sockets. Keepers are GOMAXPROCS-1 goroutines (at least one): the
// writes of busy connections never occupy every P, so a P is left to
// find network events as they come (BENCHMARKS.md, "cloud").

// keeperSlice is how many connections a keeper writes between yields:
// about 0.5 ms of writes on a loopback socket.
const keeperSlice = 64

// keepers is the server's set of busy connections and the goroutines
// writing them. Every connection in busy holds its writer claim
// (claimWriterLocked) and appears once.
type keepers struct {
	mu      sync.Mutex
	busy    []*conn // FIFO: busy[head:] wait for their next write
	head    int
	running int
	max     int
}

func newKeepers() *keepers { return &keepers{max: max(1, runtime.GOMAXPROCS(0)-1)} }

// add queues cs (claimed, just written) for further passes and starts a
// keeper if fewer than max run.
func (k *keepers) add(cs []*conn) {
	k.mu.Lock()
	k.busy = append(k.busy, cs...)
	start := k.running < k.max
	if start {
		k.running++
	}
	k.mu.Unlock()
	if start {
		go k.run()
	}
}

// take moves up to len(dst) busy connections into dst; 0 means none is
// left and the caller stops (its count released).
func (k *keepers) take(dst []*conn) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := copy(dst, k.busy[k.head:])
	clear(k.busy[k.head : k.head+n])
	k.head += n
	if k.head == len(k.busy) {
		k.busy, k.head = k.busy[:0], 0
	} else if k.head > len(k.busy)/2 {
		m := copy(k.busy, k.busy[k.head:])
		clear(k.busy[m:])
		k.busy, k.head = k.busy[:m], 0
	}
	if n == 0 {
		k.running--
	}
	return n
}

// run writes busy connections a slice at a time: a connection that wrote
// something goes back to the tail (more may have arrived meanwhile), one
// that had nothing is released (writeStep gave up its claim). Writes on
// plain TCP never block (tryWrite), so a keeper cannot stall.
func (k *keepers) run() {
	var spare []outItem
	var mine [keeperSlice]*conn
	for {
		n := k.take(mine[:])
		if n == 0 {
			return
		}
		kept := 0
		for _, c := range mine[:n] {
			if c.writeStep(&spare, false) == stepWrote {
				mine[kept] = c
				kept++
			}
		}
		if kept > 0 {
			k.mu.Lock()
			k.busy = append(k.busy, mine[:kept]...)
			k.mu.Unlock()
		}
		clear(mine[:n])
		runtime.Gosched()
	}
}
