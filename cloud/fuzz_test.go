package cloud

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

// The fuzz targets feed arbitrary client bytes into a real connection of a
// real node (handshake, auth, read loop, replies, writers) over net.Pipe,
// then check that the connection ends once the client hangs up, and that a
// healthy connection on the same node still gets a push: no input may
// panic, hang a reader, or disturb another connection.
//
//	go test -run '^$' -fuzz '^FuzzInboundTCP$' -fuzztime 60s -fuzzminimizetime 1s ./cloud/
//	go test -run '^$' -fuzz '^FuzzInboundWS$' -fuzztime 60s -fuzzminimizetime 1s ./cloud/
//	go test -run '^$' -fuzz '^FuzzWSUpgrade$' -fuzztime 60s -fuzzminimizetime 1s ./cloud/
//
// (-fuzzminimizetime: the default 60 s spent minimizing every new
// interesting input stalls exploration here.)

// fuzzHealthyKey is the healthy connection's key; fuzzed auths may not
// claim it (that would replace it, which is the designed behaviour).
const fuzzHealthyKey = "fuzz-healthy-connection"

var errFuzzKey = errors.New("fuzz: reserved key")

// fuzzNode is a node with one healthy connection.
type fuzzNode struct {
	s       *Server
	ws      bool
	upgrade bool // fuzzed connections start with the HTTP upgrade
	healthy net.Conn
	br      *bufio.Reader
	seq     int
}

func newFuzzNode(f *testing.F, isWS bool) *fuzzNode {
	dev := DevAuthenticator()
	registered := false
	s, err := New(Config{
		Authenticator: AuthFunc(func(ctx context.Context, req *AuthRequest) (Identity, error) {
			if req.Body.Key == fuzzHealthyKey {
				if registered {
					return Identity{}, errFuzzKey
				}
				registered = true // only the setup below authenticates before fuzzing
			}
			return dev.Authenticate(ctx, req)
		}),
		HandshakeTimeout: 500 * time.Millisecond,
		InboundRate:      1000,
		MaxConnsPerIP:    -1,
		AcceptRate:       -1,
	})
	if err != nil {
		f.Fatal(err)
	}
	n := &fuzzNode{s: s, ws: isWS}
	cli := n.open(false)
	n.healthy, n.br = cli, bufio.NewReader(cli)
	auth := protocol.AppendFrame(nil, &protocol.Frame{Ver: 1, Op: protocol.OpAuth, Seq: 1,
		Body: []byte(`{"mid":1,"key":"` + fuzzHealthyKey + `","room_id":"live://healthy","accepts":[1000]}`)})
	if err := n.write(auth); err != nil {
		f.Fatal(err)
	}
	if op, _, err := n.read(); err != nil || op != protocol.OpAuthReply {
		f.Fatalf("healthy auth: op %d, %v", op, err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		_ = cli.Close()
	})
	return n
}

// open starts serving a new pipe connection as the accept loop would and
// returns the client's end; raw: a WebSocket one starts with the upgrade.
func (n *fuzzNode) open(raw bool) net.Conn {
	cli, srv := net.Pipe()
	if n.s.addConn(srv, netip.Addr{}) != refusedNone {
		panic("fuzz: server closed")
	}
	n.s.stats.conns.Add(1)
	n.s.stats.accepted.Add(1)
	if n.ws && raw {
		go n.s.serveConn(srv, true, nil, false)
	} else if n.ws {
		// Past the HTTP upgrade: the fuzzer writes WebSocket frames.
		go n.s.serveConn(srv, true, &handshakeInfo{}, true)
	} else {
		go n.s.serveConn(srv, false, nil, false)
	}
	return cli
}

// write sends one goim frame on the healthy connection.
func (n *fuzzNode) write(frame []byte) error {
	_ = n.healthy.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if n.ws {
		return wsutil.WriteClientBinary(n.healthy, frame)
	}
	_, err := n.healthy.Write(frame)
	return err
}

// read returns the next goim frame's op and body on the healthy
// connection (the first frame of a WebSocket message, unwrapping op 9).
func (n *fuzzNode) read() (int32, []byte, error) {
	_ = n.healthy.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b []byte
	if n.ws {
		data, _, err := wsutil.ReadServerData(struct {
			io.Reader
			io.Writer
		}{n.br, n.healthy})
		if err != nil {
			return 0, nil, err
		}
		b = data
	} else {
		var h [protocol.HeaderLen]byte
		if _, err := io.ReadFull(n.br, h[:]); err != nil {
			return 0, nil, err
		}
		b = make([]byte, binary.BigEndian.Uint32(h[:]))
		copy(b, h[:])
		if _, err := io.ReadFull(n.br, b[protocol.HeaderLen:]); err != nil {
			return 0, nil, err
		}
	}
	var f protocol.Frame
	if _, err := protocol.ParseFrame(b, &f, 1<<20); err != nil {
		return 0, nil, err
	}
	if f.Op == protocol.OpRaw {
		if _, err := protocol.ParseFrame(f.Body, &f, 1<<20); err != nil {
			return 0, nil, err
		}
	}
	return f.Op, f.Body, nil
}

// run feeds data to a fresh connection and checks the node afterwards.
func (n *fuzzNode) run(t *testing.T, data []byte) {
	base := n.s.stats.conns.Load()
	cli := n.open(n.upgrade)
	drained := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, cli); close(drained) }()
	_ = cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = cli.Write(data) // fails once the server hangs up: fine
	_ = cli.Close()
	<-drained
	deadline := time.Now().Add(5 * time.Second)
	for n.s.stats.conns.Load() != base {
		if time.Now().After(deadline) {
			t.Fatalf("fuzzed connection still open 5 s after the client hung up (%d conns, want %d)", n.s.stats.conns.Load(), base)
		}
		time.Sleep(100 * time.Microsecond)
	}
	if got := n.s.stats.sessions.Load(); got != 1 {
		t.Fatalf("%d sessions after the fuzzed connection ended, want only the healthy one", got)
	}
	// The healthy connection still gets its pushes.
	n.seq++
	body := fmt.Sprintf("alive %d", n.seq)
	msg := &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Node: n.s.ID(), Keys: []string{fuzzHealthyKey}, Op: 1000, Body: []byte(body)}
	if err := n.s.Deliver(context.Background(), []*imcloud.Message{msg}); err != nil {
		t.Fatal(err)
	}
	op, got, err := n.read()
	if err != nil || op != 1000 || string(got) != body {
		t.Fatalf("healthy connection: op %d body %q err %v, want op 1000 %q", op, got, err, body)
	}
}

func goimFrame(ver int16, op, seq int32, body string) []byte {
	return protocol.AppendFrame(nil, &protocol.Frame{Ver: ver, Op: op, Seq: seq, Body: []byte(body)})
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// rawHeader is a goim header with arbitrary (possibly lying) fields.
func rawHeader(packLen uint32, headerLen uint16, op int32) []byte {
	h := make([]byte, protocol.HeaderLen)
	binary.BigEndian.PutUint32(h, packLen)
	binary.BigEndian.PutUint16(h[4:], headerLen)
	binary.BigEndian.PutUint16(h[6:], 1)
	binary.BigEndian.PutUint32(h[8:], uint32(op))
	return h
}

const fuzzAuth = `{"mid":7,"key":"k7","room_id":"live://fuzz","platform":"web","accepts":[1000,1001]}`

// goimSeeds are goim frame streams (the TCP payload, and the WebSocket
// message payloads).
func goimSeeds() [][]byte {
	auth := goimFrame(1, protocol.OpAuth, 1, fuzzAuth)
	return [][]byte{
		auth,
		goimFrame(2, protocol.OpAuth, 1, fuzzAuth), // extensions
		cat(auth, goimFrame(1, protocol.OpHeartbeat, 2, "")),
		cat(auth, goimFrame(1, protocol.OpChangeRoom, 3, "live://other"), goimFrame(1, protocol.OpSub, 4, "1000,1002"),
			goimFrame(1, protocol.OpUnsub, 5, "1001"), goimFrame(1, protocol.OpSendMsg, 6, "hello"), goimFrame(1, 1234, 7, "x")),
		cat(goimFrame(1, protocol.OpHeartbeat, 1, ""), auth), // frame before auth
		goimFrame(1, protocol.OpAuth, 1, `{"mid":`),          // bad JSON
		goimFrame(1, protocol.OpAuth, 1, `{"mid":1,"key":"`+string(bytes.Repeat([]byte("k"), 200))+`"}`),
		auth[:20],                    // truncated body
		auth[:8],                     // truncated header
		rawHeader(1<<20, 16, 7),      // oversized
		rawHeader(0xFFFFFFFF, 16, 7), // negative packet length
		rawHeader(10, 16, 7),         // packet shorter than its header
		rawHeader(16, 20, 7),         // headerLen != 16
		cat(auth, rawHeader(1<<16, 16, protocol.OpHeartbeat)),
		cat(auth, goimFrame(1, protocol.OpChangeRoom, 2, string(bytes.Repeat([]byte("r"), 300)))),
		[]byte("GET /sub HTTP/1.1\r\n\r\n"), // garbage
		{},
	}
}

// FuzzInboundTCP fuzzes the TCP frame reader, auth and the read loop.
func FuzzInboundTCP(f *testing.F) {
	for _, s := range goimSeeds() {
		f.Add(s)
	}
	n := newFuzzNode(f, false)
	f.Fuzz(func(t *testing.T, data []byte) { n.run(t, data) })
}

// wsFrame is a client WebSocket frame (masked unless unmasked is set).
func wsFrame(fin bool, op ws.OpCode, payload []byte, unmasked bool) []byte {
	fr := ws.Frame{Header: ws.Header{Fin: fin, OpCode: op, Length: int64(len(payload))}, Payload: append([]byte(nil), payload...)}
	if !unmasked {
		fr = ws.MaskFrameInPlace(fr)
	}
	var b bytes.Buffer
	_ = ws.WriteFrame(&b, fr)
	return b.Bytes()
}

// wsHeader is a masked client frame header announcing length n, with no
// payload behind it.
func wsHeader(fin bool, op ws.OpCode, n int64) []byte {
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, ws.Header{Fin: fin, OpCode: op, Length: n, Masked: true, Mask: [4]byte{1, 2, 3, 4}})
	return b.Bytes()
}

// FuzzInboundWS fuzzes the WebSocket frame reader (fragments, control
// frames, masks, lengths) and the goim frames inside, after the upgrade.
func FuzzInboundWS(f *testing.F) {
	for _, s := range goimSeeds() {
		f.Add(wsFrame(true, ws.OpBinary, s, false))
	}
	auth := goimFrame(1, protocol.OpAuth, 1, fuzzAuth)
	hb := goimFrame(1, protocol.OpHeartbeat, 2, "")
	seeds := [][]byte{
		wsFrame(true, ws.OpText, auth, false),                                                                  // text frame
		wsFrame(true, ws.OpBinary, cat(auth, hb), false),                                                       // two goim frames in one message
		cat(wsFrame(false, ws.OpBinary, auth[:10], false), wsFrame(true, ws.OpContinuation, auth[10:], false)), // fragmented
		cat(wsFrame(false, ws.OpBinary, auth[:10], false), wsFrame(true, ws.OpPing, []byte("p"), false),
			wsFrame(true, ws.OpContinuation, auth[10:], false)), // ping between fragments
		cat(wsFrame(true, ws.OpBinary, auth, false), wsFrame(true, ws.OpPing, []byte("ping"), false), wsFrame(true, ws.OpBinary, hb, false)),
		cat(wsFrame(true, ws.OpBinary, auth, false), wsFrame(true, ws.OpPong, nil, false)),
		cat(wsFrame(true, ws.OpBinary, auth, false), wsFrame(true, ws.OpClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}, false)),
		cat(wsFrame(true, ws.OpBinary, auth, false), wsFrame(true, ws.OpClose, nil, false)),
		wsFrame(true, ws.OpContinuation, auth, false),                                                    // continuation first
		cat(wsFrame(false, ws.OpBinary, auth[:10], false), wsFrame(true, ws.OpBinary, auth[10:], false)), // new message mid-fragment
		wsFrame(true, ws.OpBinary, auth, true),                                                           // unmasked
		wsFrame(false, ws.OpPing, []byte("x"), false),                                                    // fragmented control
		wsFrame(true, ws.OpPing, bytes.Repeat([]byte("p"), 126), false),                                  // control too long
		wsFrame(true, ws.OpCode(0x3), auth, false),                                                       // reserved opcode
		wsFrame(true, ws.OpCode(0xB), nil, false),                                                        // reserved control opcode
		wsHeader(true, ws.OpBinary, 1<<40),                                                               // huge length
		wsHeader(true, ws.OpBinary, 1<<63-1),
		wsHeader(true, ws.OpBinary, 200),                                                // 16-bit length, truncated payload
		cat(wsFrame(true, ws.OpBinary, auth, false), wsHeader(true, ws.OpBinary, 9000)), // oversized message after auth
		{0x82},                   // truncated header
		{0xC2, 0x80, 1, 2, 3, 4}, // reserved bit set
	}
	for _, s := range seeds {
		f.Add(s)
	}
	n := newFuzzNode(f, true)
	f.Fuzz(func(t *testing.T, data []byte) { n.run(t, data) })
}

// FuzzWSUpgrade fuzzes the standalone WebSocket upgrade (ServeWS): the
// request line, the headers and their size cap, then the first frames.
func FuzzWSUpgrade(f *testing.F) {
	const hdr = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	auth := wsFrame(true, ws.OpBinary, goimFrame(1, protocol.OpAuth, 1, fuzzAuth), false)
	seeds := []string{
		"GET /sub HTTP/1.1\r\n" + hdr + "\r\n",
		"GET /sub?room=1&x=%zz HTTP/1.1\r\n" + hdr + "\r\n",
		"GET /sub HTTP/1.1\r\n" + hdr + "Origin: http://a\r\nCookie: t=1\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
		"GET /other HTTP/1.1\r\n" + hdr + "\r\n",
		"POST /sub HTTP/1.1\r\n" + hdr + "\r\n",
		"GET /sub HTTP/1.0\r\n" + hdr + "\r\n",
		"GET /sub HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /sub HTTP/1.1\r\n" + hdr + "X-Long: " + strings.Repeat("a", maxUpgradeBytes) + "\r\n\r\n",
		"GET /sub HTTP/1.1\r\n" + strings.Repeat("X-A: 1\r\n", 80) + hdr + "\r\n",
		"GET /sub HTTP/1.1\nHost: x\n\n",
		"GET\r\n\r\n",
		"\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
		f.Add(cat([]byte(s), auth))
	}
	n := newFuzzNode(f, true)
	n.upgrade = true
	f.Fuzz(func(t *testing.T, data []byte) { n.run(t, data) })
}
