package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/cloud/client"
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

// TestLinkTLSCluster: a cloud node, job and logic started with the link
// TLS flags (the node requiring job's client certificate) carry a push
// from the API to a client; plain TCP to the node's link is refused.
func TestLinkTLSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three roles with Redis and a broker")
	}
	redis, kafka := testenv.StartRedis(t), testenv.StartKafka(t, "imcloud-push", "imcloud-push.events", "imcloud-push.upstream")
	ca := testenv.NewCA(t)
	caFile := ca.WriteCA(t)
	nodeCert, nodeKey := testenv.WritePEM(t, ca.Issue(t, "node", x509.ExtKeyUsageServerAuth))
	jobCert, jobKey := testenv.WritePEM(t, ca.Issue(t, "job", x509.ExtKeyUsageClientAuth))
	common := []string{"-redis-addr", redis.Addr, "-kafka-brokers", kafka.Brokers[0], "-link-secret", "s",
		"-admin-addr", "127.0.0.1:0", "-link-tls-ca", caFile}
	node := startAllInOne(t, append([]string{"-role", "cloud", "-link-addr", "127.0.0.1:0",
		"-link-tls-cert", nodeCert, "-link-tls-key", nodeKey}, common...)...)
	startAllInOne(t, append([]string{"-role", "job", "-link-tls-cert", jobCert, "-link-tls-key", jobKey}, common...)...)
	logic := startAllInOne(t, append([]string{"-role", "logic"}, common...)...)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Network: "tcp", Addr: node.Addr("tcp"), Mid: 1, Room: "live://tls", Accepts: []int32{1000}})
	require.NoError(t, err)
	defer c.Close()
	// The roles connect to their backends and find each other
	// asynchronously: probe until a push gets through.
	url := "http://" + logic.Addr("http") + "/goim/push/room?operation=1000&type=live&room=tls"
	require.Eventually(t, func() bool {
		resp, err := http.Post(url, "text/plain", strings.NewReader("probe"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		select {
		case <-c.Messages():
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	}, 20*time.Second, 10*time.Millisecond, "no push reached the client over the TLS link")
	post(t, logic, "/goim/push/room?operation=1000&type=live&room=tls", "over the TLS link")
	for got := ""; got != "over the TLS link"; {
		select {
		case p := <-c.Messages():
			got = string(p.Body)
			require.Contains(t, []string{"probe", "over the TLS link"}, got)
		case <-time.After(10 * time.Second):
			t.Fatal("no push over the TLS link within 10s")
		}
	}

	_, err = job.DialLink(ctx, node.Addr("link"), "s", job.LinkOptions{DialTimeout: 2 * time.Second})
	require.Error(t, err, "plain TCP to the TLS link")
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
