package link

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/protocol"
)

// recorder keeps what a connection's end wrote.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

type result struct {
	node, clientErr string
	peer            Peer
	serverErr       error
	sent            []byte // what job wrote
}

// handshake runs Connect against Accept over a pipe.
func handshake(t *testing.T, a Accepter, secret string, version int) result {
	t.Helper()
	cli, srv := net.Pipe()
	defer cli.Close()
	rec := &recorder{Conn: cli}
	var res result
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer srv.Close()
		res.peer, res.serverErr = a.Accept(bufio.NewReader(srv), srv)
	}()
	node, err := Connect(bufio.NewReader(cli), rec, secret, "job@test", version)
	<-done
	res.node = node
	if err != nil {
		res.clientErr = err.Error()
		require.ErrorIs(t, err, ErrRefused)
	}
	res.sent = rec.out.Bytes()
	return res
}

func TestHello(t *testing.T) {
	node := Accepter{Secret: "s3cret", Node: "cloud-a"}

	res := handshake(t, node, "s3cret", Version)
	require.Empty(t, res.clientErr)
	require.NoError(t, res.serverErr)
	require.Equal(t, "cloud-a", res.node)
	require.Equal(t, Peer{Version: Version, Client: "job@test"}, res.peer)
	require.NotContains(t, string(res.sent), "s3cret", "the secret crossed the wire")

	res = handshake(t, node, "wrong", Version)
	require.Contains(t, res.clientErr, "wrong secret")
	require.ErrorIs(t, res.serverErr, ErrBadSecret)
	require.Empty(t, res.node)

	// A node without a secret refuses, unless told Insecure.
	res = handshake(t, Accepter{Node: "n"}, "", Version)
	require.ErrorIs(t, res.serverErr, ErrNoSecret)
	res = handshake(t, Accepter{Node: "n"}, "", VersionLegacy)
	require.ErrorIs(t, res.serverErr, ErrNoSecret)
	res = handshake(t, Accepter{Node: "n", Insecure: true}, "", Version)
	require.NoError(t, res.serverErr)
	require.Empty(t, res.clientErr)
	res = handshake(t, Accepter{Node: "n", Insecure: true}, "x", Version)
	require.ErrorIs(t, res.serverErr, ErrBadSecret)
}

// TestHelloLegacy: the previous release's hello is still accepted, and
// answered as that release expects.
func TestHelloLegacy(t *testing.T) {
	node := Accepter{Secret: "s3cret", Node: "cloud-a"}
	res := handshake(t, node, "s3cret", VersionLegacy)
	require.Empty(t, res.clientErr)
	require.Equal(t, Peer{Version: VersionLegacy, Client: "job@test"}, res.peer)
	require.Equal(t, "cloud-a", res.node)

	res = handshake(t, node, "wrong", VersionLegacy)
	require.ErrorIs(t, res.serverErr, ErrBadSecret)
	require.Contains(t, res.clientErr, "wrong secret")

	// The exact bytes of the previous release's job (docs/protocol-link.md).
	var out bytes.Buffer
	in := protocol.AppendFrame(nil, &protocol.Frame{Ver: 1, Op: OpHello,
		Body: []byte(`{"version":1,"secret":"s3cret","client":"job@a"}`)})
	peer, err := node.Accept(bufio.NewReader(bytes.NewReader(in)), &out)
	require.NoError(t, err)
	require.Equal(t, "job@a", peer.Client)
	var f protocol.Frame
	require.NoError(t, protocol.ReadFrame(bufio.NewReader(&out), &f, 0))
	require.Equal(t, OpHelloAck, f.Op)
	require.JSONEq(t, `{"version":1,"node":"cloud-a"}`, string(f.Body))
}

// TestHelloReplay: what job sent on one connection is refused on another
// (the node's nonce differs).
func TestHelloReplay(t *testing.T) {
	node := Accepter{Secret: "s3cret", Node: "cloud-a"}
	res := handshake(t, node, "s3cret", Version)
	require.NoError(t, res.serverErr)
	var out bytes.Buffer
	_, err := node.Accept(bufio.NewReader(bytes.NewReader(res.sent)), &out)
	require.ErrorIs(t, err, ErrBadSecret)
}

// fakeNode answers a hello with the frames given, whatever job sent.
func fakeNode(t *testing.T, answers ...[]byte) (string, error) {
	t.Helper()
	cli, srv := net.Pipe()
	defer cli.Close()
	go func() {
		defer srv.Close()
		br := bufio.NewReader(srv)
		var f protocol.Frame
		for _, a := range answers {
			if protocol.ReadFrame(br, &f, 0) != nil {
				return
			}
			if _, err := srv.Write(a); err != nil {
				return
			}
		}
		_, _ = io.Copy(io.Discard, srv)
	}()
	return Connect(bufio.NewReader(cli), cli, "s3cret", "job@test", Version)
}

func frame(t *testing.T, op int32, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return protocol.AppendFrame(nil, &protocol.Frame{Ver: Version, Op: op, Body: b})
}

// TestHelloImpostor: a node that does not know the secret is refused by
// job, whatever it answers.
func TestHelloImpostor(t *testing.T) {
	challenge := frame(t, OpChallenge, Challenge{Version: Version, Nonce: make([]byte, NonceLen)})
	_, err := fakeNode(t, challenge, frame(t, OpHelloAck, HelloAck{Version: Version, Node: "evil"}))
	require.ErrorIs(t, err, ErrRefused)
	require.Contains(t, err.Error(), "could not prove")
	_, err = fakeNode(t, challenge, frame(t, OpHelloAck, HelloAck{Version: Version, Node: "evil", Proof: make([]byte, 32)}))
	require.ErrorIs(t, err, ErrRefused)
	// Skipping the challenge does not skip the node's proof.
	_, err = fakeNode(t, frame(t, OpHelloAck, HelloAck{Version: Version, Node: "evil"}))
	require.ErrorIs(t, err, ErrRefused)
	_, err = fakeNode(t, frame(t, OpChallenge, Challenge{Version: Version, Nonce: []byte("short")}))
	require.ErrorIs(t, err, ErrRefused)
}

// TestHelloOldNode: a node of the previous release refuses the new hello;
// the error says why.
func TestHelloOldNode(t *testing.T) {
	_, err := fakeNode(t, frame(t, OpHelloAck, HelloAck{Version: VersionLegacy, Error: "link: unsupported version: 2, want 1"}))
	require.ErrorIs(t, err, ErrRefused)
	require.Contains(t, err.Error(), "upgrade it")
}

func TestAcceptMalformed(t *testing.T) {
	node := Accepter{Secret: "s3cret", Node: "n"}
	accept := func(in []byte) error {
		_, err := node.Accept(bufio.NewReader(bytes.NewReader(in)), io.Discard)
		return err
	}
	hello := func(body string) []byte {
		return protocol.AppendFrame(nil, &protocol.Frame{Ver: 2, Op: OpHello, Body: []byte(body)})
	}
	require.ErrorIs(t, accept(nil), ErrNoHello)
	require.ErrorIs(t, accept(protocol.AppendFrame(nil, &protocol.Frame{Op: OpDeliver})), ErrNoHello)
	require.ErrorIs(t, accept(hello("{")), ErrBadHello)
	require.ErrorIs(t, accept(hello(`{"version":3}`)), ErrBadVersion)
	require.ErrorIs(t, accept(hello(`{"version":2,"nonce":"AAAA"}`)), ErrBadHello)
	ok := hello(`{"version":2,"nonce":"` + string(bytes.Repeat([]byte("A"), 43)) + `="}`)
	require.ErrorIs(t, accept(ok), ErrBadHello, "no proof follows")
	require.ErrorIs(t, accept(append(ok, hello("{}")...)), ErrBadHello, "a hello where the proof was due")
	require.ErrorIs(t, accept(append(ok, frame(t, OpProof, Proof{Proof: []byte("x")})...)), ErrBadSecret)
}

// TestProofVectors pins the proofs of docs/protocol-link.md section 7: secret
// "s3cret", job's nonce 00..1f, the node's 20..3f, client "job@a", node
// "cloud-a".
func TestProofVectors(t *testing.T) {
	cn, sn := make([]byte, NonceLen), make([]byte, NonceLen)
	for i := range cn {
		cn[i], sn[i] = byte(i), byte(0x20+i)
	}
	b, err := json.Marshal(Proof{Proof: clientProof("s3cret", sn, cn, "job@a")})
	require.NoError(t, err)
	require.JSONEq(t, `{"proof":"kd9n+I1Zp0KArwQldktJNydG5STRJ+wMpG6LSvK1mRc="}`, string(b))
	b, err = json.Marshal(HelloAck{Version: Version, Node: "cloud-a", Proof: serverProof("s3cret", cn, sn, "cloud-a")})
	require.NoError(t, err)
	require.JSONEq(t, `{"version":2,"node":"cloud-a","proof":"wYKzLipuv/eD2KMv2hVYsSkgLFWGaRSqC/165Lq+6mg="}`, string(b))
}
