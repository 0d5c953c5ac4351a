package link

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/imcloud/imcloud/protocol"
)

// FuzzAccept feeds arbitrary bytes to the node's side of the hello: no
// input may panic or be accepted without the secret (the fuzzer knows the
// secret only as the legacy hello's plain text; it cannot forge a proof).
//
//	go test -run '^$' -fuzz '^FuzzAccept$' -fuzztime 60s ./internal/link/
func FuzzAccept(f *testing.F) {
	hello := func(ver int16, op int32, body string) []byte {
		return protocol.AppendFrame(nil, &protocol.Frame{Ver: ver, Op: op, Body: []byte(body)})
	}
	nonce := `"` + string(bytes.Repeat([]byte("A"), 43)) + `="`
	f.Add(hello(1, OpHello, `{"version":1,"secret":"s3cret","client":"job@a"}`))
	f.Add(hello(1, OpHello, `{"version":1,"secret":"nope"}`))
	f.Add(hello(2, OpHello, `{"version":2,"client":"job@a","nonce":`+nonce+`}`))
	f.Add(append(hello(2, OpHello, `{"version":2,"nonce":`+nonce+`}`), hello(2, OpProof, `{"proof":`+nonce+`}`)...))
	f.Add(hello(2, OpHello, `{"version":2,"nonce":"AA=="}`))
	f.Add(hello(2, OpDeliver, ``))
	f.Add([]byte{0, 0, 0, 16, 0, 16})
	node := Accepter{Secret: "s3cret", Node: "cloud-a"}
	f.Fuzz(func(t *testing.T, in []byte) {
		peer, err := node.Accept(bufio.NewReader(bytes.NewReader(in)), io.Discard)
		if err == nil && peer.Version != VersionLegacy {
			t.Fatalf("accepted a version %d hello without a proof", peer.Version)
		}
	})
}
