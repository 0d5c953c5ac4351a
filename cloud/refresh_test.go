package cloud_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/protocol"
)

// tokenNode is a node with the HS256 token authenticator.
func tokenNode(t *testing.T, cfg cloud.Config) *node {
	cfg.Authenticator = cloud.NewTokenAuthenticator(secret)
	return startNode(t, cfg)
}

// mintFor returns a token of mid valid for ttl and its expiry (whole
// seconds, as the token says).
func mintFor(t *testing.T, mid int64, ttl time.Duration) (string, time.Time) {
	t.Helper()
	tok := token(t, mid, ttl)
	var claims jwt.RegisteredClaims
	_, _, err := jwt.NewParser().ParseUnverified(tok, &claims)
	require.NoError(t, err)
	return tok, claims.ExpiresAt.Time
}

type refreshAnswer struct {
	OK      bool   `json:"ok"`
	Expires *int64 `json:"expires"`
	Error   string `json:"error"`
}

// refresh sends op 22 with tok and returns op 23's body.
func (c *goimClient) refresh(seq int32, tok string) refreshAnswer {
	c.t.Helper()
	require.NoError(c.t, c.send(protocol.VerExtensions, protocol.OpRefresh, seq, []byte(tok)))
	f := c.nextOp(protocol.OpRefreshReply)
	require.Equal(c.t, seq, f.seq)
	var a refreshAnswer
	require.NoError(c.t, json.Unmarshal(f.body, &a), string(f.body))
	return a
}

// disconnectReason waits for op 6 and returns its reason and arrival.
func (c *goimClient) disconnectReason() (string, time.Time) {
	c.t.Helper()
	f := c.nextOp(protocol.OpDisconnect)
	at := time.Now()
	var d struct {
		Reason      string `json:"reason"`
		ReconnectMS int64  `json:"reconnect_ms"`
	}
	require.NoError(c.t, json.Unmarshal(f.body, &d))
	return d.Reason, at
}

// closedAt reads until the node closes the connection and returns when.
func (c *goimClient) closedAt() time.Time {
	c.t.Helper()
	for {
		if _, err := c.next(5 * time.Second); err != nil {
			require.NotErrorIs(c.t, err, context.DeadlineExceeded)
			return time.Now()
		}
	}
}

// expirySlack bounds how late after a token's exp its connection may be
// closed in these end-to-end tests: loose, as they run under -race on
// shared cores.
const expirySlack = 5 * time.Second

// TestTokenExpiryCloses: a connection is closed when its token expires,
// not before its "exp" and soon after it (expirySlack): a ver-2 client
// is told "token_expired" first, over TCP and WebSocket alike.
func TestTokenExpiryCloses(t *testing.T) {
	n := tokenNode(t, cloud.Config{})
	for _, tc := range []struct {
		ver int16
		ws  bool
	}{{1, false}, {2, false}, {1, true}, {2, true}} {
		t.Run(fmt.Sprintf("ver%d/ws=%v", tc.ver, tc.ws), func(t *testing.T) {
			t.Parallel()
			addr := n.tcpAddr
			if tc.ws {
				addr = n.wsAddr
			}
			c := dialRaw(t, addr, tc.ws)
			tok, exp := mintFor(t, 5, 1500*time.Millisecond)
			c.auth(tc.ver, tokenAuth(5, t.Name(), tok))
			var at time.Time
			if tc.ver == 2 {
				var reason string
				reason, at = c.disconnectReason()
				require.Equal(t, "token_expired", reason)
				c.expectClosed(t)
			} else {
				at = c.closedAt()
			}
			require.False(t, at.Before(exp), "closed %v before exp", exp.Sub(at))
			// Loose: the timer is armed for exp, but a loaded machine
			// (-race, shared cores) may run it late.
			require.Less(t, at.Sub(exp), expirySlack, "closed too late after exp")
		})
	}
}

// TestTokenRefresh: op 22 with a fresh token of the same user is answered
// op 23 with the new expiry and keeps the connection past the old one;
// the timer follows every refresh, also to an earlier expiry.
func TestTokenRefresh(t *testing.T) {
	n := tokenNode(t, cloud.Config{})
	c := dialRaw(t, n.tcpAddr, false)
	tok, firstExp := mintFor(t, 5, 1500*time.Millisecond)
	c.auth(2, tokenAuth(5, "k", tok))

	long, longExp := mintFor(t, 5, time.Hour)
	a := c.refresh(7, long)
	require.True(t, a.OK, a.Error)
	require.NotNil(t, a.Expires)
	require.Equal(t, longExp.Unix(), *a.Expires)

	time.Sleep(time.Until(firstExp) + 1200*time.Millisecond)
	require.NoError(t, c.send(2, protocol.OpHeartbeat, 8, nil))
	require.Equal(t, int32(8), c.nextOp(protocol.OpHeartbeatReply).seq, "open past the first token's exp")

	short, shortExp := mintFor(t, 5, 1500*time.Millisecond)
	require.True(t, c.refresh(9, short).OK)
	reason, at := c.disconnectReason()
	require.Equal(t, "token_expired", reason)
	require.False(t, at.Before(shortExp))
	require.Less(t, at.Sub(shortExp), expirySlack)
}

// TestTokenRefreshRefused: a refresh whose token is not valid, names
// another user or has expired is answered op 23 with "ok":false and its
// code, then the connection is closed with op 6 "auth".
func TestTokenRefreshRefused(t *testing.T) {
	n := tokenNode(t, cloud.Config{})
	other, _ := mintFor(t, 6, time.Hour)
	expired, _ := mintFor(t, 5, -time.Minute)
	wrongKey, err := cloud.NewToken([]byte("another secret"), 5, time.Hour)
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		tok, code string
		ws        bool
	}{
		"garbage":          {"not a token", "invalid_token", false},
		"empty":            {"", "invalid_token", false},
		"wrong signature":  {wrongKey, "invalid_token", false},
		"another user":     {other, "other_user", false},
		"another user, ws": {other, "other_user", true},
		"expired":          {expired, "token_expired", false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr := n.tcpAddr
			if tc.ws {
				addr = n.wsAddr
			}
			c := dialRaw(t, addr, tc.ws)
			tok, _ := mintFor(t, 5, time.Hour)
			c.auth(2, tokenAuth(5, name, tok))
			a := c.refresh(3, tc.tok)
			require.False(t, a.OK)
			require.Equal(t, tc.code, a.Error)
			require.Nil(t, a.Expires)
			reason, _ := c.disconnectReason()
			require.Equal(t, "auth", reason)
			c.expectClosed(t)
		})
	}
}

// TestRefreshGoimUpstream: a ver-1 connection's op 22 is an upstream
// message, as goim takes every op it does not know: echoed with an empty
// body, handed to the UpstreamHook, the connection kept.
func TestRefreshGoimUpstream(t *testing.T) {
	var mu sync.Mutex
	var got []cloud.Upstream
	n := tokenNode(t, cloud.Config{UpstreamHook: func(_ context.Context, u cloud.Upstream) {
		mu.Lock()
		got = append(got, cloud.Upstream{Mid: u.Mid, Op: u.Op, Body: append([]byte(nil), u.Body...)})
		mu.Unlock()
	}})
	c := dialRaw(t, n.tcpAddr, false)
	tok, _ := mintFor(t, 5, time.Hour)
	c.auth(1, tokenAuth(5, "k", tok))
	require.NoError(t, c.send(1, protocol.OpRefresh, 4, []byte("hello")))
	f := c.nextOp(protocol.OpRefresh)
	require.Equal(t, int32(4), f.seq)
	require.Empty(t, f.body)
	mu.Lock()
	require.Equal(t, []cloud.Upstream{{Mid: 5, Op: protocol.OpRefresh, Body: []byte("hello")}}, got)
	mu.Unlock()
	require.NoError(t, c.send(1, protocol.OpHeartbeat, 5, nil))
	require.Equal(t, int32(5), c.nextOp(protocol.OpHeartbeatReply).seq)
}

// TestRefreshAuthRequest: a custom Authenticator sees a refresh as one
// (AuthRequest.Refresh) with the connection's auth body as it stands and
// the new token; an identity that binds another key is refused
// ("other_key"), one without an expiry is accepted with "expires":0.
func TestRefreshAuthRequest(t *testing.T) {
	var mu sync.Mutex
	var seen []cloud.AuthRequest
	auth := cloud.AuthFunc(func(_ context.Context, r *cloud.AuthRequest) (cloud.Identity, error) {
		id := cloud.Identity{Mid: r.Body.Mid, Key: r.Body.Key, Room: r.Body.RoomID, Platform: r.Body.Platform,
			Accepts: r.Body.Accepts, BindKey: true}
		if r.Refresh {
			mu.Lock()
			seen = append(seen, cloud.AuthRequest{Body: r.Body, Raw: append([]byte(nil), r.Raw...), Refresh: true,
				WebSocket: r.WebSocket, Header: r.Header})
			mu.Unlock()
			if r.Body.Token == "rebind" {
				id.Key = "another"
			}
		}
		return id, nil
	})
	n := startNode(t, cloud.Config{Authenticator: auth})
	c := dialRaw(t, n.tcpAddr, false)
	r := c.auth(2, tokenAuth(5, "k", "first"))
	require.Equal(t, "5:k", r.Key)

	a := c.refresh(2, "second")
	require.True(t, a.OK, a.Error)
	require.Equal(t, int64(0), *a.Expires)
	mu.Lock()
	require.Len(t, seen, 1)
	req := seen[0]
	mu.Unlock()
	require.Equal(t, cloud.AuthBody{Mid: 5, Key: "5:k", RoomID: "live://t", Accepts: []int32{1000}, Token: "second"}, req.Body)
	var raw cloud.AuthBody
	require.NoError(t, json.Unmarshal(req.Raw, &raw))
	require.Equal(t, req.Body, raw)
	require.Nil(t, req.Header)

	a = c.refresh(3, "rebind")
	require.False(t, a.OK)
	require.Equal(t, "other_key", a.Error)
	reason, _ := c.disconnectReason()
	require.Equal(t, "auth", reason)
}

// TestTokenEvents: a connection closed for its token's expiry ends with a
// disconnect event of reason token_expired; one closed for a refused
// refresh with protocol_error.
func TestTokenEvents(t *testing.T) {
	var log eventLog
	n := tokenNode(t, cloud.Config{Events: &log})
	expiring := dialRaw(t, n.tcpAddr, false)
	tok, _ := mintFor(t, 5, 1500*time.Millisecond)
	k1 := expiring.auth(2, tokenAuth(5, "expiring", tok)).Key
	refused := dialRaw(t, n.tcpAddr, false)
	tok, _ = mintFor(t, 5, time.Hour)
	k2 := refused.auth(2, tokenAuth(5, "refused", tok)).Key
	require.False(t, refused.refresh(2, "bad").OK)

	require.Equal(t, "protocol_error", log.disconnect(t, k2).Reason)
	require.Equal(t, "token_expired", log.disconnect(t, k1).Reason)
}

// TestTokenRefreshRevoked: a refresh with a token issued before a
// revocation of its user (a kick that revoked) is refused "revoked" and
// closes the connection; one issued after it is taken.
func TestTokenRefreshRevoked(t *testing.T) {
	store := &revStore{fakeStore: newFakeStore(), revoked: map[int64]time.Time{}}
	n := tokenNode(t, cloud.Config{Store: store})
	c := dialRaw(t, n.tcpAddr, false)
	tok, _ := mintFor(t, 5, time.Hour)
	c.auth(2, tokenAuth(5, "k", tok))

	store.set(func(r *revStore) { r.revoked[5] = time.Now().Add(-time.Minute) })
	fresh, _ := mintFor(t, 5, time.Hour)
	require.True(t, c.refresh(2, fresh).OK, "issued after the revocation")

	store.set(func(r *revStore) { r.revoked[5] = time.Now().Add(time.Minute) })
	a := c.refresh(3, fresh)
	require.False(t, a.OK)
	require.Equal(t, "revoked", a.Error)
	reason, _ := c.disconnectReason()
	require.Equal(t, "auth", reason)
	c.expectClosed(t)
}
