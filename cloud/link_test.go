package cloud_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/internal/link"
	"github.com/imcloud/imcloud/protocol"
)

// linkClient speaks the link format the way job does.
type linkClient struct {
	nc net.Conn
	br *bufio.Reader
}

func dialLink(t *testing.T, addr string) *linkClient {
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	return &linkClient{nc: nc, br: bufio.NewReader(nc)}
}

func (l *linkClient) write(t *testing.T, op, seq int32, body []byte) {
	_, err := l.nc.Write(protocol.AppendFrame(nil, &protocol.Frame{Ver: 1, Op: op, Seq: seq, Body: body}))
	require.NoError(t, err)
}

func (l *linkClient) read(t *testing.T) protocol.Frame {
	_ = l.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var f protocol.Frame
	require.NoError(t, protocol.ReadFrame(l.br, &f, 0))
	return f
}

func (l *linkClient) hello(t *testing.T, version int, secret string) link.HelloAck {
	b, _ := json.Marshal(link.Hello{Version: version, Secret: secret, Client: "test"})
	l.write(t, link.OpHello, 0, b)
	f := l.read(t)
	require.Equal(t, link.OpHelloAck, f.Op)
	var ack link.HelloAck
	require.NoError(t, json.Unmarshal(f.Body, &ack))
	return ack
}

func (l *linkClient) deliver(t *testing.T, seq int32, msgs ...*imcloud.Message) {
	l.write(t, link.OpDeliver, seq, link.AppendMessages(nil, msgs))
}

func (l *linkClient) raw(t *testing.T, seq int32, body []byte) {
	l.write(t, link.OpDeliver, seq, body)
}

func (l *linkClient) ack(t *testing.T) (int32, string) {
	f := l.read(t)
	require.Equal(t, link.OpAck, f.Op)
	return f.Seq, string(f.Body)
}

func (l *linkClient) expectEOF(t *testing.T) {
	_ = l.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := l.br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
}

// dialWSHeader dials a WebSocket URL with extra request headers.
func dialWSHeader(t *testing.T, url string, h http.Header) *goimClient {
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(h)}
	nc, br, _, err := d.Dial(context.Background(), url)
	require.NoError(t, err)
	if br == nil {
		br = bufio.NewReader(nc)
	}
	c := &goimClient{t: t, nc: nc, br: br, ws: true}
	t.Cleanup(func() { _ = nc.Close() })
	return c
}

// connect runs job's hello (link.Connect) on a new link connection.
func (l *linkClient) connect(secret string, version int) (string, error) {
	_ = l.nc.SetDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = l.nc.SetDeadline(time.Time{}) }()
	return link.Connect(l.br, l.nc, secret, "test", version)
}

// TestLinkHello: the current hello (the secret never sent) and the
// previous release's (counted as legacy) are accepted with the node's
// secret and refused with another.
func TestLinkHello(t *testing.T) {
	n := startNode(t, cloud.Config{})
	c := dialRaw(t, n.tcpAddr, false)
	r := c.auth(1, goimAuth(1, "", "", 1000))
	for _, version := range []int{link.Version, link.VersionLegacy} {
		lc := dialLink(t, n.linkAddr)
		node, err := lc.connect("s3cret", version)
		require.NoError(t, err, "version %d", version)
		assert.Equal(t, n.srv.ID(), node)
		lc.deliver(t, 1, keysMsg(1000, "hello", r.Key))
		seq, body := lc.ack(t)
		assert.Equal(t, int32(1), seq)
		assert.Empty(t, body)
		assert.Equal(t, "hello", string(c.nextOp(1000).body))

		lc = dialLink(t, n.linkAddr)
		_, err = lc.connect("nope", version)
		require.ErrorIs(t, err, link.ErrRefused, "version %d", version)
		lc.expectEOF(t)
	}
	st := n.srv.Stats()
	assert.Equal(t, uint64(1), st.LinkLegacyHellos)
	assert.Equal(t, uint64(2), st.LinkRefused)
}

// TestServeLinkWithoutSecret: ServeLink without a secret (and without
// InsecureLink) fails at once and closes the listener, rather than
// refusing every hello.
func TestServeLinkWithoutSecret(t *testing.T) {
	srv, err := cloud.New(cloud.Config{Authenticator: cloud.DevAuthenticator()})
	require.NoError(t, err)
	defer srv.Shutdown(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.ErrorIs(t, srv.ServeLink(ln), cloud.ErrNoLinkSecret)
	_, err = ln.Accept()
	require.Error(t, err, "the listener is closed")
}
