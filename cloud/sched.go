package cloud

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// scheduler decides which goroutine writes each connection: the only
// place outbound writes start. A connection the pusher claimed (outq.push
// or outq.close left idle) comes here, and:
//
//   - with a non-blocking socket (sockWriter; plain TCP and WebSocket on
//     Linux) it joins the ready list, a FIFO that a few writer goroutines
//     work through a slice at a time: one write of everything queued per
//     turn, and back to the tail while more keeps arriving. A write the
//     socket cannot take whole never waits: the rest goes to a goroutine
//     of the connection's own (writeBlocking), so a client that does not
//     read holds up nobody else.
//   - without one (TLS, wrapped or test sockets, every socket off Linux)
//     it gets a goroutine of its own that writes until the queue is empty,
//     each write bounded by WriteTimeout.
//
// Why a shared ready list: a fan-out claims thousands of idle connections
// at once, and one goroutine each cost most of the fan-out (creation and
// a scheduler wake-up per connection). How many writers: under sustained
// load at most GOMAXPROCS-1 (at least one), because the Go runtime polls
// the network only when a P has nothing else to run, so writers on every
// P would make push requests and link reads wait behind a whole round of
// writes. A fan-out that finds the writers idle is a burst with nothing
// to wait behind it: it may use a writer on every P, and the extra ones
// stop at their next slice as soon as a fan-out arrives while writers are
// still busy (sustained load again), so the time to the last client of
// an occasional room push is not bounded by one core. Why pass after pass:
// pushes that arrive while a connection is written coalesce into its next
// write, so under load a write carries many pushes instead of the machine
// making one system call per push per client.
//
// claims counts the connections the scheduler owns (ready, writing or
// blocking: outq's claims), for Stats.Writers and Shutdown.
type scheduler struct {
	claims atomic.Int64

	mu      sync.Mutex
	ready   []*conn // FIFO: ready[head:] wait for their next write
	head    int
	running int
	steady  int  // most writers under sustained load
	burst   int  // most writers while boost is set
	boost   bool // the last fan-out found the writers idle (fanoutStarts)
}

// schedSlice is how many connections a writer takes from the ready list
// between yields.
const schedSlice = 64

func newScheduler() *scheduler {
	n := runtime.GOMAXPROCS(0)
	return &scheduler{steady: max(1, n-1), burst: n}
}

// fanoutStarts is called as a fan-out begins: it sets boost when no
// writer runs and nothing waits (a burst), and clears it otherwise
// (sustained load: the extra writers stop at their next slice).
func (s *scheduler) fanoutStarts() {
	s.mu.Lock()
	s.boost = s.running == 0 && s.head == len(s.ready)
	s.mu.Unlock()
}

// limit is how many writers may run now. Called under mu.
func (s *scheduler) limit() int {
	if s.boost {
		return s.burst
	}
	return s.steady
}

// start takes over c, which its pusher just claimed in state st (qReady
// or qBlocking; qIdle: nothing to do).
func (s *scheduler) start(c *conn, st qstate) {
	switch st {
	case qReady:
		s.submit([]*conn{c}, false)
	case qBlocking:
		s.claims.Add(1)
		go c.writeBlocking(nil)
	}
}

// submit appends cs, all in state ready, to the ready list and starts a
// writer if fewer than the limit run. counted says their claims were
// counted already (a writer putting connections back); a fan-out's batch
// is counted here.
func (s *scheduler) submit(cs []*conn, counted bool) {
	if !counted {
		s.claims.Add(int64(len(cs)))
	}
	s.mu.Lock()
	s.ready = append(s.ready, cs...)
	start := s.running < s.limit()
	if start {
		s.running++
	}
	s.mu.Unlock()
	if start {
		go s.run()
	}
}

// take moves up to len(dst) ready connections into dst; 0 means none is
// left, or more writers run than the limit allows, and the calling writer
// stops (its count released).
func (s *scheduler) take(dst []*conn) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running > s.limit() {
		s.running--
		return 0
	}
	n := copy(dst, s.ready[s.head:])
	clear(s.ready[s.head : s.head+n])
	s.head += n
	if s.head == len(s.ready) {
		s.ready, s.head = s.ready[:0], 0
	} else if s.head > len(s.ready)/2 {
		m := copy(s.ready, s.ready[s.head:])
		clear(s.ready[m:])
		s.ready, s.head = s.ready[:m], 0
	}
	if n == 0 {
		s.running--
	}
	return n
}

// run is a writer: it writes ready connections a slice at a time, puts
// back those that got more meanwhile, and yields between slices.
func (s *scheduler) run() {
	var spare []outItem
	var mine [schedSlice]*conn
	for {
		n := s.take(mine[:])
		if n == 0 {
			return
		}
		kept := 0
		for _, c := range mine[:n] {
			if c.writeReady(&spare) {
				mine[kept] = c
				kept++
			}
		}
		if kept > 0 {
			s.mu.Lock()
			s.ready = append(s.ready, mine[:kept]...)
			s.mu.Unlock()
		}
		clear(mine[:n])
		runtime.Gosched()
	}
}

// release ends a claim; closeNow closes c's socket first (a close was
// pending and everything before it is written).
func (s *scheduler) release(c *conn, closeNow bool) {
	if closeNow {
		_ = c.nc.Close()
	}
	s.claims.Add(-1)
}

// readyBatch collects the connections one fan-out claimed, so they join
// the ready list a slice at a time.
type readyBatch struct {
	s  *scheduler
	cs [schedSlice]*conn
	n  int
}

// add takes c, claimed by the fan-out in state st.
func (b *readyBatch) add(c *conn, st qstate) {
	if st != qReady {
		b.s.start(c, st)
		return
	}
	b.cs[b.n] = c
	if b.n++; b.n == len(b.cs) {
		b.flush()
	}
}

// flush hands what was collected to the scheduler.
func (b *readyBatch) flush() {
	if b.n > 0 {
		b.s.submit(b.cs[:b.n], false)
		clear(b.cs[:b.n])
		b.n = 0
	}
}
