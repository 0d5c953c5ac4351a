package link

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/imcloud/imcloud/protocol"
)

// The hello proves, both ways, that job and the node share the link secret,
// and the secret never crosses the network:
//
//	job  -> node  Hello{version: 2, client, nonce: cn}
//	node -> job   Challenge{version: 2, nonce: sn}
//	job  -> node  Proof{proof: HMAC(secret, "imcloud link v2 client", sn, cn, client)}
//	node -> job   HelloAck{version: 2, node, proof: HMAC(secret, "imcloud link v2 server", cn, sn, node)}
//
// HMAC is HMAC-SHA256 keyed with the secret over the label, then each part
// as a 4-byte big-endian length and its bytes; nonces are NonceLen random
// bytes. A recorded hello is useless later (the node's nonce differs), the
// node answers a proof only to a job that proved itself first, and job
// checks the node's proof, so an impostor node learns nothing and is
// refused. A refusal is a HelloAck with Error set, then the node closes.
//
// Version 1, the hello of the previous release, carries the secret itself
// (Hello{version: 1, secret, client}, answered by a HelloAck of version 1).
// Nodes still accept it, for one release, so job and the nodes can be
// upgraded one at a time; it is deprecated.

// Link hello versions.
const (
	// Version is the hello job sends: challenge and proofs.
	Version = 2
	// VersionLegacy is the previous hello, the secret in clear; nodes
	// accept it until the next release.
	VersionLegacy = 1
)

// NonceLen is the length of each side's nonce.
const NonceLen = 32

// MaxHelloBody caps the body of each hello frame (Hello, Proof).
const MaxHelloBody = 4096

// Hello opens a link connection.
type Hello struct {
	Version int `json:"version"`
	// Secret is the shared secret itself: version 1 only.
	Secret string `json:"secret,omitempty"`
	// Client names the job instance, for logs.
	Client string `json:"client,omitempty"`
	// Nonce is job's nonce (version 2), NonceLen bytes (base64 in JSON).
	Nonce []byte `json:"nonce,omitempty"`
}

// Challenge is the node's answer to a version 2 Hello.
type Challenge struct {
	Version int    `json:"version"`
	Nonce   []byte `json:"nonce"`
}

// Proof is job's answer to a Challenge.
type Proof struct {
	Proof []byte `json:"proof"`
}

// HelloAck ends the hello: accepted, or refused with Error.
type HelloAck struct {
	Version int    `json:"version"`
	Node    string `json:"node,omitempty"`
	// Proof is the node's proof (version 2, when accepted).
	Proof []byte `json:"proof,omitempty"`
	Error string `json:"error,omitempty"`
}

// Reasons a node refuses a hello (Accept's errors), and the error Connect
// wraps for every refusal.
var (
	ErrNoHello    = errors.New("link: no hello")
	ErrBadSecret  = errors.New("link: wrong secret")
	ErrBadVersion = errors.New("link: unsupported version")
	ErrBadHello   = errors.New("link: malformed hello")
	ErrNoSecret   = errors.New("link: no secret configured on the node")
	ErrRefused    = errors.New("link: hello refused")
)

func clientProof(secret string, serverNonce, clientNonce []byte, client string) []byte {
	return mac(secret, "imcloud link v2 client", serverNonce, clientNonce, []byte(client))
}

func serverProof(secret string, clientNonce, serverNonce []byte, node string) []byte {
	return mac(secret, "imcloud link v2 server", clientNonce, serverNonce, []byte(node))
}

func mac(secret, label string, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(label))
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		m.Write(n[:])
		m.Write(p)
	}
	return m.Sum(nil)
}

func newNonce() []byte {
	b := make([]byte, NonceLen)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

func writeJSON(w io.Writer, ver int, op int32, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(protocol.AppendFrame(nil, &protocol.Frame{Ver: int16(ver), Op: op, Body: body}))
	return err
}

// Accepter is the node's side of the hello.
type Accepter struct {
	// Secret is the shared secret.
	Secret string
	// Insecure accepts hellos when Secret is empty; otherwise a node
	// without a secret refuses every hello.
	Insecure bool
	// Node is the node's id, sent in the HelloAck.
	Node string
}

// Peer is what Accept learned about an accepted job.
type Peer struct {
	// Version is the hello's version: VersionLegacy means the secret
	// crossed the network.
	Version int
	// Client is the name job gave.
	Client string
}

// Accept runs the node's side of the hello on a new connection: it reads
// the Hello from br and, for version 2, writes the Challenge and reads the
// Proof. It answers every hello it could read with a HelloAck to w (a
// refusal names its reason), and returns the Peer, or why it refused
// (ErrNoHello: the first frame was unreadable or no hello, and nothing was
// answered; ErrBadHello, ErrBadVersion, ErrBadSecret, ErrNoSecret) or the
// write error. The caller bounds it with a deadline.
func (a Accepter) Accept(br *bufio.Reader, w io.Writer) (Peer, error) {
	var f protocol.Frame
	if err := protocol.ReadFrame(br, &f, MaxHelloBody); err != nil {
		return Peer{}, fmt.Errorf("%w: %v", ErrNoHello, err)
	}
	if f.Op != OpHello {
		return Peer{}, fmt.Errorf("%w: op %#x", ErrNoHello, f.Op)
	}
	var h Hello
	err := json.Unmarshal(f.Body, &h)
	peer := Peer{Version: h.Version, Client: h.Client}
	switch {
	case err != nil:
		err = fmt.Errorf("%w: %v", ErrBadHello, err)
	case h.Version == VersionLegacy:
		if subtle.ConstantTimeCompare([]byte(h.Secret), []byte(a.Secret)) != 1 {
			err = ErrBadSecret
		}
	case h.Version != Version:
		err = fmt.Errorf("%w: %d, want %d or %d", ErrBadVersion, h.Version, Version, VersionLegacy)
	case len(h.Nonce) != NonceLen:
		err = fmt.Errorf("%w: nonce of %d bytes, want %d", ErrBadHello, len(h.Nonce), NonceLen)
	}
	if err == nil && a.Secret == "" && !a.Insecure {
		err = ErrNoSecret
	}
	if err != nil || h.Version == VersionLegacy {
		return peer, a.ack(w, h.Version, nil, err)
	}

	sn := newNonce()
	if err := writeJSON(w, Version, OpChallenge, Challenge{Version: Version, Nonce: sn}); err != nil {
		return peer, err
	}
	var p Proof
	if err := protocol.ReadFrame(br, &f, MaxHelloBody); err != nil {
		return peer, fmt.Errorf("%w: reading the proof: %v", ErrBadHello, err)
	}
	if f.Op != OpProof || json.Unmarshal(f.Body, &p) != nil {
		return peer, a.ack(w, Version, nil, fmt.Errorf("%w: op %#x where a proof was due", ErrBadHello, f.Op))
	}
	if !hmac.Equal(p.Proof, clientProof(a.Secret, sn, h.Nonce, h.Client)) {
		return peer, a.ack(w, Version, nil, ErrBadSecret)
	}
	return peer, a.ack(w, Version, serverProof(a.Secret, h.Nonce, sn, a.Node), nil)
}

// ack writes the HelloAck; refused is its error, returned as is.
func (a Accepter) ack(w io.Writer, ver int, proof []byte, refused error) error {
	ack := HelloAck{Version: ver, Node: a.Node, Proof: proof}
	if ver != VersionLegacy && ver != Version {
		ack.Version = Version
	}
	if refused != nil {
		ack.Error = refused.Error()
		ack.Proof = nil
	}
	if err := writeJSON(w, ack.Version, OpHelloAck, ack); err != nil && refused == nil {
		return err
	}
	return refused
}

// Connect runs job's side of the hello on a new connection: it writes the
// Hello to w and reads the node's answers from br. version is Version, or
// VersionLegacy to reach a node of the previous release (the secret then
// crosses the network). It returns the node's id, or an error wrapping
// ErrRefused when the node refused the hello or could not prove that it
// knows the secret; other errors are the connection's. The caller bounds
// it with a deadline.
func Connect(br *bufio.Reader, w io.Writer, secret, client string, version int) (node string, err error) {
	h := Hello{Version: version, Client: client}
	if version == VersionLegacy {
		h.Secret = secret
	} else {
		h.Nonce = newNonce()
	}
	if err := writeJSON(w, version, OpHello, h); err != nil {
		return "", err
	}
	var f protocol.Frame
	if err := protocol.ReadFrame(br, &f, MaxHelloBody); err != nil {
		return "", err
	}
	var c Challenge
	if f.Op == OpChallenge && version != VersionLegacy {
		if err := json.Unmarshal(f.Body, &c); err != nil || len(c.Nonce) != NonceLen {
			return "", fmt.Errorf("%w: malformed challenge", ErrRefused)
		}
		if err := writeJSON(w, version, OpProof, Proof{Proof: clientProof(secret, c.Nonce, h.Nonce, client)}); err != nil {
			return "", err
		}
		if err := protocol.ReadFrame(br, &f, MaxHelloBody); err != nil {
			return "", err
		}
	}
	var ack HelloAck
	if f.Op != OpHelloAck || json.Unmarshal(f.Body, &ack) != nil {
		return "", fmt.Errorf("%w: answered op %#x", ErrRefused, f.Op)
	}
	switch {
	case ack.Error != "" && version != VersionLegacy && ack.Version == VersionLegacy:
		return "", fmt.Errorf("%w: %s (the node speaks link version %d only: upgrade it)", ErrRefused, ack.Error, VersionLegacy)
	case ack.Error != "":
		return "", fmt.Errorf("%w: %s", ErrRefused, ack.Error)
	case ack.Version != version:
		return "", fmt.Errorf("%w: the node speaks version %d", ErrRefused, ack.Version)
	case version != VersionLegacy && (c.Nonce == nil || !hmac.Equal(ack.Proof, serverProof(secret, h.Nonce, c.Nonce, ack.Node))):
		return "", fmt.Errorf("%w: the node could not prove it knows the secret", ErrRefused)
	}
	return ack.Node, nil
}
