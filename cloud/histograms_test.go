package cloud_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
)

// TestFanoutHistogram: each message observes the connections it was
// queued to on this node, a merged room run once per push, 0 included.
func TestFanoutHistogram(t *testing.T) {
	n := startNode(t, cloud.Config{})
	var keys []string
	for i, room := range []string{"live://f", "live://f", "live://other"} {
		c := dialRaw(t, n.tcpAddr, false)
		keys = append(keys, c.auth(1, goimAuth(int64(i+1), "", room, 1000)).Key)
	}
	deliver(t, n.srv,
		roomMsg("live://f", 1000, "a"), roomMsg("live://f", 1000, "b"), roomMsg("live://f", 1000, "c"), // one run: 2 each
		roomMsg("live://other", 1000, "x"), // 1
		keysMsg(1000, "k", keys[0]),        // 1
		keysMsg(1000, "k", "nobody"),       // 0
		&imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1000, Body: []byte("all")}) // 3
	f := n.srv.Stats().Fanout
	require.EqualValues(t, 7, f.Count)
	require.EqualValues(t, 3*2+1+1+0+3, f.Sum)
	require.Equal(t, []float64{1, 4}, f.Bounds[:2])
	require.Equal(t, []uint64{3, 7}, f.Cumulative[:2], "x, the key and nobody reached at most one connection")

	deliver(t, n.srv, &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1000, Body: []byte("paced"), Speed: 1000})
	waitFor(t, "the paced broadcast's fan-out", func() bool { return n.srv.Stats().Fanout.Count == 8 })
	require.EqualValues(t, 3*2+1+1+0+3+3, n.srv.Stats().Fanout.Sum)
}

// TestDeliveryLatencySampled delivers pushes accepted 50 ms ago, one
// write each: the samples are of 50 ms and more.
func TestDeliveryLatencySampled(t *testing.T) {
	n := startNode(t, cloud.Config{})
	c := dialRaw(t, n.tcpAddr, false)
	key := c.auth(1, goimAuth(1, "", "", 1000)).Key
	const writes = 2000 // every 64th write of the connection is sampled: about 31 here
	for i := range writes {
		m := keysMsg(1000, fmt.Sprint(i), key)
		m.Accepted = time.Now().Add(-50 * time.Millisecond)
		deliver(t, n.srv, m)
		require.Equal(t, fmt.Sprint(i), string(c.nextOp(1000).body))
	}
	h := n.srv.Stats().DeliveryLatency
	require.Positive(t, h.Count)
	require.Less(t, h.Count, uint64(writes/4), "sampled")
	for i, b := range h.Bounds {
		if b < 0.05 {
			require.Zero(t, h.Cumulative[i], "no sample under 50 ms (le=%v)", b)
		}
	}
}
