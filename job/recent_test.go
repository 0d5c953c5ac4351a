package job

import (
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/require"
)

// TestRecentBounds: the record of recent fan-outs keeps three
// RefreshIntervals, CatchUpMessages and CatchUpBytes; since answers what
// a node registered at a time needs (accepted from a second before it:
// the clocks' skew), and whether the record dropped any of it.
func TestRecentBounds(t *testing.T) {
	base := time.Unix(1700000000, 0)
	at := func(d time.Duration) time.Time { return base.Add(d) }
	msg := func(body string, accepted time.Duration) *imcloud.Message {
		return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: "live://1",
			Body: []byte(body), Accepted: at(accepted)}
	}
	var r recent
	r.init(Config{RefreshInterval: time.Second, CatchUpMessages: 3, CatchUpBytes: 1 << 20})
	names := func(since time.Time, now time.Duration) ([]string, bool) {
		msgs, gap := r.since(since, at(now), nil)
		return bodies(msgs, nil), gap
	}

	r.add(msg("m1", 0), at(0).UnixNano())
	r.add(msg("m2", time.Second), at(time.Second).UnixNano())
	got, gap := names(at(1500*time.Millisecond), time.Second)
	require.Equal(t, []string{"m2"}, got, "accepted a second or less before Since: caught up; earlier: not")
	require.False(t, gap)
	got, _ = names(time.Time{}, time.Second)
	require.Equal(t, []string{"m1", "m2"}, got, "a node without Since gets everything kept")

	expiring := msg("m3", time.Second)
	expiring.Expires = at(2 * time.Second)
	r.add(expiring, at(time.Second).UnixNano())
	got, _ = names(at(0), 2*time.Second)
	require.Equal(t, []string{"m1", "m2"}, got, "expired: not handed")

	// m1 leaves past three RefreshIntervals, m2 to keep three fan-outs;
	// m3 stays, expired.
	r.add(msg("m4", 3500*time.Millisecond), at(3500*time.Millisecond).UnixNano())
	r.add(msg("m5", 3600*time.Millisecond), at(3600*time.Millisecond).UnixNano())
	got, gap = names(at(1500*time.Millisecond), 4*time.Second)
	require.Equal(t, []string{"m4", "m5"}, got)
	require.True(t, gap, "m2 and m3 (accepted since) were dropped")
	got, gap = names(at(2500*time.Millisecond), 4*time.Second)
	require.Equal(t, []string{"m4", "m5"}, got)
	require.False(t, gap, "nothing dropped was accepted since (less a second)")

	// The count bound.
	for i, b := range []string{"m6", "m7", "m8"} {
		d := 3700*time.Millisecond + time.Duration(i)*time.Millisecond
		r.add(msg(b, d), at(d).UnixNano())
	}
	got, gap = names(at(3550*time.Millisecond), 4*time.Second)
	require.Equal(t, []string{"m6", "m7", "m8"}, got)
	require.True(t, gap, "m4 and m5 dropped: m5 was accepted since (less a second)")

	// The bytes bound.
	var small recent
	small.init(Config{RefreshInterval: time.Second, CatchUpMessages: 100, CatchUpBytes: 2 * approxSize(msg("bx", 0))})
	for _, b := range []string{"b1", "b2", "b3"} {
		small.add(msg(b, 0), at(0).UnixNano())
	}
	msgs, gap := small.since(at(0), at(0), nil)
	require.Equal(t, []string{"b2", "b3"}, bodies(msgs, nil))
	require.True(t, gap)
}
