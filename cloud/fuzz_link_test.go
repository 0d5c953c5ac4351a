package cloud

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/link"
	"github.com/imcloud/imcloud/protocol"
)

// FuzzLinkConn feeds arbitrary bytes, after a real hello, into a link
// connection of a real node (the link reader, the deliver body parser,
// Deliver, the acks) over net.Pipe, then checks that the connection ends
// once job hangs up and that a client connection on the same node still
// gets a push. The hello itself is fuzzed by internal/link's FuzzAccept.
//
//	go test -run '^$' -fuzz '^FuzzLinkConn$' -fuzztime 60s -fuzzminimizetime 1s ./cloud/
func FuzzLinkConn(f *testing.F) {
	n := newFuzzNode(f, false)
	n.s.cfg.LinkSecret = "fuzz-link-secret"
	frame := func(op, seq int32, body []byte) []byte {
		return protocol.AppendFrame(nil, &protocol.Frame{Ver: link.Version, Op: op, Seq: seq, Body: body})
	}
	msgs := func(ms ...*imcloud.Message) []byte { return link.AppendMessages(nil, ms) }
	id := imcloud.MessageID{1, 2, 3}
	room := &imcloud.Message{ID: id, Kind: imcloud.KindRoom, Op: 1000, Room: "live://healthy", Body: []byte("r")}
	keys := &imcloud.Message{ID: id, Kind: imcloud.KindKeys, Op: 1000, Node: n.s.ID(), Keys: []string{"k"}, Body: []byte("k")}
	bc := &imcloud.Message{ID: id, Kind: imcloud.KindBroadcast, Op: 1000, Speed: 10, Body: []byte("b")}
	f.Add(frame(link.OpDeliver, 1, msgs(room)))
	f.Add(cat(frame(link.OpDeliver, 1, msgs(keys, room)), frame(link.OpDeliver, 2, msgs(bc))))
	f.Add(frame(link.OpDeliver, 7, []byte{0xff}))
	f.Add(frame(link.OpDeliver, 7, []byte{2, 3, 1, 0, 0}))
	f.Add(frame(link.OpHello, 0, []byte(`{"version":2}`)))
	f.Add(frame(0x4c4b00ff, 0, nil))
	f.Add(rawHeader(64<<20, protocol.HeaderLen, link.OpDeliver))
	f.Add(rawHeader(3, protocol.HeaderLen, link.OpDeliver))
	f.Fuzz(func(t *testing.T, data []byte) { n.runLink(t, data) })
}

// linkOpen reports whether a link connection is still served.
func (n *fuzzNode) linkOpen() bool {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	return len(n.s.links) != 0
}

// runLink serves a new link connection as ServeLink would, says hello,
// writes data on it and checks the node afterwards.
func (n *fuzzNode) runLink(t *testing.T, data []byte) {
	cli, srv := net.Pipe()
	n.s.mu.Lock()
	n.s.links[srv] = struct{}{}
	n.s.wg.Add(1)
	n.s.mu.Unlock()
	go n.s.serveLinkConn(srv)
	_ = cli.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(cli)
	if _, err := link.Connect(br, cli, n.s.cfg.LinkSecret, "fuzz", link.Version); err != nil {
		t.Fatalf("hello: %v", err)
	}
	drained := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, br); close(drained) }()
	_, _ = cli.Write(data) // fails once the node hangs up: fine
	_ = cli.Close()
	<-drained
	deadline := time.Now().Add(5 * time.Second)
	for n.linkOpen() {
		if time.Now().After(deadline) {
			t.Fatalf("link connection still open 5 s after job hung up")
		}
		time.Sleep(100 * time.Microsecond)
	}
	// The client connection still gets its pushes (after any the fuzzed
	// requests sent it).
	n.seq++
	body := fmt.Sprintf("alive %d", n.seq)
	msg := &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Node: n.s.ID(), Keys: []string{fuzzHealthyKey}, Op: 1000, Body: []byte(body)}
	if err := n.s.Deliver(context.Background(), []*imcloud.Message{msg}); err != nil {
		t.Fatal(err)
	}
	for {
		op, got, err := n.read()
		if err != nil {
			t.Fatalf("healthy connection: %v, want %q", err, body)
		}
		if op == 1000 && string(got) == body {
			return
		}
	}
}
