package cloud_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
)

// TestFilteredCounted: key, broadcast and paced-broadcast pushes of an op
// a connection does not accept are skipped and counted in Filtered, once
// per skipped connection; room pushes are never filtered.
func TestFilteredCounted(t *testing.T) {
	n := startNode(t, cloud.Config{})
	var keys []string
	var clients []*goimClient
	for i := 0; i < 3; i++ {
		c := dialRaw(t, n.tcpAddr, false)
		accepts := []int32{1000}
		if i == 0 {
			accepts = append(accepts, 1005) // one of three accepts 1005
		}
		r := c.auth(1, goimAuth(int64(10+i), "", "live://f", accepts...))
		keys, clients = append(keys, r.Key), append(clients, c)
	}
	broadcast := func(op int32, speed int32) *imcloud.Message {
		return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: op, Speed: speed, Body: []byte("b")}
	}
	deliver(t, n.srv, keysMsg(1005, "k", keys...))
	assert.Equal(t, uint64(2), n.srv.Stats().Filtered, "key push")
	deliver(t, n.srv, broadcast(1005, 0))
	assert.Equal(t, uint64(4), n.srv.Stats().Filtered, "broadcast")
	deliver(t, n.srv, broadcast(1005, 1000))
	waitFor(t, "the paced broadcast's count", func() bool { return n.srv.Stats().Filtered == 6 })
	deliver(t, n.srv, roomMsg("live://f", 1005, "r"))
	for i, c := range clients {
		if i == 0 {
			for _, want := range []string{"k", "b", "b"} {
				f, err := c.next(5 * time.Second)
				require.NoError(t, err)
				assert.Equal(t, want, string(f.body))
			}
		}
		f, err := c.next(5 * time.Second)
		require.NoError(t, err)
		assert.Equal(t, "r", string(f.body), "room pushes are not filtered")
	}
	st := n.srv.Stats()
	assert.Equal(t, uint64(6), st.Filtered, "room pushes are not counted")
	assert.Equal(t, uint64(6), st.Delivered)
}
