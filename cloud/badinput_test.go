package cloud_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
)

var secret = []byte("test-secret")

func token(t *testing.T, mid int64, ttl time.Duration) string {
	tok, err := cloud.NewToken(secret, mid, ttl, "live://*")
	require.NoError(t, err)
	return tok
}

func tokenAuth(mid int64, key, tok string) string {
	return fmt.Sprintf(`{"mid":%d,"key":%q,"room_id":"live://t","accepts":[1000],"token":%q}`, mid, key, tok)
}

// checkNoLeak fails if goroutines started during the test outlive it.
func checkNoLeak(t *testing.T) func() {
	before := runtime.NumGoroutine()
	return func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines leaked: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	}
}

func writeWSFrame(t *testing.T, nc net.Conn, f ws.Frame) {
	require.NoError(t, ws.WriteFrame(nc, ws.MaskFrameInPlace(f)))
}

// TestBadInput tries each bad input on its own connection and checks that
// only that connection suffers: a healthy client keeps getting pushes, and
// no goroutine outlives the node. Not parallel (leak check).
func TestBadInput(t *testing.T) {
	done := checkNoLeak(t)
	srv, err := cloud.New(cloud.Config{
		Authenticator:    cloud.NewTokenAuthenticator(secret),
		HandshakeTimeout: 300 * time.Millisecond,
		InboundRate:      20,
		QueueLength:      64,
		WriteTimeout:     time.Second,
	})
	require.NoError(t, err)
	tl, _ := net.Listen("tcp", "127.0.0.1:0")
	wl, _ := net.Listen("tcp", "127.0.0.1:0")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.ServeTCP(tl) }()
	go func() { defer wg.Done(); _ = srv.ServeWS(wl) }()
	tcpAddr, wsAddr := tl.Addr().String(), wl.Addr().String()

	healthy := dialRaw(t, tcpAddr, false)
	hr := healthy.auth(1, tokenAuth(1, "", token(t, 1, time.Minute)))
	assert.Equal(t, int64(1), hr.Mid)
	checkHealthy := func(t *testing.T) {
		deliver(t, srv, keysMsg(1000, "still here", hr.Key))
		assert.Equal(t, "still here", string(healthy.nextOp(1000).body))
	}

	cases := []struct {
		name  string
		run   func(t *testing.T)
		stat  func(cloud.Stats) uint64
		delta uint64
	}{
		{"garbage before auth", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			_, err := c.nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			require.NoError(t, err)
			c.expectClosed(t)
		}, func(s cloud.Stats) uint64 { return s.ProtocolErrors }, 1},
		{"oversized frame", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			require.NoError(t, c.send(1, 7, 1, make([]byte, 5000)))
			c.expectClosed(t)
		}, func(s cloud.Stats) uint64 { return s.ProtocolErrors }, 1},
		{"headerLen not 16", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			b := encodeRaw(1, 7, 1, []byte("{}"))
			binary.BigEndian.PutUint16(b[4:], 20)
			_, _ = c.nc.Write(b)
			c.expectClosed(t)
		}, func(s cloud.Stats) uint64 { return s.ProtocolErrors }, 1},
		{"packLen below header", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			b := encodeRaw(1, 7, 1, nil)
			binary.BigEndian.PutUint32(b, 8)
			_, _ = c.nc.Write(b)
			c.expectClosed(t)
		}, func(s cloud.Stats) uint64 { return s.ProtocolErrors }, 1},
		{"truncated frame then close", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			b := encodeRaw(1, 7, 1, []byte(`{"mid":1}`))
			_, _ = c.nc.Write(b[:20])
			_ = c.nc.Close()
		}, func(s cloud.Stats) uint64 { return s.ProtocolErrors }, 1},
		{"slow-loris handshake", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			b := encodeRaw(1, 7, 1, []byte(tokenAuth(1, "", token(t, 1, time.Minute))))
			start := time.Now()
			for i := 0; i < 3; i++ {
				_, _ = c.nc.Write(b[i : i+1])
				time.Sleep(50 * time.Millisecond)
			}
			c.expectClosed(t)
			assert.Less(t, time.Since(start), 2*time.Second)
		}, func(s cloud.Stats) uint64 { return s.AuthRefused }, 1},
		{"slow-loris websocket upgrade", func(t *testing.T) {
			nc, err := net.Dial("tcp", wsAddr)
			require.NoError(t, err)
			defer nc.Close()
			_, _ = nc.Write([]byte("GET /sub HTTP/1.1\r\nHost: x\r\n"))
			c := &goimClient{t: t, nc: nc}
			c.br = nil
			_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 10)
			_, err = nc.Read(buf)
			require.Error(t, err)
			var ne net.Error
			require.False(t, asNetErr(err, &ne) && ne.Timeout(), "server must close, not wait")
		}, func(s cloud.Stats) uint64 { return s.ProtocolErrors }, 1},
		{"no auth, only heartbeats", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			require.NoError(t, c.send(1, 2, 1, nil))
			c.expectClosed(t)
		}, func(s cloud.Stats) uint64 { return s.AuthRefused }, 1},
		{"bad JSON", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			require.NoError(t, c.send(1, 7, 1, []byte("{mid:")))
			c.expectClosed(t)
		}, func(s cloud.Stats) uint64 { return s.AuthRefused }, 1},
		{"missing token", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			require.NoError(t, c.send(1, 7, 1, []byte(goimAuth(1, "", ""))))
			c.expectClosed(t)
		}, func(s cloud.Stats) uint64 { return s.AuthRefused }, 1},
		{"invalid token", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			bad, err := cloud.NewToken([]byte("other secret"), 1, time.Minute)
			require.NoError(t, err)
			require.NoError(t, c.send(1, 7, 1, []byte(tokenAuth(1, "", bad))))
			c.expectClosed(t)
			c2 := dialRaw(t, tcpAddr, false)
			require.NoError(t, c2.send(1, 7, 1, []byte(tokenAuth(1, "", "not.a.jwt"))))
			c2.expectClosed(t)
		}, func(s cloud.Stats) uint64 { return s.AuthRefused }, 2},
		{"expired token", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			require.NoError(t, c.send(1, 7, 1, []byte(tokenAuth(1, "", token(t, 1, -time.Minute)))))
			c.expectClosed(t)
		}, func(s cloud.Stats) uint64 { return s.AuthRefused }, 1},
		{"claiming another user's key", func(t *testing.T) {
			// Mid 2 claims mid 1's key and mid 1 in the body: the token
			// wins and the key is namespaced.
			c := dialRaw(t, tcpAddr, false)
			r := c.auth(1, tokenAuth(1, hr.Key, token(t, 2, time.Minute)))
			assert.Equal(t, int64(2), r.Mid)
			assert.NotEqual(t, hr.Key, r.Key)
			assert.True(t, strings.HasPrefix(r.Key, "2:"))
			deliver(t, srv, keysMsg(1000, "for one", hr.Key))
			assert.Equal(t, "for one", string(healthy.nextOp(1000).body))
			_ = c.nc.Close()
		}, func(s cloud.Stats) uint64 { return s.Replaced }, 0},
		{"websocket text, fragmented and ping frames", func(t *testing.T) {
			c := dialRaw(t, wsAddr, true)
			auth := encodeRaw(1, 7, 1, []byte(tokenAuth(3, "", token(t, 3, time.Minute))))
			// Auth split in a text frame + continuation, with a ping between.
			writeWSFrame(t, c.nc, ws.NewFrame(ws.OpText, false, auth[:10]))
			writeWSFrame(t, c.nc, ws.NewPingFrame([]byte("p1")))
			writeWSFrame(t, c.nc, ws.NewFrame(ws.OpContinuation, true, auth[10:]))
			_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			h, err := ws.ReadHeader(c.br)
			require.NoError(t, err)
			assert.Equal(t, ws.OpPong, h.OpCode)
			p := make([]byte, h.Length)
			_, _ = c.br.Read(p)
			assert.Equal(t, "p1", string(p))
			assert.Equal(t, int32(8), c.nextOp(8).op)
			// Close frame: echoed, then closed.
			writeWSFrame(t, c.nc, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
			h, err = ws.ReadHeader(c.br)
			require.NoError(t, err)
			assert.Equal(t, ws.OpClose, h.OpCode)
		}, func(s cloud.Stats) uint64 { return s.AuthOK }, 1},
		{"websocket unmasked frame", func(t *testing.T) {
			c := dialRaw(t, wsAddr, true)
			require.NoError(t, ws.WriteFrame(c.nc, ws.NewBinaryFrame(encodeRaw(1, 7, 1, []byte("{}")))))
			c.expectClosed(t)
		}, func(s cloud.Stats) uint64 { return s.ProtocolErrors }, 1},
		{"frame flood past the rate limit", func(t *testing.T) {
			c := dialRaw(t, tcpAddr, false)
			c.auth(1, tokenAuth(4, "", token(t, 4, time.Minute)))
			var flood []byte
			for i := 0; i < 200; i++ {
				flood = append(flood, encodeRaw(1, 2, int32(i), nil)...)
			}
			_, _ = c.nc.Write(flood)
			c.expectClosed(t)
		}, func(s cloud.Stats) uint64 { return s.RateLimited }, 1},
		{"client that never reads", func(t *testing.T) {
			nc, err := net.Dial("tcp", tcpAddr)
			require.NoError(t, err)
			defer nc.Close()
			_ = nc.(*net.TCPConn).SetReadBuffer(4096)
			_, err = nc.Write(encodeRaw(1, 7, 1, []byte(tokenAuth(5, "sloth", token(t, 5, time.Minute)))))
			require.NoError(t, err)
			waitFor(t, "sloth registered", func() bool { return srv.Stats().Sessions == 2 })
			big := strings.Repeat("x", 16<<10)
			for i := 0; i < 2000 && srv.Stats().SlowDisconnects == 0; i++ {
				deliver(t, srv, keysMsg(1000, big, "5:sloth"))
				if i%50 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			waitFor(t, "slow consumer disconnected", func() bool { return srv.Stats().Sessions == 1 })
		}, func(s cloud.Stats) uint64 { return s.SlowDisconnects }, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.stat(srv.Stats())
			tc.run(t)
			waitFor(t, "counter", func() bool { return tc.stat(srv.Stats())-before >= tc.delta })
			assert.Equal(t, tc.delta, tc.stat(srv.Stats())-before)
			waitFor(t, "only the healthy conn left", func() bool { return srv.Stats().Conns == 1 })
			checkHealthy(t)
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	wg.Wait()
	_ = healthy.nc.Close()
	done()
}

func asNetErr(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	if ok {
		*ne = e
	}
	return ok
}

// TestLimits: per-IP cap, max conns, and accept rate refuse sockets
// without disturbing existing clients.
func TestLimits(t *testing.T) {
	t.Run("per ip", func(t *testing.T) {
		n := startNode(t, cloud.Config{MaxConnsPerIP: 2})
		a := dialRaw(t, n.tcpAddr, false)
		a.auth(1, goimAuth(1, "", ""))
		b := dialRaw(t, n.tcpAddr, false)
		b.auth(1, goimAuth(2, "", ""))
		c := dialRaw(t, n.tcpAddr, false)
		_ = c.send(1, 7, 1, []byte(goimAuth(3, "", "")))
		c.expectClosed(t)
		assert.Equal(t, uint64(1), n.srv.Stats().Refused["ip_cap"])
	})
	t.Run("max conns", func(t *testing.T) {
		n := startNode(t, cloud.Config{MaxConns: 1})
		a := dialRaw(t, n.tcpAddr, false)
		a.auth(1, goimAuth(1, "", ""))
		c := dialRaw(t, n.tcpAddr, false)
		c.expectClosed(t)
		assert.Equal(t, uint64(1), n.srv.Stats().Refused["node_cap"])
	})
	t.Run("accept rate", func(t *testing.T) {
		n := startNode(t, cloud.Config{AcceptRate: 3})
		for i := 0; i < 5; i++ {
			c := dialRaw(t, n.tcpAddr, false)
			_ = c.send(1, 2, 1, nil)
		}
		waitFor(t, "rejections", func() bool { return n.srv.Stats().Refused["accept_rate"] >= 2 })
	})
	t.Run("proxy protocol and forwarded-for", func(t *testing.T) {
		var ips sync.Map
		n := startNode(t, cloud.Config{
			ProxyProtocol:  true,
			TrustedProxies: mustPrefixes("127.0.0.0/8"),
			Authenticator: cloud.AuthFunc(func(_ context.Context, r *cloud.AuthRequest) (cloud.Identity, error) {
				ips.Store(r.Body.Mid, r.ClientIP.String())
				return cloud.Identity{Mid: r.Body.Mid}, nil
			}),
		})
		nc, err := net.Dial("tcp", n.tcpAddr)
		require.NoError(t, err)
		defer nc.Close()
		_, _ = nc.Write([]byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 3101\r\n"))
		c := &goimClient{t: t, nc: nc, br: newReader(nc)}
		c.auth(1, goimAuth(1, "", ""))
		v, _ := ips.Load(int64(1))
		assert.Equal(t, "203.0.113.7", v)

		for i, tc := range []struct{ proxySrc, want string }{
			{"198.51.100.1", "198.51.100.1"}, // X-Forwarded-For from an untrusted client is ignored
			{"127.0.0.9", "192.0.2.9"},       // behind a trusted chain: right-most untrusted entry
		} {
			nc2, err := net.Dial("tcp", n.wsAddr)
			require.NoError(t, err)
			defer nc2.Close()
			_, _ = nc2.Write([]byte("PROXY TCP4 " + tc.proxySrc + " 10.0.0.1 5555 3102\r\n"))
			d := ws.Dialer{Header: ws.HandshakeHeaderHTTP{"X-Forwarded-For": {"192.0.2.9, 127.0.0.2"}}}
			br, _, err := d.Upgrade(nc2, mustURL("ws://x/sub"))
			require.NoError(t, err)
			if br == nil {
				br = newReader(nc2)
			}
			w := &goimClient{t: t, nc: nc2, br: br, ws: true}
			mid := int64(10 + i)
			w.auth(1, goimAuth(mid, "", ""))
			v, _ = ips.Load(mid)
			assert.Equal(t, tc.want, v)
		}
	})
}

// TestSlowConsumerDropOldest: with DropOldest the slow client stays and
// drops are counted.
func TestSlowConsumerDropOldest(t *testing.T) {
	n := startNode(t, cloud.Config{QueueLength: 4, DropOldest: true, WriteTimeout: time.Second})
	nc, err := net.Dial("tcp", n.tcpAddr)
	require.NoError(t, err)
	defer nc.Close()
	_ = nc.(*net.TCPConn).SetReadBuffer(4096)
	_, _ = nc.Write(encodeRaw(1, 7, 1, []byte(goimAuth(1, "k", "", 1000))))
	waitFor(t, "registered", func() bool { return n.srv.Stats().Sessions == 1 })
	big := strings.Repeat("x", 64<<10)
	for i := 0; i < 200 && n.srv.Stats().Dropped == 0; i++ {
		deliver(t, n.srv, &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Node: "n", Keys: []string{"k"}, Op: 1000, Body: []byte(big)})
	}
	assert.NotZero(t, n.srv.Stats().Dropped)
	assert.Zero(t, n.srv.Stats().SlowDisconnects)
}
