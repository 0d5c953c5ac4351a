package main

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLatencyHistQuantiles(t *testing.T) {
	h := newLatencyHist()
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	require.EqualValues(t, 1000, h.count())
	within := func(got, want time.Duration) {
		t.Helper()
		require.InEpsilon(t, float64(want), float64(got), 0.03, "got %v want %v", got, want)
	}
	within(h.quantile(0.5), 500*time.Millisecond)
	within(h.quantile(0.99), 990*time.Millisecond)
	require.Equal(t, time.Second, h.quantile(1))
	require.Equal(t, time.Second, h.maximum())

	other := newLatencyHist()
	other.record(5 * time.Second)
	h.merge(other)
	require.EqualValues(t, 1001, h.count())
	require.Equal(t, 5*time.Second, h.maximum())

	old := h.reset()
	require.EqualValues(t, 1001, old.count())
	require.Zero(t, h.count())
	require.Zero(t, h.quantile(0.99))
}

func TestReadProcSelf(t *testing.T) {
	u, err := readProc(os.Getpid())
	require.NoError(t, err)
	require.Greater(t, u.RSSBytes, int64(1<<20), "a Go test process holds more than 1 MB")
	require.GreaterOrEqual(t, u.CPUSeconds, 0.0)
	_, err = readProc(-1)
	require.Error(t, err)
}

// BenchmarkBucketOf: filing one latency (two per delivery in the
// generator's hot path).
func BenchmarkBucketOf(b *testing.B) {
	ds := make([]time.Duration, 1024)
	for i := range ds {
		ds[i] = time.Duration(i+1) * 97 * time.Microsecond
	}
	n := 0
	for i := 0; b.Loop(); i++ {
		n += bucketOf(ds[i&1023])
	}
	_ = n
}
