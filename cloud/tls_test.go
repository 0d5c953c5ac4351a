package cloud_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/cloud/client"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool that
// trusts it, generated fresh for the test.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "imcloud test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestTLS serves TCP and WebSocket through Config.TLS: the project client
// and a raw tls.Dial goim client authenticate and receive pushes, the
// authenticator sees TLS, and plaintext clients knocking on the TLS
// listeners are refused without disturbing the others. Not parallel (leak
// check).
func TestTLS(t *testing.T) {
	done := checkNoLeak(t)
	cert, pool := selfSigned(t)
	var sawPlain atomic.Int32
	dev := cloud.DevAuthenticator()
	srv, err := cloud.New(cloud.Config{
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Authenticator: cloud.AuthFunc(func(ctx context.Context, req *cloud.AuthRequest) (cloud.Identity, error) {
			if !req.TLS {
				sawPlain.Add(1)
			}
			return dev.Authenticate(ctx, req)
		}),
		HandshakeTimeout: time.Second,
	})
	require.NoError(t, err)
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); assert.ErrorIs(t, srv.ServeTCP(tl), cloud.ErrServerClosed) }()
	go func() { defer wg.Done(); assert.ErrorIs(t, srv.ServeWS(wl), cloud.ErrServerClosed) }()
	tcpAddr, wsAddr := tl.Addr().String(), wl.Addr().String()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		wg.Wait()
		done()
	}()
	ctx := context.Background()
	tlsCfg := &tls.Config{RootCAs: pool}

	// The project client over TLS, TCP and wss.
	var clients []*client.Client
	for i, c := range []client.Config{
		{Network: "tcp", Addr: tcpAddr},
		{Network: "ws", Addr: "wss://" + wsAddr + "/sub?platform=tls"},
	} {
		c.TLS, c.Mid, c.Room, c.Accepts = tlsCfg, int64(100+i), "live://tls", []int32{1000}
		cl, err := client.Dial(ctx, c)
		require.NoError(t, err, c.Network)
		defer cl.Close()
		assert.Equal(t, int64(100+i), cl.Auth().Mid)
		assert.Equal(t, "live://tls", cl.Auth().RoomID)
		clients = append(clients, cl)
	}

	// A goim client written by hand over a raw tls.Dial.
	tc, err := tls.Dial("tcp", tcpAddr, tlsCfg)
	require.NoError(t, err)
	raw := &goimClient{t: t, nc: tc, br: bufio.NewReader(tc)}
	defer tc.Close()
	ar := raw.auth(1, goimAuth(200, "raw-tls", "live://tls", 1000))
	assert.Equal(t, "raw-tls", ar.Key)
	require.NoError(t, raw.send(1, 2, 2, nil))
	hb := raw.nextOp(3)
	assert.Equal(t, int32(2), hb.seq)
	require.Len(t, hb.body, 4)

	// A push reaches all three.
	checkPush := func(body string) {
		t.Helper()
		deliver(t, srv, roomMsg("live://tls", 1000, body))
		for _, cl := range clients {
			p := recvPush(t, cl)
			assert.Equal(t, int32(1000), p.Op)
			assert.Equal(t, body, string(p.Body))
		}
		f := raw.nextOp(1000)
		assert.Equal(t, body, string(f.body))
	}
	checkPush("over tls")
	require.Zero(t, sawPlain.Load(), "authenticator saw a connection without TLS")

	// Plaintext clients against the TLS listeners are refused.
	refusedBefore := srv.Stats()
	plainTCP := dialRaw(t, tcpAddr, false)
	require.NoError(t, plainTCP.send(1, 7, 1, []byte(goimAuth(300, "plain", "live://tls", 1000))))
	plainTCP.expectClosed(t)

	plainWS, err := net.Dial("tcp", wsAddr)
	require.NoError(t, err)
	defer plainWS.Close()
	_, err = plainWS.Write([]byte("GET /sub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	require.NoError(t, err)
	_ = plainWS.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, _ := bufio.NewReader(plainWS).ReadString('\n')
	assert.NotContains(t, resp, "101", "plaintext upgrade must not succeed on a TLS listener")

	// A TLS client that never finishes the handshake is cut at the
	// handshake timeout.
	silent, err := net.Dial("tcp", tcpAddr)
	require.NoError(t, err)
	defer silent.Close()
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = silent.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	require.False(t, asNetErr(err, &ne) && ne.Timeout(), "silent client not closed by the handshake timeout")

	waitFor(t, "refused sockets closed", func() bool { return srv.Stats().Conns == 3 })
	after := srv.Stats()
	assert.Equal(t, int64(3), after.Sessions)
	assert.Equal(t, refusedBefore.AuthOK, after.AuthOK, "no plaintext client authenticated")

	// The TLS clients did not notice.
	checkPush("still here")
	for _, cl := range clients {
		assert.True(t, cl.Connected())
	}
	require.Zero(t, sawPlain.Load())
}

func recvPush(t *testing.T, c *client.Client) client.Push {
	t.Helper()
	select {
	case p, ok := <-c.Messages():
		require.True(t, ok, "messages closed")
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no push")
	}
	return client.Push{}
}

// TestTLSBehindProxyProtocol: a load balancer sends the plaintext PROXY
// header first and then the client's TLS; the node reads the header off the
// raw socket, then speaks TLS, and sees the real client address.
func TestTLSBehindProxyProtocol(t *testing.T) {
	cert, pool := selfSigned(t)
	seen := make(chan *cloud.AuthRequest, 1)
	dev := cloud.DevAuthenticator()
	n := startNode(t, cloud.Config{
		TLS:            &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ProxyProtocol:  true,
		TrustedProxies: mustPrefixes("127.0.0.1/32"),
		Authenticator: cloud.AuthFunc(func(ctx context.Context, req *cloud.AuthRequest) (cloud.Identity, error) {
			seen <- req
			return dev.Authenticate(ctx, req)
		}),
	})
	nc, err := net.Dial("tcp", n.tcpAddr)
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.Write([]byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 3101\r\n"))
	require.NoError(t, err)
	tc := tls.Client(nc, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	raw := &goimClient{t: t, nc: tc, br: bufio.NewReader(tc)}
	raw.auth(1, goimAuth(7, "", "live://proxied", 1000))
	req := <-seen
	assert.True(t, req.TLS, "the authenticator sees a TLS connection")
	assert.Equal(t, "203.0.113.7", req.ClientIP.String(), "the client address comes from the PROXY header")
	deliver(t, n.srv, roomMsg("live://proxied", 1000, "through the proxy"))
	assert.Equal(t, "through the proxy", string(raw.nextOp(1000).body))
}

// TestNewRefusesTLSWithoutCertificate: a Config.TLS that can find no
// certificate fails at New, not at every client's handshake.
func TestNewRefusesTLSWithoutCertificate(t *testing.T) {
	_, err := cloud.New(cloud.Config{Authenticator: cloud.DevAuthenticator(), TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	require.ErrorIs(t, err, cloud.ErrNoCertificate)
	srv, err := cloud.New(cloud.Config{Authenticator: cloud.DevAuthenticator(), TLS: &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }}})
	require.NoError(t, err)
	require.NoError(t, srv.Shutdown(context.Background()))
}
