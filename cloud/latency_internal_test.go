package cloud

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLatencySince(t *testing.T) {
	now := time.Now()
	tick := time.Duration(1) << tickShift
	for _, tc := range []struct {
		name     string
		accepted time.Time
		want     time.Duration
	}{
		{"3 s ago", now.Add(-3 * time.Second), 3 * time.Second},
		{"just now", now, 0},
		{"ahead of this clock", now.Add(time.Second), 0},
		{"9 h ago", now.Add(-9 * time.Hour), 9 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.InDelta(t, tc.want, latencySince(acceptedTicks(tc.accepted), now), float64(tick))
		})
	}
	require.Zero(t, acceptedTicks(time.Time{}), "no accepted time: no sample")

	// The 32-bit ticks wrap every 2^46 ns; a latency across the wrap is
	// still the difference.
	wrap := time.Unix(0, 1<<46)
	require.InDelta(t, time.Second, latencySince(acceptedTicks(wrap.Add(-time.Second)), wrap), float64(tick))
}

func TestSampleLatencyTakesTheFirstStampedPush(t *testing.T) {
	s := &Server{}
	s.stats.initHistograms()
	c := &conn{srv: s, writes: latencyPhase()}
	batch := []outItem{{kind: itemFrame}, {at: acceptedTicks(time.Now().Add(-2 * time.Second))}}
	for range latencySample * 100 {
		c.sampleLatency(batch)
	}
	h := s.stats.latency.Snapshot()
	require.EqualValues(t, 100, h.Count, "one write in latencySample")
	require.InDelta(t, 2, h.Sum/float64(h.Count), 0.1)

	c.sampleLatency(batch[:1])
	for range latencySample {
		c.sampleLatency(batch[:1])
	}
	require.EqualValues(t, 100, s.stats.latency.Snapshot().Count, "a write of replies only has no push to sample")
}
