package cloud_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
)

// upgradeStatus sends req to a ServeWS listener, at most 1 MiB of it
// (the server may hang up sooner), and returns the response's status.
func upgradeStatus(t *testing.T, addr, req string) int {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = nc.Write([]byte(req)) }()
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestWSUpgradeSizeCap: the whole upgrade request is capped, so one long
// header line cannot grow the node; a request line over the cap is a bad
// request.
func TestWSUpgradeSizeCap(t *testing.T) {
	n := startNode(t, cloud.Config{})
	const ok = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	big := strings.Repeat("a", 1<<20)

	require.Equal(t, http.StatusSwitchingProtocols, upgradeStatus(t, n.wsAddr, "GET /sub HTTP/1.1\r\n"+ok+"X-Fine: "+strings.Repeat("a", 8<<10)+"\r\n\r\n"))
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, upgradeStatus(t, n.wsAddr, "GET /sub HTTP/1.1\r\n"+ok+"X-Big: "+big+"\r\n\r\n"))
	many := strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 40)
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, upgradeStatus(t, n.wsAddr, "GET /sub HTTP/1.1\r\n"+ok+many+"\r\n"))
	require.Equal(t, http.StatusBadRequest, upgradeStatus(t, n.wsAddr, "GET /sub?"+big+" HTTP/1.1\r\n"+ok+"\r\n"))
	waitFor(t, "refused sockets closed", func() bool { return n.srv.Stats().Conns == 0 })
}

// dialFrom dials addr over TCP from the loopback address src.
func dialFrom(t *testing.T, addr, src string) (*goimClient, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &goimClient{t: t, nc: nc, br: bufio.NewReader(nc)}, nil
}

// tryAuth reports whether a fresh TCP client from src authenticates.
func tryAuth(t *testing.T, addr, src string, mid int64) bool {
	t.Helper()
	c, err := dialFrom(t, addr, src)
	if err != nil {
		return false
	}
	if c.send(1, 7, 1, []byte(goimAuth(mid, "", ""))) != nil {
		return false
	}
	f, err := c.next(5 * time.Second)
	return err == nil && f.op == 8
}

// TestAcceptRatePerIP: one source connecting and closing in a loop spends
// its own accept budget, not the node's: another source still gets in.
func TestAcceptRatePerIP(t *testing.T) {
	n := startNode(t, cloud.Config{AcceptRate: 60, AcceptRatePerIP: 20})
	for i := 0; i < 200; i++ {
		if c, err := dialFrom(t, n.tcpAddr, "127.0.0.2"); err == nil {
			_ = c.nc.Close()
		}
	}
	waitFor(t, "the flood refused", func() bool { return n.srv.Stats().Refused["ip_accept_rate"] >= 150 })
	for i := range 20 {
		require.True(t, tryAuth(t, n.tcpAddr, "127.0.0.1", int64(i+1)), "client %d of another source", i)
	}
	require.Zero(t, n.srv.Stats().Refused["accept_rate"])
}

// TestHandshakeCaps: sockets that never authenticate are bounded per
// source and on the node, so they cannot keep out the clients that do.
func TestHandshakeCaps(t *testing.T) {
	t.Parallel() // it waits out a handshake timeout
	n := startNode(t, cloud.Config{MaxHandshakesPerIP: 5, MaxHandshakes: 8, HandshakeTimeout: 3 * time.Second})
	for range 5 {
		_, err := dialFrom(t, n.tcpAddr, "127.0.0.2")
		require.NoError(t, err)
	}
	waitFor(t, "5 sockets handshaking", func() bool { return n.srv.Stats().Conns == 5 })
	extra, err := dialFrom(t, n.tcpAddr, "127.0.0.2")
	require.NoError(t, err)
	extra.expectClosed(t)
	require.Equal(t, uint64(1), n.srv.Stats().Refused["ip_handshakes"])
	require.True(t, tryAuth(t, n.tcpAddr, "127.0.0.1", 1), "another source still authenticates")

	// Fill the node's handshake cap from a third source: new sockets wait
	// for the idle ones to time out, authenticated clients are untouched.
	for range 3 {
		_, err := dialFrom(t, n.tcpAddr, "127.0.0.3")
		require.NoError(t, err)
	}
	waitFor(t, "8 sockets handshaking", func() bool { return n.srv.Stats().Conns == 9 })
	late, err := dialFrom(t, n.tcpAddr, "127.0.0.1")
	require.NoError(t, err)
	late.expectClosed(t)
	require.Equal(t, uint64(1), n.srv.Stats().Refused["handshakes"])
	waitFor(t, "idle sockets timed out", func() bool { return n.srv.Stats().Conns == 1 })
	require.True(t, tryAuth(t, n.tcpAddr, "127.0.0.1", 2))
}

// disconnectOf reads the next frame, which must be op 6, and its body.
func disconnectOf(t *testing.T, c *goimClient) (reason string, reconnectMS int64) {
	t.Helper()
	f, err := c.next(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, int32(6), f.op, "op 6 before the close, got op %d %q", f.op, f.body)
	var b struct {
		Reason      string `json:"reason"`
		ReconnectMS int64  `json:"reconnect_ms"`
	}
	require.NoError(t, json.Unmarshal(f.body, &b))
	return b.Reason, b.ReconnectMS
}

// TestRefusalReasons: a ver-2 client refused after its auth frame was read
// learns why (op 6), with a reconnect hint only for a limit that passes;
// a goim v1 client is closed without a word. Identity fields are checked
// whatever the authenticator (DevAuthenticator here).
func TestRefusalReasons(t *testing.T) {
	n := startNode(t, cloud.Config{MaxConnsPerIP: 1})
	held := dialRaw(t, n.tcpAddr, false)
	held.auth(1, goimAuth(100, "held", ""))

	for _, isWS := range []bool{false, true} {
		addr := n.tcpAddr
		if isWS {
			addr = n.wsAddr
		}
		c := dialRaw(t, addr, isWS)
		require.NoError(t, c.send(2, 7, 1, []byte(goimAuth(1, "", ""))))
		reason, ms := disconnectOf(t, c)
		require.Equal(t, "ip_cap", reason)
		require.Positive(t, ms)
		c.expectClosed(t)
	}
	require.Equal(t, uint64(2), n.srv.Stats().Refused["ip_cap"])

	v1 := dialRaw(t, n.tcpAddr, false)
	require.NoError(t, v1.send(1, 7, 1, []byte(goimAuth(1, "", ""))))
	v1.expectClosed(t)
}

// expectRefusal sends a ver-2 auth with body over TCP and WebSocket and
// expects op 6 with reason and no reconnect hint, then the close.
func expectRefusal(t *testing.T, n *node, body, reason string) {
	t.Helper()
	for _, isWS := range []bool{false, true} {
		addr := n.tcpAddr
		if isWS {
			addr = n.wsAddr
		}
		c := dialRaw(t, addr, isWS)
		require.NoError(t, c.send(2, 7, 1, []byte(body)))
		got, ms := disconnectOf(t, c)
		require.Equal(t, reason, got)
		require.Zero(t, ms)
		c.expectClosed(t)
	}
}

func TestIdentityValidation(t *testing.T) {
	n := startNode(t, cloud.Config{})
	bad := map[string]string{
		"mid -5":        goimAuth(-5, "k", ""),
		"mid 0":         goimAuth(0, "k", ""),
		"key CR LF":     goimAuth(1, "k\r\nX-Injected: 1", ""),
		"key control":   goimAuth(1, "k\x00", ""),
		"key too long":  goimAuth(1, strings.Repeat("k", 129), ""),
		"room":          goimAuth(1, "k", "no-separator"),
		"room CR LF":    goimAuth(1, "k", "live://1\r\n"),
		"room too long": goimAuth(1, "k", "live://"+strings.Repeat("r", 256)),
		"platform":      `{"mid":1,"key":"k","platform":"` + strings.Repeat("p", 33) + `"}`,
		"platform LF":   `{"mid":1,"key":"k","platform":"web\n"}`,
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) { expectRefusal(t, n, body, "identity") })
	}
	require.Equal(t, uint64(2*len(bad)), n.srv.Stats().Refused["identity"])
	require.Zero(t, n.srv.Stats().Sessions)

	ok := dialRaw(t, n.tcpAddr, false)
	r := ok.auth(2, goimAuth(1, "k-1 ok", "live://1"))
	require.Equal(t, "k-1 ok", r.Key)
}

func TestAuthRefusedReason(t *testing.T) {
	n := startNode(t, cloud.Config{Authenticator: cloud.AuthFunc(func(context.Context, *cloud.AuthRequest) (cloud.Identity, error) {
		return cloud.Identity{}, errors.New("no")
	})})
	expectRefusal(t, n, goimAuth(1, "", ""), "auth")
	require.Equal(t, uint64(2), n.srv.Stats().Refused["auth"])
	require.Equal(t, uint64(2), n.srv.Stats().AuthRefused)
}

// TestServeHTTPLimits: a node mounted in a mux applies the per-source
// accept rate before the upgrade (503) and counts it.
func TestServeHTTPLimits(t *testing.T) {
	srv, err := cloud.New(cloud.Config{Authenticator: cloud.DevAuthenticator(), AcceptRatePerIP: 1})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		hs.Close()
	})
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/sub"
	nc, _, _, err := ws.Dial(context.Background(), url)
	require.NoError(t, err)
	defer nc.Close()
	_, _, _, err = ws.Dial(context.Background(), url)
	var status ws.StatusError
	require.ErrorAs(t, err, &status)
	require.Equal(t, http.StatusServiceUnavailable, int(status))
	require.Equal(t, uint64(1), srv.Stats().Refused["ip_accept_rate"])
}
