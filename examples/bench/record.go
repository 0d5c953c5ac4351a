package main

import (
	"strconv"
	"sync"
	"time"
)

// Every push body starts with "<tag>:<scheduled unix ns>;" and is padded to
// the body size. The tag says which measured window the push belongs to (0:
// warm-up or a probe), so a delivery is attributed to the right step
// however late it arrives; the scheduled time is what latency is measured
// from, so queueing in the generator or the server is not hidden.

// appendBody appends a push body of at least size bytes.
func appendBody(dst []byte, tag int, sched time.Time, size int) []byte {
	start := len(dst)
	dst = strconv.AppendInt(dst, int64(tag), 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, sched.UnixNano(), 10)
	dst = append(dst, ';')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// parseBody reads the tag and scheduled time from a push body.
func parseBody(b []byte) (tag int, sched int64, ok bool) {
	i := 0
	for ; i < len(b) && b[i] != ':'; i++ {
		c := b[i]
		if c < '0' || c > '9' || i > 4 {
			return 0, 0, false
		}
		tag = tag*10 + int(c-'0')
	}
	if i == 0 || i >= len(b) {
		return 0, 0, false
	}
	i++
	j := i
	for ; i < len(b) && b[i] != ';'; i++ {
		c := b[i]
		if c < '0' || c > '9' || i-j > 19 {
			return 0, 0, false
		}
		sched = sched*10 + int64(c-'0')
	}
	if i == j || i >= len(b) {
		return 0, 0, false
	}
	return tag, sched, true
}

// maxTags bounds the measured steps of one run (tags 1..maxTags-1).
const maxTags = 64

// counts is a histogram without a lock: the shard that owns it locks.
type counts struct {
	c   [histBuckets]uint64
	n   uint64
	max time.Duration
}

func (c *counts) add(b int, d time.Duration) {
	c.c[b]++
	c.n++
	if d > c.max {
		c.max = d
	}
}

// hist copies c into a latencyHist for quantiles.
func (c *counts) hist() *latencyHist {
	h := newLatencyHist()
	copy(h.counts, c.c[:])
	h.n, h.max = c.n, c.max
	return h
}

// shard collects the deliveries of a subset of connections. One lock per
// socket read, however many pushes it carried, keeps the receivers cheap.
type shard struct {
	mu   sync.Mutex
	tick counts           // every delivery since the last progress tick
	win  [maxTags]*counts // per measured step
	arr  [maxTags]*counts // per measured step: arrival in the client's socket
	recv [maxTags]uint64  // deliveries per tag (0: warm-up, probes)
	bad  uint64           // pushes whose body did not parse
	_    [64]byte         // keep shards off each other's cache lines
}

// delivery is one received push: its tag and latency.
type delivery struct {
	tag int
	lat time.Duration // from the scheduled send to the generator's read
	arr time.Duration // from the scheduled send to the kernel queueing it in the client's socket; < 0: unknown
}

// rxTime is when a read returned and when the kernel queued the data it
// returned in the client's socket (SO_TIMESTAMPNS of the last segment
// read, so never earlier than any of it arrived; 0: unknown). The
// difference is how long the data waited for the generator, which shares
// the cores with the server it measures.
type rxTime struct {
	read, kernel int64
}

// add records a batch of deliveries.
func (s *shard) add(ds []delivery, bad int) {
	s.mu.Lock()
	s.bad += uint64(bad)
	for _, d := range ds {
		if d.tag == tagDisconnect {
			continue
		}
		if d.lat < 0 {
			d.lat = 0
		}
		b := bucketOf(d.lat)
		s.tick.add(b, d.lat)
		tag := d.tag
		if tag <= 0 || tag >= maxTags {
			s.recv[0]++
			continue
		}
		s.recv[tag]++
		stepCounts(&s.win, tag).add(b, d.lat)
		if d.arr >= 0 {
			stepCounts(&s.arr, tag).add(bucketOf(d.arr), d.arr)
		}
	}
	s.mu.Unlock()
}

// stepCounts returns step tag's histogram in hs, made on first use.
func stepCounts(hs *[maxTags]*counts, tag int) *counts {
	if hs[tag] == nil {
		hs[tag] = new(counts)
	}
	return hs[tag]
}

// recorder is every shard.
type recorder struct{ shards []*shard }

func newRecorder(n int) *recorder {
	r := &recorder{shards: make([]*shard, n)}
	for i := range r.shards {
		r.shards[i] = &shard{}
	}
	return r
}

// takeTick returns the deliveries since the last call and their latencies.
func (r *recorder) takeTick() *latencyHist {
	out := newLatencyHist()
	for _, s := range r.shards {
		s.mu.Lock()
		out.addCounts(&s.tick)
		s.tick = counts{}
		s.mu.Unlock()
	}
	return out
}

// window returns what step tag received: the count, the latencies as
// read, and the latencies of arrival in the client's socket (empty when
// the reads had no kernel timestamps).
func (r *recorder) window(tag int) (n uint64, read, arrived *latencyHist) {
	read, arrived = newLatencyHist(), newLatencyHist()
	for _, s := range r.shards {
		s.mu.Lock()
		n += s.recv[tag]
		if w := s.win[tag]; w != nil {
			read.addCounts(w)
		}
		if a := s.arr[tag]; a != nil {
			arrived.addCounts(a)
		}
		s.mu.Unlock()
	}
	return n, read, arrived
}

// received returns the deliveries of tag so far.
func (r *recorder) received(tag int) uint64 {
	var n uint64
	for _, s := range r.shards {
		s.mu.Lock()
		n += s.recv[tag]
		s.mu.Unlock()
	}
	return n
}

// badBodies returns the pushes whose body did not parse.
func (r *recorder) badBodies() uint64 {
	var n uint64
	for _, s := range r.shards {
		s.mu.Lock()
		n += s.bad
		s.mu.Unlock()
	}
	return n
}
