package job

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/internal/testenv"
)

// TestLinkHelloVersions: against a real node, the current hello and the
// previous release's (LegacyHello, as a job not yet upgraded speaks it)
// both deliver, the latter counted; a wrong secret is refused in both.
func TestLinkHelloVersions(t *testing.T) {
	n := startCloudNode(t, "node-a", 0)
	r := dialClient(t, n.tcpAddr, "k", "", 0)
	for _, legacy := range []bool{false, true} {
		opts := LinkOptions{LegacyHello: legacy, DialTimeout: 2 * time.Second}
		c, err := DialLink(context.Background(), n.linkAddr, secret, opts)
		require.NoError(t, err, "legacy %v", legacy)
		body := map[bool]string{false: "current", true: "legacy"}[legacy]
		require.NoError(t, c.Deliver(context.Background(), []*imcloud.Message{keysMsg(n.srv.ID(), body)}))
		r.waitFor(t, func(got []string) bool { return len(got) > 0 && got[len(got)-1] == body }, 5*time.Second)
		c.Close()

		_, err = DialLink(context.Background(), n.linkAddr, "wrong", opts)
		require.ErrorIs(t, err, ErrLinkRefused, "legacy %v", legacy)
		require.Contains(t, err.Error(), "wrong secret")
	}
	require.Equal(t, uint64(1), n.srv.Stats().LinkLegacyHellos)
	// The node counts a refusal after sending it.
	require.Eventually(t, func() bool { return n.srv.Stats().LinkRefused == 2 }, 5*time.Second, time.Millisecond)
}

// TestLinkTLS: a node serving its link over TLS and requiring a client
// certificate from the CA it trusts takes deliveries from a job with
// both; a job without a client certificate, one that does not trust the
// node's certificate, and one speaking plain TCP are refused.
func TestLinkTLS(t *testing.T) {
	p := testenv.NewCA(t)
	ll, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv, err := cloud.New(cloud.Config{NodeID: "node-tls", Authenticator: cloud.DevAuthenticator(),
		LinkSecret: secret, LinkAddr: ll.Addr().String(), InboundRate: -1, AcceptRate: -1,
		HandshakeTimeout: 2 * time.Second})
	require.NoError(t, err)
	go func() { _ = srv.ServeTCP(tl) }()
	nodeTLS := &tls.Config{
		Certificates: []tls.Certificate{p.Issue(t, "node", x509.ExtKeyUsageServerAuth)},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: p.Pool, MinVersion: tls.VersionTLS12,
	}
	go func() { _ = srv.ServeLink(tls.NewListener(ll, nodeTLS)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	r := dialClient(t, tl.Addr().String(), "k", "", 0)
	jobCert := p.Issue(t, "job", x509.ExtKeyUsageClientAuth)
	addr := ll.Addr().String()
	dial := func(cfg *tls.Config) error {
		c, err := DialLink(context.Background(), addr, secret, LinkOptions{TLS: cfg, DialTimeout: 2 * time.Second})
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Deliver(context.Background(), []*imcloud.Message{keysMsg(srv.ID(), "over tls")})
	}

	require.NoError(t, dial(&tls.Config{RootCAs: p.Pool, Certificates: []tls.Certificate{jobCert}}))
	r.waitFor(t, func(got []string) bool { return len(got) == 1 && got[0] == "over tls" }, 5*time.Second)

	require.Error(t, dial(&tls.Config{RootCAs: p.Pool}), "no client certificate")
	err = dial(&tls.Config{Certificates: []tls.Certificate{jobCert}})
	require.Error(t, err, "the node's certificate is not trusted")
	require.Contains(t, err.Error(), "certificate")
	err = dial(nil)
	require.Error(t, err, "plain TCP to a TLS link")
	require.NotContains(t, strings.ToLower(err.Error()), "refused by", "no hello got through")
	require.Equal(t, []string{"over tls"}, r.bodies())
}

// TestLinkTLSSilentNode: a node that completes TLS and never answers the
// hello costs a TLS dial DialTimeout, not more.
func TestLinkTLSSilentNode(t *testing.T) {
	p := testenv.NewCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{p.Issue(t, "node", x509.ExtKeyUsageServerAuth)}})
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
	}()
	start := time.Now()
	_, err = DialLink(context.Background(), ln.Addr().String(), secret,
		LinkOptions{TLS: &tls.Config{RootCAs: p.Pool}, DialTimeout: 200 * time.Millisecond})
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
}
