package main

import (
	"math"
	"math/bits"
	"sort"
	"sync"
	"time"
)

// latencyHist records durations in logarithmic buckets (about 2% wide)
// from 1 µs to 100 s: constant memory however many samples, quantiles
// accurate to a bucket. Safe for concurrent use.
type latencyHist struct {
	mu     sync.Mutex
	counts []uint64
	n      uint64
	max    time.Duration
}

const (
	histMin     = time.Microsecond
	histBuckets = 1000
	histGrowth  = 1.02
)

func newLatencyHist() *latencyHist { return &latencyHist{counts: make([]uint64, histBuckets)} }

// bucketIndex finds a duration's bucket without a logarithm: the generator
// files two latencies per delivery, millions a second, on the cores it
// shares with the server it measures, and math.Log with the bucket
// arithmetic was a visible part of its user-space time under perf.
// Read-only once built.
type bucketIndex struct {
	// starts[b] is the shortest duration in bucket b: bucket b holds
	// [histMin*histGrowth^b, histMin*histGrowth^(b+1)) for b >= 1, and
	// bucket 0 everything shorter.
	starts [histBuckets]time.Duration
	// first maps a duration's highest set bit and the six bits below it
	// (a cell at most 1/64 wide, narrower than a bucket) to the bucket of
	// the cell's shortest duration: the duration is in it or the next.
	first [64 << 6]uint16
}

var buckets = newBucketIndex()

func newBucketIndex() *bucketIndex {
	x := &bucketIndex{}
	for b := 1; b < histBuckets; b++ {
		x.starts[b] = time.Duration(math.Ceil(float64(histMin) * math.Pow(histGrowth, float64(b))))
	}
	for e := 6; e < 63; e++ {
		for m := 0; m < 64; m++ {
			low := time.Duration((64 + m) << (e - 6))
			x.first[e<<6|m] = uint16(x.slow(low))
		}
	}
	return x
}

// slow is the bucket of d by binary search.
func (x *bucketIndex) slow(d time.Duration) int {
	return sort.Search(histBuckets, func(b int) bool { return b+1 == histBuckets || x.starts[b+1] > d })
}

func bucketOf(d time.Duration) int {
	if d <= histMin {
		return 0
	}
	e := bits.Len64(uint64(d)) - 1 // >= 9: histMin is 1,000 ns
	b := int(buckets.first[e<<6|int(d>>(e-6))&63])
	if b+1 < histBuckets && d >= buckets.starts[b+1] {
		b++
	}
	return b
}

// upperBound is the largest duration bucket b holds.
func upperBound(b int) time.Duration {
	return time.Duration(float64(histMin) * math.Pow(histGrowth, float64(b+1)))
}

func (h *latencyHist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	b := bucketOf(d)
	h.mu.Lock()
	if h.counts == nil { // the zero latencyHist is ready to use
		h.counts = make([]uint64, histBuckets)
	}
	h.counts[b]++
	h.n++
	if d > h.max {
		h.max = d
	}
	h.mu.Unlock()
}

// merge adds o's samples into h.
func (h *latencyHist) merge(o *latencyHist) {
	o.mu.Lock()
	counts := append([]uint64(nil), o.counts...)
	n, max := o.n, o.max
	o.mu.Unlock()
	h.mu.Lock()
	for i, c := range counts {
		h.counts[i] += c
	}
	h.n += n
	if max > h.max {
		h.max = max
	}
	h.mu.Unlock()
}

// reset empties h and returns a copy of what it held.
func (h *latencyHist) reset() *latencyHist {
	out := newLatencyHist()
	h.mu.Lock()
	out.counts, h.counts = h.counts, out.counts
	out.n, h.n = h.n, 0
	out.max, h.max = h.max, 0
	h.mu.Unlock()
	return out
}

func (h *latencyHist) count() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// quantile returns the upper bound of the bucket holding quantile q
// (0 < q <= 1), capped at the largest sample; 0 without samples.
func (h *latencyHist) quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			if ub := upperBound(b); ub < h.max {
				return ub
			}
			return h.max
		}
	}
	return h.max
}

func (h *latencyHist) maximum() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}

// addCounts adds a shard's histogram to h (h is not shared yet: no lock).
func (h *latencyHist) addCounts(c *counts) {
	for i, v := range c.c {
		h.counts[i] += v
	}
	h.n += c.n
	if c.max > h.max {
		h.max = c.max
	}
}
