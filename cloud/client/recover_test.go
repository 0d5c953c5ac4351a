package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/logic"
)

// appendHistory appends m (its stream, offset, op and body) to h as if the
// push API had accepted it, and returns m with its ID, Accepted and Epoch
// set, ready to be delivered live.
func appendHistory(t *testing.T, h *logic.MemoryHistory, m *imcloud.Message) *imcloud.Message {
	t.Helper()
	m.ID, m.Accepted = imcloud.NewMessageID(), time.Now()
	items := []imcloud.HistoryAppend{{Stream: m.Stream, Entry: imcloud.HistoryEntry{Offset: m.Offset, ID: m.ID, Op: m.Op, Body: m.Body, Accepted: m.Accepted}}}
	require.NoError(t, h.Append(context.Background(), items))
	m.Epoch = items[0].Epoch
	return m
}

// TestRecoverWithToken: a client whose user the token names (no Mid in
// its config) starts from positions saved by an earlier life: its first
// auth carries its user stream's position, the node replays what it
// missed, and op 25 arrives on Recoveries with the positions updated.
func TestRecoverWithToken(t *testing.T) {
	h := logic.NewMemoryHistory(logic.MemoryHistoryConfig{})
	n := startNode(t, cloud.Config{History: h})
	s := imcloud.UserStream(77)
	var epoch string
	appendPush := func(off int64, body string) *imcloud.Message {
		m := appendHistory(t, h, &imcloud.Message{Kind: imcloud.KindKeys, Op: 1000, Body: []byte(body), Stream: s, Offset: off})
		epoch = m.Epoch
		return m
	}
	appendPush(3, "seen")
	appendPush(5, "missed 1")
	appendPush(8, "missed 2")
	tok, err := cloud.NewToken(secret, 77, time.Minute, "live://*")
	require.NoError(t, err)
	c, err := client.Dial(context.Background(), client.Config{Addr: n.tcpAddr, Token: tok, Recover: true,
		Positions: map[string]client.Position{string(s): {Epoch: epoch, Offset: 3}}})
	require.NoError(t, err)
	defer c.Close()
	for i, want := range []string{"missed 1", "missed 2"} {
		p := recv(t, c)
		assert.Equal(t, want, string(p.Body))
		assert.Equal(t, string(s), p.Stream)
		assert.Equal(t, epoch, p.Epoch)
		assert.Equal(t, []int64{5, 8}[i], p.Offset)
	}
	select {
	case r := <-c.Recoveries():
		assert.True(t, r.Recovered())
		assert.Equal(t, 2, r.Replayed())
	case <-time.After(5 * time.Second):
		t.Fatal("no recovery")
	}
	assert.Equal(t, map[string]client.Position{string(s): {Epoch: epoch, Offset: 8}}, c.Positions())

	live := appendPush(9, "live")
	live.Keys, live.Node = []string{c.Auth().Key}, n.srv.ID()
	push(t, n.srv, live)
	p := recv(t, c)
	assert.Equal(t, "live", string(p.Body))
	assert.Equal(t, client.Position{Epoch: epoch, Offset: 9}, c.Positions()[string(s)])
}
