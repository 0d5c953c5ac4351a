package cloud

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/protocol"
)

// TestExpiryTimerOnlyWithExpiry: a connection holds an expiry timer only
// while its identity has an expiry: none for an identity without one, one
// after auth with one, none again after a refresh to an identity without
// one.
func TestExpiryTimerOnlyWithExpiry(t *testing.T) {
	auth := AuthFunc(func(_ context.Context, r *AuthRequest) (Identity, error) {
		id := Identity{Mid: r.Body.Mid, Key: r.Body.Key}
		if r.Body.Token == "exp" {
			id.Expires = time.Now().Add(time.Hour)
		}
		return id, nil
	})
	s, err := New(Config{Authenticator: auth})
	require.NoError(t, err)
	addr := serveTCPForTest(t, s)

	// timerAfter authenticates key with token, sends the refreshes (ver 2)
	// and closes; once the node has let the connection go it reports
	// whether the connection held a timer at its end.
	timerAfter := func(key, token string, refreshes ...string) bool {
		nc, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer nc.Close()
		br := bufio.NewReader(nc)
		write := func(op int32, body string) {
			_, err := nc.Write(protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerExtensions, Op: op, Seq: 1, Body: []byte(body)}))
			require.NoError(t, err)
		}
		read := func(op int32) {
			var f protocol.Frame
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			require.NoError(t, protocol.ReadFrame(br, &f, 0))
			require.Equal(t, op, f.Op)
		}
		write(protocol.OpAuth, `{"mid":1,"key":"`+key+`","token":"`+token+`"}`)
		read(protocol.OpAuthReply)
		for _, tok := range refreshes {
			write(protocol.OpRefresh, tok)
			read(protocol.OpRefreshReply)
		}
		c := s.bs.of(key).get(key)
		require.NotNil(t, c)
		_ = nc.Close()
		// The count drops after the reader's finish: what it wrote is
		// visible from here on.
		deadline := time.Now().Add(5 * time.Second)
		for s.stats.sessions.Load() != 0 {
			require.True(t, time.Now().Before(deadline), "the connection did not end")
			time.Sleep(5 * time.Millisecond)
		}
		return c.expiry != nil
	}
	require.False(t, timerAfter("none", ""), "no expiry, no timer")
	require.True(t, timerAfter("exp", "exp"), "an expiry holds a timer")
	require.True(t, timerAfter("later", "", "exp"), "a refresh to an expiry arms one")
	require.False(t, timerAfter("dropped", "exp", "none"), "a refresh without an expiry drops it")
}
