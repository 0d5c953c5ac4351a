package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/protocol"
)

// mint returns a token of mid valid for ttl and its "exp".
func mint(t *testing.T, mid int64, ttl time.Duration) (string, time.Time) {
	t.Helper()
	tok, err := cloud.NewToken(secret, mid, ttl, "*")
	require.NoError(t, err)
	var claims jwt.RegisteredClaims
	_, _, err = jwt.NewParser().ParseUnverified(tok, &claims)
	require.NoError(t, err)
	return tok, claims.ExpiresAt.Time
}

// tokens is a TokenFunc that mints tokens of mid valid for ttl, counting
// its calls; next, when set, gives the token of a given call instead.
type tokens struct {
	mid   int64
	ttl   time.Duration
	calls atomic.Int32
	next  func(call int32) (string, error)
}

func (f *tokens) get(context.Context) (string, error) {
	n := f.calls.Add(1)
	if f.next != nil {
		if tok, err := f.next(n); tok != "" || err != nil {
			return tok, err
		}
	}
	return cloud.NewToken(secret, f.mid, f.ttl, "*")
}

// TestClientTokenExpires: a client whose token is not refreshed is closed
// by the node within a second of the token's "exp", not before; with
// Extensions it hears "token_expired".
func TestClientTokenExpires(t *testing.T) {
	n := startNode(t, cloud.Config{})
	for _, ext := range []bool{true, false} {
		tok, exp := mint(t, 3, 1500*time.Millisecond)
		c, err := client.Dial(context.Background(), client.Config{Addr: n.tcpAddr, Token: tok, Extensions: ext})
		require.NoError(t, err)
		defer c.Close()
		if ext {
			d := receive(t, c.Disconnects(), "op 6")
			assert.Equal(t, "token_expired", d.Reason)
		}
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("not closed at the token's expiry")
		}
		at := time.Now()
		require.False(t, at.Before(exp), "closed %v before exp", exp.Sub(at))
		require.Less(t, at.Sub(exp), time.Second, "extensions=%v", ext)
	}
}

// TestClientTokenFuncKeepsConnection: a client with TokenFunc refreshes
// its short-lived tokens before they expire and keeps its one connection
// past several of their expiries; pushes still reach it.
func TestClientTokenFuncKeepsConnection(t *testing.T) {
	n := startNode(t, cloud.Config{})
	f := &tokens{mid: 4, ttl: 1500 * time.Millisecond}
	c, err := client.Dial(context.Background(), client.Config{Addr: n.tcpAddr, TokenFunc: f.get, Extensions: true, Reconnect: true})
	require.NoError(t, err)
	defer c.Close()
	start := time.Now()
	// Every token lives at most 1.5 s: after 3.5 s and four refreshes,
	// the first two have expired.
	require.Eventually(t, func() bool { return f.calls.Load() >= 5 && time.Since(start) > 3500*time.Millisecond },
		10*time.Second, 10*time.Millisecond)
	assert.True(t, c.Connected())
	assert.Equal(t, uint64(1), n.srv.Stats().AuthOK, "one connection all along")
	select {
	case d := <-c.Disconnects():
		t.Fatalf("disconnected: %+v", d)
	case err := <-c.TokenErrors():
		t.Fatalf("refresh failed: %v", err)
	default:
	}
	push(t, n.srv, &imcloud.Message{Kind: imcloud.KindKeys, Node: "x", Op: 1000, Keys: []string{c.Auth().Key}, Body: []byte("still here")})
	assert.Equal(t, "still here", string(recv(t, c).Body))
}

// TestClientTokenRefreshRefused: a refresh with another user's token or a
// bad one is refused: the background refresh reports the *RefreshError on
// TokenErrors() and Refresh returns it; the node says "auth" and closes
// the connection.
func TestClientTokenRefreshRefused(t *testing.T) {
	n := startNode(t, cloud.Config{})
	other, _ := mint(t, 99, time.Hour)
	for name, tc := range map[string]struct {
		tok, code  string
		background bool
	}{
		"another user, background": {other, "other_user", true},
		"bad token, Refresh":       {"not.a.token", "invalid_token", false},
	} {
		t.Run(name, func(t *testing.T) {
			ttl := time.Hour
			if tc.background {
				ttl = 1500 * time.Millisecond // refreshed within about a second
			}
			f := &tokens{mid: 4, ttl: ttl, next: func(call int32) (string, error) {
				if call == 2 {
					return tc.tok, nil
				}
				return "", nil
			}}
			c, err := client.Dial(context.Background(), client.Config{Addr: n.tcpAddr, TokenFunc: f.get, Extensions: true})
			require.NoError(t, err)
			defer c.Close()
			var refusal *client.RefreshError
			if tc.background {
				err = receive(t, c.TokenErrors(), "token error")
			} else {
				_, err = c.Refresh(context.Background())
			}
			require.ErrorAs(t, err, &refusal)
			require.ErrorIs(t, err, client.ErrRefreshRefused)
			assert.Equal(t, tc.code, refusal.Code)
			assert.Equal(t, "auth", receive(t, c.Disconnects(), "op 6").Reason)
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("connection kept after a refused refresh")
			}
		})
	}
}

// TestClientTokenFuncEveryDial: TokenFunc gives the token of every dial
// (a reconnect does not reuse the old one); its error fails the dial.
func TestClientTokenFuncEveryDial(t *testing.T) {
	n := startNode(t, cloud.Config{})
	f := &tokens{mid: 5, ttl: time.Hour}
	c, err := client.Dial(context.Background(), client.Config{Addr: n.tcpAddr, TokenFunc: f.get, Extensions: true,
		Reconnect: true, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, int32(1), f.calls.Load())
	n.srv.Kick(c.Auth().Key, "again")
	require.Eventually(t, func() bool { return f.calls.Load() == 2 && c.Connected() }, 5*time.Second, 5*time.Millisecond)

	exp, err := c.Refresh(context.Background())
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Hour), exp, 2*time.Second)
	assert.Equal(t, int32(3), f.calls.Load())

	boom := errors.New("identity provider down")
	_, err = client.Dial(context.Background(), client.Config{Addr: n.tcpAddr,
		TokenFunc: func(context.Context) (string, error) { return "", boom }})
	require.ErrorIs(t, err, boom)
}

// TestClientRefreshMisuse: Refresh needs TokenFunc and Extensions; a node
// older than token refresh echoes op 22 as an upstream message:
// ErrRefreshUnsupported.
func TestClientRefreshMisuse(t *testing.T) {
	n := startNode(t, cloud.Config{})
	tok, _ := mint(t, 6, time.Hour)
	f := &tokens{mid: 6, ttl: time.Hour}
	for cfg, want := range map[*client.Config]error{
		{Addr: n.tcpAddr, Token: tok, Extensions: true}: client.ErrNoTokenFunc,
		{Addr: n.tcpAddr, TokenFunc: f.get}:             client.ErrRefreshNeedsExtensions,
	} {
		c, err := client.Dial(context.Background(), *cfg)
		require.NoError(t, err)
		_, err = c.Refresh(context.Background())
		require.ErrorIs(t, err, want)
		_ = c.Close()
	}

	addr := rawNode(t, func(f *protocol.Frame) []protocol.Frame {
		if f.Op == protocol.OpAuth {
			return []protocol.Frame{olderAuthReply(f)}
		}
		return []protocol.Frame{{Ver: f.Ver, Op: f.Op, Seq: f.Seq}} // goim's upstream echo
	})
	c, err := client.Dial(context.Background(), client.Config{Addr: addr, TokenFunc: f.get, Extensions: true})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Refresh(context.Background())
	require.ErrorIs(t, err, client.ErrRefreshUnsupported)
}
