package main

import (
	"math"
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

var histLogGrowth = math.Log(histGrowth)

func newLatencyHist() *latencyHist { return &latencyHist{counts: make([]uint64, histBuckets)} }

func bucketOf(d time.Duration) int {
	if d <= histMin {
		return 0
	}
	b := int(math.Log(float64(d)/float64(histMin)) / histLogGrowth)
	if b >= histBuckets {
		return histBuckets - 1
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
