package imcloud_test

import (
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/require"
)

func TestHistogramBuckets(t *testing.T) {
	h := imcloud.NewHistogram(1, 4, 16)
	for _, v := range []int64{0, 1, 2, 4, 5, 16, 17, 1000} {
		h.Observe(v)
	}
	s := h.Snapshot()
	require.Equal(t, []float64{1, 4, 16}, s.Bounds)
	require.Equal(t, []uint64{2, 4, 6}, s.Cumulative, "a bound is inclusive (le)")
	require.Equal(t, uint64(8), s.Count, "values above the last bound count in +Inf")
	require.Equal(t, float64(0+1+2+4+5+16+17+1000), s.Sum)
}

func TestHistogramObserveN(t *testing.T) {
	h := imcloud.NewHistogram(1, 4)
	h.ObserveN(3, 5)
	h.ObserveN(9, 0)
	s := h.Snapshot()
	require.Equal(t, []uint64{0, 5}, s.Cumulative)
	require.Equal(t, uint64(5), s.Count)
	require.Equal(t, float64(15), s.Sum)
}

func TestDurationHistogramSnapshotsInSeconds(t *testing.T) {
	h := imcloud.NewDurationHistogram(time.Millisecond, time.Second)
	h.ObserveDuration(500 * time.Microsecond)
	h.ObserveDuration(2 * time.Second)
	h.ObserveSince(time.Now().Add(-100 * time.Millisecond))
	s := h.Snapshot()
	require.Equal(t, []float64{0.001, 1}, s.Bounds)
	require.Equal(t, []uint64{1, 2}, s.Cumulative)
	require.Equal(t, uint64(3), s.Count)
	require.InDelta(t, 2.1005, s.Sum, 0.05)
}

func TestHistogramStandardBuckets(t *testing.T) {
	lat := imcloud.NewLatencyHistogram().Snapshot()
	require.Len(t, lat.Bounds, 16)
	require.Equal(t, 0.0001, lat.Bounds[0])
	require.Equal(t, 10.0, lat.Bounds[15])
	size := imcloud.NewSizeHistogram().Snapshot()
	require.Equal(t, []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576}, size.Bounds)
}

func TestHistogramNilIsEmpty(t *testing.T) {
	var h *imcloud.Histogram
	h.Observe(1)
	h.ObserveDuration(time.Second)
	h.ObserveSince(time.Now())
	require.Equal(t, imcloud.HistogramSnapshot{}, h.Snapshot())
}

func TestHistogramBoundsMustAscend(t *testing.T) {
	require.Panics(t, func() { imcloud.NewHistogram(4, 1) })
	require.Panics(t, func() { imcloud.NewHistogram(1, 1) })
}

// TestHistogramConcurrent observes from many goroutines while snapshots
// are taken: every snapshot is consistent (cumulative, count at least the
// last bucket) and the final one counts everything.
func TestHistogramConcurrent(t *testing.T) {
	h := imcloud.NewSizeHistogram()
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				h.Observe(int64(w*each + i))
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		s := h.Snapshot()
		for i := 1; i < len(s.Cumulative); i++ {
			require.LessOrEqual(t, s.Cumulative[i-1], s.Cumulative[i])
		}
		require.LessOrEqual(t, s.Cumulative[len(s.Cumulative)-1], s.Count)
	}
	s := h.Snapshot()
	require.Equal(t, uint64(workers*each), s.Count)
	n := int64(workers * each)
	require.Equal(t, float64(n*(n-1)/2), s.Sum)
}

func TestHistogramObserveDoesNotAllocate(t *testing.T) {
	h := imcloud.NewLatencyHistogram()
	allocs := testing.AllocsPerRun(1000, func() { h.ObserveDuration(3 * time.Millisecond) })
	require.Zero(t, allocs)
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := imcloud.NewLatencyHistogram()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			d = (d + 7919*time.Microsecond) % (20 * time.Second)
			h.ObserveDuration(d)
		}
	})
}
