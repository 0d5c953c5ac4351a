package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/job"
)

// TestLinkTLSFlags: the link TLS flags of a cloud node and of job make a
// link that works, with job's client certificate required; job without
// its certificate is refused.
func TestLinkTLSFlags(t *testing.T) {
	ca := testenv.NewCA(t)
	caFile := ca.WriteCA(t)
	nodeCert, nodeKey := testenv.WritePEM(t, ca.Issue(t, "node", x509.ExtKeyUsageServerAuth))
	jobCert, jobKey := testenv.WritePEM(t, ca.Issue(t, "job", x509.ExtKeyUsageClientAuth))

	cloudCfg := Config{Role: RoleCloud, LinkTLSCert: nodeCert, LinkTLSKey: nodeKey, LinkTLSCA: caFile}
	require.NoError(t, cloudCfg.validateLinkTLS())
	serverTLS, _, err := cloudCfg.linkTLS()
	require.NoError(t, err)
	jobCfg := Config{Role: RoleJob, LinkTLSCert: jobCert, LinkTLSKey: jobKey, LinkTLSCA: caFile}
	require.NoError(t, jobCfg.validateLinkTLS())
	_, clientTLS, err := jobCfg.linkTLS()
	require.NoError(t, err)

	srv, err := cloud.New(cloud.Config{Authenticator: cloud.DevAuthenticator(), LinkSecret: "s", HandshakeTimeout: 2 * time.Second})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.ServeLink(tls.NewListener(ln, serverTLS)) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Shutdown(context.Background()))
		require.ErrorIs(t, <-served, cloud.ErrServerClosed)
	})

	ctx := context.Background()
	opts := job.LinkOptions{TLS: clientTLS, DialTimeout: 2 * time.Second}
	c, err := job.DialLink(ctx, ln.Addr().String(), "s", opts)
	require.NoError(t, err)
	c.Close()

	_, noCert, err := (&Config{LinkTLSCA: caFile}).linkTLS()
	require.NoError(t, err)
	opts.TLS = noCert
	_, err = job.DialLink(ctx, ln.Addr().String(), "s", opts)
	require.Error(t, err, "job without a client certificate")
}

// TestLinkTLSCloudRole: a cloud node started with the link TLS flags
// serves its link over TLS.
func TestLinkTLSCloudRole(t *testing.T) {
	redis := testenv.StartRedis(t)
	ca := testenv.NewCA(t)
	cert, key := testenv.WritePEM(t, ca.Issue(t, "node", x509.ExtKeyUsageServerAuth))
	app := startAllInOne(t, "-role", "cloud", "-redis-addr", redis.Addr, "-link-secret", "s",
		"-link-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-link-tls-cert", cert, "-link-tls-key", key)
	opts := job.LinkOptions{DialTimeout: 2 * time.Second}
	_, err := job.DialLink(context.Background(), app.Addr("link"), "s", opts)
	require.Error(t, err, "plain TCP to the TLS link")
	opts.TLS = &tls.Config{RootCAs: ca.Pool}
	c, err := job.DialLink(context.Background(), app.Addr("link"), "s", opts)
	require.NoError(t, err)
	c.Close()
}

func TestLinkTLSFlagsRefused(t *testing.T) {
	cluster := []string{"-redis-addr", "127.0.0.1:6379", "-kafka-brokers", "127.0.0.1:9092", "-link-secret", "s"}
	for _, tc := range []struct {
		name string
		args []string
		flag string
	}{
		{"cert without key", []string{"-link-tls-cert", "c.pem"}, "-link-tls-key"},
		{"cloud with a CA and no certificate", append([]string{"-role", "cloud", "-link-tls-ca", "ca.pem"}, cluster...), "-link-tls-cert"},
		{"job with a certificate and no CA", append([]string{"-role", "job", "-link-tls-cert", "c.pem", "-link-tls-key", "k.pem"}, cluster...), "-link-tls-ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.args, noEnv, io.Discard)
			require.True(t, errors.Is(err, ErrUsage), "%v", err)
			require.Contains(t, err.Error(), tc.flag)
		})
	}
	_, _, err := (&Config{LinkTLSCA: "/nonexistent/ca.pem"}).linkTLS()
	require.ErrorIs(t, err, ErrUsage)
}
