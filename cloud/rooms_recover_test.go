package cloud_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/protocol"
)

// expectPushAt reads c's next frames: each an op 24 frame of want's push
// (its body, stream, epoch and offset), in order.
func (c *goimClient) expectPushAt(want ...*imcloud.Message) {
	c.t.Helper()
	for i, m := range want {
		f, err := c.next(5 * time.Second)
		require.NoError(c.t, err)
		require.Equal(c.t, protocol.OpPushAt, f.op, "push %d of %d: %q", i+1, len(want), f.body)
		p, err := protocol.ParsePushAt(f.body)
		require.NoError(c.t, err)
		assert.Equal(c.t, string(m.Body), string(p.Body), "push %d of %d", i+1, len(want))
		assert.Equal(c.t, string(m.Stream), string(p.Stream))
		assert.Equal(c.t, m.Epoch, string(p.Epoch))
		assert.Equal(c.t, m.Offset, p.Offset)
	}
}

// expectRecovery reads c's next frame: op 25 with one stream, want.
func (c *goimClient) expectRecovery(want protocol.RecoveryStream) {
	c.t.Helper()
	f, err := c.next(5 * time.Second)
	require.NoError(c.t, err)
	require.Equal(c.t, protocol.OpRecovery, f.op, "op 25, got %d %q", f.op, f.body)
	var r protocol.Recovery
	require.NoError(c.t, json.Unmarshal(f.body, &r))
	assert.Equal(c.t, []protocol.RecoveryStream{want}, r.Streams)
}

// TestRecoverJoin: a recover connection's Join replays the room's stream
// from the position it carries, after the reply and before the room's
// live pushes, then op 25; a bare room key gets op 25 with the stream's
// top; a push appended while the replay reads arrives once; Leave stops
// the room's pushes without an op 25; a Join of a room the connection is
// in replays nothing.
func TestRecoverJoin(t *testing.T) {
	for _, transport := range []string{"tcp", "ws"} {
		t.Run(transport, func(t *testing.T) {
			j := newJournal(t, logic.MemoryHistoryConfig{})
			hook := &readHook{History: j.h}
			n := startNode(t, cloud.Config{History: hook})
			addr := n.tcpAddr
			if transport == "ws" {
				addr = n.wsAddr
			}
			marker := func(body string) {
				m := keysMsg(1000, body, "k14")
				m.Node = n.srv.ID()
				deliver(t, n.srv, m)
			}
			rc := dialRaw(t, addr, transport == "ws")
			rc.auth(2, `{"mid":14,"key":"k14","accepts":[1000],"recover":true}`)
			rc.nextOp(protocol.OpRecovery)

			top := j.room("live://j", "before", n.srv) // nobody here yet
			assert.Equal(t, roomReply{RoomID: "live://j", OK: true}, rc.roomRequest(protocol.OpJoin, 2, "live://j"))
			rc.expectRecovery(protocol.RecoveryStream{Stream: "r:live://j", Epoch: top.Epoch, Offset: top.Offset, Recovered: true})
			seen := j.room("live://j", "seen", n.srv)
			rc.expectPushAt(seen)

			assert.True(t, rc.roomRequest(protocol.OpLeave, 3, "live://j").OK)
			marker("after leave")
			f, err := rc.next(5 * time.Second)
			require.NoError(t, err)
			assert.Equal(t, rawFrame{ver: 1, op: 1000, body: []byte("after leave")}, f, "no op 25 after a Leave")

			missed := []*imcloud.Message{j.room("live://j", "m1", n.srv), j.room("live://j", "m2", n.srv)}
			duringC := make(chan *imcloud.Message, 1)
			hook.mu.Lock()
			hook.before = func(imcloud.Stream) {
				select {
				case duringC <- j.room("live://j", "during", n.srv): // in the read, and live after the mark
				default:
				}
			}
			hook.mu.Unlock()
			body := fmt.Sprintf(`{"room_id":"live://j","position":{"epoch":%q,"offset":%d}}`, seen.Epoch, seen.Offset)
			assert.Equal(t, roomReply{RoomID: "live://j", OK: true}, rc.roomRequest(protocol.OpJoin, 4, body))
			during := <-duringC
			hook.mu.Lock()
			hook.before = nil
			hook.mu.Unlock()
			rc.expectPushAt(append(missed, during)...)
			rc.expectRecovery(protocol.RecoveryStream{Stream: "r:live://j", Epoch: during.Epoch, Offset: during.Offset, Recovered: true, Replayed: 3})
			live := j.room("live://j", "live", n.srv)
			rc.expectPushAt(live)

			reads := hook.count("r:live://j")
			assert.True(t, rc.roomRequest(protocol.OpJoin, 5, body).OK)
			marker("joined already")
			f, err = rc.next(5 * time.Second)
			require.NoError(t, err)
			assert.Equal(t, rawFrame{ver: 1, op: 1000, body: []byte("joined already")}, f, "nothing replayed")
			assert.Equal(t, reads, hook.count("r:live://j"))
		})
	}
}
