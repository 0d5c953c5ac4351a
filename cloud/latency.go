package cloud

import (
	"math/rand/v2"
	"time"
)

// Delivery latency is the node's clock when a write carrying a push starts
// minus the push's Message.Accepted (logic's clock when it took the push),
// so it spans logic, the queue, job, the link and this node's queues, and
// it is only as exact as the machines' clocks agree (a push that seems to
// arrive before it was accepted counts as 0). Every latencySample-th write
// of a connection is sampled, on its first push, counting from a random
// phase so that connections with few writes are sampled too: the write
// path pays a counter per write and a clock reading per sample.
//
// The accepted time travels with each queued push in outItem.at, in the
// padding the item has anyway: 32 bits of acceptedTicks, wrapping every
// 2^46 ns (19.5 h); latencies of over half of that are not measured.

// latencySample is one in how many writes is sampled; it divides 256, the
// period of conn.writes.
const latencySample = 64

// tickShift makes an accepted tick 2^14 ns (16.384 µs).
const tickShift = 14

// latencyPhase is a new connection's first conn.writes.
func latencyPhase() uint8 { return uint8(rand.Uint32()) }

// acceptedTicks is t in 32-bit ticks, for outItem.at; 0 (no sample) for a
// zero t.
func acceptedTicks(t time.Time) uint32 {
	if t.IsZero() {
		return 0
	}
	return uint32(t.UnixNano() >> tickShift)
}

// sampleLatency observes, for one write of c's in latencySample, the
// delivery latency of the first push in batch that carries its accepted
// time. The caller holds c's writer claim and is about to hand batch to
// the socket.
func (c *conn) sampleLatency(batch []outItem) {
	c.writes++
	if c.writes%latencySample != 0 {
		return
	}
	for i := range batch {
		if at := batch[i].at; at != 0 {
			c.srv.stats.latency.ObserveDuration(latencySince(at, time.Now()))
			return
		}
	}
}

// latencySince is the time from accepted tick at to now: the difference of
// the ticks mod 2^32, so a wrap between them does not matter; 0 when at is
// after now.
func latencySince(at uint32, now time.Time) time.Duration {
	d := int32(acceptedTicks(now) - at)
	return time.Duration(max(d, 0)) << tickShift
}
