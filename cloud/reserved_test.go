package cloud_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
)

// TestReservedOpsNeverPushed: a message of a reserved op (op 6, or an op 9
// batch carrying one) reaches no client whatever its target, even one
// that accepts the op; Deliver succeeds and Reserved counts it, and the
// push after it arrives.
func TestReservedOpsNeverPushed(t *testing.T) {
	n := startNode(t, cloud.Config{})
	for _, isWS := range []bool{false, true} {
		addr := n.tcpAddr
		if isWS {
			addr = n.wsAddr
		}
		c := dialRaw(t, addr, isWS)
		r := c.auth(1, goimAuth(7, "", "live://6", 1000, 6, 9))
		targets := map[string]func(op int32, body []byte) *imcloud.Message{
			"room": func(op int32, body []byte) *imcloud.Message { return roomMsg("live://6", op, string(body)) },
			"key":  func(op int32, body []byte) *imcloud.Message { return keysMsg(op, string(body), r.Key) },
			"broadcast": func(op int32, body []byte) *imcloud.Message {
				return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: op, Body: body}
			},
		}
		for name, msg := range targets {
			before := n.srv.Stats().Reserved
			reason := []byte(`{"reason":"maintenance","reconnect_ms":86400000}`)
			deliver(t, n.srv, msg(6, reason), msg(9, encodeRaw(1, 6, 0, reason)))
			assert.Equal(t, before+2, n.srv.Stats().Reserved, "%s ws=%v", name, isWS)
			deliver(t, n.srv, msg(1000, []byte("after "+name)))
			f, err := c.next(5 * time.Second)
			require.NoError(t, err)
			assert.Equal(t, int32(1000), f.op, "%s ws=%v: the first frame is the push after", name, isWS)
			assert.Equal(t, "after "+name, string(f.body))
		}
	}
	assert.Equal(t, uint64(0), n.srv.Stats().Invalid)
}
