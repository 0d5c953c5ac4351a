package cloud_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden captures in testdata/golden")

// TestGoldenCapture records what goim v1 clients (auth with header ver 1,
// as goim's JavaScript and benchmark clients send it) and ver-2 clients
// (auth with ver 2: extensions) receive over TCP and WebSocket for a fixed
// script of pushes, and compares it with testdata/golden/<ver>-<transport>.txt:
// every frame's header fields and body, in order, op 9 batches with their
// inner frames, WebSocket framing included. It pins the client-visible
// bytes so that changes to the write path cannot alter them unnoticed;
// after a deliberate protocol change, regenerate with
//
//	go test ./cloud/ -run Golden -update
//
// and review the diff.
//
// Determinism: whether pushes delivered by separate Deliver calls share an
// op 9 WebSocket message depends on whether the first one's write was still
// pending, so the script waits for each push to arrive before delivering
// the next; pushes meant to travel together go in one Deliver call (a room
// run: one queued item, so the packing is fixed). Pushes that must not
// arrive are followed by one that must, so the capture shows they did not.
// The only run-to-run variations are normalised: the server-generated
// connection key (wireCapture.formatFrame) and how a closed TCP connection
// ends (wireCapture.expectEnd); the reconnect hint in op 6, random between
// ReconnectMin and ReconnectMax, is fixed by making them equal.
func TestGoldenCapture(t *testing.T) {
	for _, ver := range []int16{1, 2} {
		for _, transport := range []string{"tcp", "ws"} {
			name := map[int16]string{1: "v1", 2: "v2"}[ver] + "-" + transport
			t.Run(name, func(t *testing.T) {
				got := runGoldenScript(t, transport == "ws", ver)
				path := filepath.Join("testdata", "golden", name+".txt")
				if *updateGolden {
					require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
					require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err, "run with -update to create it")
				assert.Equal(t, string(want), got, "client-visible bytes changed (%s)", path)
			})
		}
	}
}

// goldenAuth is goim's JavaScript client's auth body: no key (the server
// assigns one), a room, the accepted push ops.
const goldenAuth = `{"mid":123,"room_id":"live://1000","platform":"web","accepts":[1000,1001,1002]}`

// runGoldenScript runs the script against a fresh node and returns the
// capture.
func runGoldenScript(t *testing.T, isWS bool, ver int16) string {
	n := startNode(t, cloud.Config{ReconnectMin: 3 * time.Second, ReconnectMax: 3 * time.Second})
	addr := n.tcpAddr
	if isWS {
		addr = n.wsAddr
	}
	c := dialCapture(t, addr, isWS, ver)
	push := func(msgs ...*imcloud.Message) {
		t.Helper()
		for _, m := range msgs {
			m.ID = imcloud.NewMessageID()
			if m.Kind == imcloud.KindKeys {
				m.Node = n.srv.ID()
			}
		}
		require.NoError(t, n.srv.Deliver(context.Background(), msgs))
	}
	keys := func(op int32, body string, keys ...string) *imcloud.Message {
		return &imcloud.Message{Kind: imcloud.KindKeys, Keys: keys, Op: op, Body: []byte(body)}
	}
	room := func(room string, op int32, body string) *imcloud.Message {
		return &imcloud.Message{Kind: imcloud.KindRoom, Room: room, Op: op, Body: []byte(body)}
	}
	all := func(op int32, body string) *imcloud.Message {
		return &imcloud.Message{Kind: imcloud.KindBroadcast, Op: op, Body: []byte(body)}
	}

	c.note("auth, as goim's JavaScript client sends it (seq 1)")
	c.send(7, 1, goldenAuth)
	c.expect(1)
	key := c.key
	require.NotEmpty(t, key, "the AuthReply names the assigned key")

	c.note("heartbeat: the reply carries the room's online count")
	c.send(2, 2, "")
	c.expect(1)

	c.note("key push (accepted op 1000)")
	push(keys(1000, "key push", key))
	c.expect(1)

	c.note("mid push: the keys of every device of mid 123, one of them on another node")
	push(keys(1001, "mid push", "elsewhere-device", key))
	c.expect(1)

	c.note("room push of op 1003, not in accepts: room pushes are not filtered")
	push(room("live://1000", 1003, "room push"))
	c.expect(1)

	c.note("broadcast (accepted op 1002)")
	push(all(1002, "broadcast"))
	c.expect(1)

	c.note("key push and broadcast of op 1009, not accepted: never sent; then a key push that is")
	push(keys(1009, "filtered key push", key), all(1009, "filtered broadcast"))
	push(keys(1000, "after filtered", key))
	c.expect(1)

	c.note("sub 1009: a key push of op 1009 now arrives")
	c.send(14, 3, "1009")
	c.expect(1)
	push(keys(1009, "subscribed", key))
	c.expect(1)

	c.note("unsub 1000: a key push of op 1000 is never sent; then one of op 1009 is")
	c.send(16, 4, "1000")
	c.expect(1)
	push(keys(1000, "unsubscribed", key))
	push(keys(1009, "after unsub", key))
	c.expect(1)

	c.note("room batch: three room pushes in one Deliver call")
	push(room("live://1000", 1000, "batch 1"), room("live://1000", 1001, "batch 2"), room("live://1000", 1002, "batch 3"))
	c.expect(3)

	c.note("goim's raw batch from the job: an op 9 room push carrying two frames")
	raw := append(encodeRaw(1, 1000, 0, []byte("raw 1")), encodeRaw(1, 1001, 0, []byte("raw 2"))...)
	push(&imcloud.Message{Kind: imcloud.KindRoom, Room: "live://1000", Op: 9, Body: raw})
	c.expect(2)

	c.note("room batch over the WebSocket batch cap (4096 bytes of op 9 body): three pushes of 1500 bytes")
	push(room("live://1000", 1000, strings.Repeat("a", 1500)), room("live://1000", 1001, strings.Repeat("b", 1500)),
		room("live://1000", 1002, strings.Repeat("c", 1500)))
	c.expect(3)

	c.note("upstream message (op 4): the same op back, seq echoed, empty body")
	c.send(4, 5, "hello")
	c.expect(1)

	c.note("change room: the reply echoes the room; a push to the old room is never sent, one to the new room is")
	c.send(12, 6, "live://2000")
	c.expect(1)
	push(room("live://1000", 1000, "old room"))
	push(room("live://2000", 1000, "new room"))
	c.expect(1)
	c.send(2, 7, "")
	c.expect(1)

	c.note("change room to none: the heartbeat's count is 0")
	c.send(12, 8, "")
	c.expect(1)
	c.send(2, 9, "")
	c.expect(1)

	c.note("a second connection of mid 123, kicked: op 6 and a WebSocket close for ver 2 only, then the end")
	k := dialCapture(t, addr, isWS, ver)
	k.send(7, 1, goldenAuth)
	k.expect(1)
	n.srv.Kick(k.key, "kicked")
	k.expectEnd()
	c.lines = append(c.lines, k.lines...)

	c.note("server shutdown: op 6 and a WebSocket close for ver 2 only, then the connection ends")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- n.srv.Shutdown(ctx)
	}()
	c.expectEnd()
	require.NoError(t, <-done)
	return strings.Join(c.lines, "\n") + "\n"
}
