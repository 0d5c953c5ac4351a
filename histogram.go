package imcloud

import (
	"slices"
	"sync/atomic"
	"time"
)

// Histogram counts observations of one quantity (a latency, a size) in
// fixed buckets, for the roles' Stats: logic's push duration, job's link
// round trip, cloud's fan-out and delivery latency. The roles keep no
// metrics library; package metrics turns a HistogramSnapshot into a
// Prometheus histogram at scrape time.
//
// Values are integers in the histogram's unit: nanoseconds for
// NewDurationHistogram (snapshots are in seconds), plain counts for
// NewHistogram. Observe is lock-free and allocation-free (a binary search
// over the bounds, then two atomic adds), so it may sit on hot paths and be
// called from any number of goroutines. Snapshot may run concurrently with
// Observe; its count always equals its last cumulative bucket, and its sum
// may lag or lead by the observations in flight.
//
// Every method of a nil *Histogram is valid: it observes nothing and
// snapshots as empty, so an optional histogram needs no check.
type Histogram struct {
	bounds []int64   // inclusive upper bounds, ascending, in the histogram's unit
	floats []float64 // bounds in the snapshot's unit, shared by every snapshot
	scale  float64   // snapshot unit per histogram unit
	counts []atomic.Uint64
	sum    atomic.Int64
}

// NewHistogram returns a histogram of counts (a fan-out size, a batch
// length) with the given inclusive upper bounds, which must ascend. Values
// above the last bound are counted in the implicit +Inf bucket.
func NewHistogram(bounds ...int64) *Histogram {
	return newHistogram(bounds, 1)
}

// NewDurationHistogram returns a histogram of durations with the given
// inclusive upper bounds, which must ascend; its snapshots are in seconds.
func NewDurationHistogram(bounds ...time.Duration) *Histogram {
	ns := make([]int64, len(bounds))
	for i, b := range bounds {
		ns[i] = int64(b)
	}
	return newHistogram(ns, 1/float64(time.Second))
}

// NewLatencyHistogram returns a duration histogram with the buckets every
// imcloud latency uses: 100µs to 10s in steps of 1, 2.5 and 5 per decade,
// from an in-process delivery to a Kafka round trip under load.
func NewLatencyHistogram() *Histogram {
	const us, ms = time.Microsecond, time.Millisecond
	return NewDurationHistogram(
		100*us, 250*us, 500*us,
		1*ms, 2500*us, 5*ms, 10*ms, 25*ms, 50*ms, 100*ms, 250*ms, 500*ms,
		time.Second, 2500*ms, 5*time.Second, 10*time.Second)
}

// NewSizeHistogram returns a count histogram with the buckets every imcloud
// size uses: powers of 4 from 1 to 4^10 (1,048,576), from a push to one
// connection to a broadcast on a full gateway.
func NewSizeHistogram() *Histogram {
	bounds := make([]int64, 11)
	for i := range bounds {
		bounds[i] = 1 << (2 * i)
	}
	return NewHistogram(bounds...)
}

func newHistogram(bounds []int64, scale float64) *Histogram {
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] {
			panic("imcloud: histogram bounds must ascend")
		}
	}
	h := &Histogram{
		bounds: slices.Clone(bounds),
		floats: make([]float64, len(bounds)),
		scale:  scale,
		counts: make([]atomic.Uint64, len(bounds)+1),
	}
	for i, b := range bounds {
		h.floats[i] = float64(b) * scale
	}
	return h
}

// Observe counts one value, in the histogram's unit.
func (h *Histogram) Observe(v int64) { h.ObserveN(v, 1) }

// ObserveN counts n observations of the same value (the fan-out of n
// pushes delivered together, say) at the cost of one.
func (h *Histogram) ObserveN(v int64, n uint64) {
	if h == nil || n == 0 {
		return
	}
	i, _ := slices.BinarySearch(h.bounds, v) // the first bound >= v, or len: +Inf
	h.counts[i].Add(n)
	h.sum.Add(v * int64(n))
}

// ObserveDuration counts one duration (a histogram from
// NewDurationHistogram).
func (h *Histogram) ObserveDuration(d time.Duration) { h.Observe(int64(d)) }

// ObserveSince counts the time elapsed since t.
func (h *Histogram) ObserveSince(t time.Time) {
	if h == nil {
		return
	}
	h.Observe(int64(time.Since(t)))
}

// HistogramSnapshot is a Histogram's state at one moment, in the
// snapshot's unit (seconds for durations), shaped as Prometheus wants it.
type HistogramSnapshot struct {
	// Bounds are the buckets' inclusive upper bounds, ascending; the +Inf
	// bucket is implicit (it is Count). Shared between snapshots: do not
	// modify.
	Bounds []float64
	// Cumulative[i] is the number of observations at or below Bounds[i].
	Cumulative []uint64
	// Count is the number of observations.
	Count uint64
	// Sum is the sum of the observed values.
	Sum float64
}

// Snapshot returns the histogram's buckets, count and sum.
func (h *Histogram) Snapshot() HistogramSnapshot {
	if h == nil {
		return HistogramSnapshot{}
	}
	s := HistogramSnapshot{Bounds: h.floats, Cumulative: make([]uint64, len(h.bounds))}
	var n uint64
	for i := range h.bounds {
		n += h.counts[i].Load()
		s.Cumulative[i] = n
	}
	s.Count = n + h.counts[len(h.bounds)].Load()
	s.Sum = float64(h.sum.Load()) * h.scale
	return s
}
