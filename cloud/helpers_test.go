package cloud_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/job"
)

// *cloud.Server is job's Link in the one-process mode.
var _ job.Link = (*cloud.Server)(nil)

// fakeStore satisfies cloud.SessionStore for Store-backed tests.
var _ cloud.SessionStore = (*fakeStore)(nil)

// node is a running server with its listeners.
type node struct {
	srv      *cloud.Server
	tcpAddr  string
	wsAddr   string
	linkAddr string
}

func startNode(t *testing.T, cfg cloud.Config) *node {
	t.Helper()
	if cfg.Authenticator == nil {
		cfg.Authenticator = cloud.DevAuthenticator()
	}
	if cfg.LinkSecret == "" {
		cfg.LinkSecret = "s3cret"
	}
	srv, err := cloud.New(cfg)
	require.NoError(t, err)
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ll, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = srv.ServeTCP(tl) }()
	go func() { defer wg.Done(); _ = srv.ServeWS(wl) }()
	go func() { defer wg.Done(); _ = srv.ServeLink(ll) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		wg.Wait()
	})
	return &node{srv: srv, tcpAddr: tl.Addr().String(), wsAddr: wl.Addr().String(), linkAddr: ll.Addr().String()}
}

// rawFrame is a goim frame, decoded by hand (no project code).
type rawFrame struct {
	ver  int16
	op   int32
	seq  int32
	body []byte
}

func encodeRaw(ver int16, op, seq int32, body []byte) []byte {
	b := make([]byte, 16+len(body))
	binary.BigEndian.PutUint32(b[0:], uint32(16+len(body)))
	binary.BigEndian.PutUint16(b[4:], 16)
	binary.BigEndian.PutUint16(b[6:], uint16(ver))
	binary.BigEndian.PutUint32(b[8:], uint32(op))
	binary.BigEndian.PutUint32(b[12:], uint32(seq))
	copy(b[16:], body)
	return b
}

func decodeRaw(b []byte) ([]rawFrame, error) {
	var out []rawFrame
	for len(b) > 0 {
		if len(b) < 16 {
			return out, errors.New("short frame")
		}
		n := int(binary.BigEndian.Uint32(b))
		if binary.BigEndian.Uint16(b[4:]) != 16 || n < 16 || n > len(b) {
			return out, errors.New("bad frame")
		}
		out = append(out, rawFrame{
			ver: int16(binary.BigEndian.Uint16(b[6:])), op: int32(binary.BigEndian.Uint32(b[8:])),
			seq: int32(binary.BigEndian.Uint32(b[12:])), body: append([]byte(nil), b[16:n]...),
		})
		b = b[n:]
	}
	return out, nil
}

// goimClient is a goim-style client written from the wire description:
// raw frames over TCP, or binary WebSocket messages.
type goimClient struct {
	t   *testing.T
	nc  net.Conn
	br  *bufio.Reader
	ws  bool
	buf []rawFrame // frames read ahead (one WS message can carry several)
}

func dialRaw(t *testing.T, addr string, isWS bool) *goimClient {
	t.Helper()
	c := &goimClient{t: t, ws: isWS}
	if isWS {
		nc, br, _, err := ws.Dial(context.Background(), "ws://"+addr+"/sub?platform=test")
		require.NoError(t, err)
		c.nc = nc
		if br == nil {
			br = bufio.NewReader(nc)
		}
		c.br = br
	} else {
		nc, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		c.nc, c.br = nc, bufio.NewReader(nc)
	}
	t.Cleanup(func() { _ = c.nc.Close() })
	return c
}

func (c *goimClient) send(ver int16, op, seq int32, body []byte) error {
	b := encodeRaw(ver, op, seq, body)
	if c.ws {
		return wsutil.WriteClientBinary(c.nc, b)
	}
	_, err := c.nc.Write(b)
	return err
}

// readMsg reads one transport unit: a TCP frame, or one WS message
// (returned as its frames, with op 9 kept as is).
func (c *goimClient) readMsg(timeout time.Duration) ([]rawFrame, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	if c.ws {
		data, _, err := wsutil.ReadServerData(struct {
			io.Reader
			io.Writer
		}{c.br, c.nc})
		if err != nil {
			return nil, err
		}
		return decodeRaw(data)
	}
	var h [16]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(h[:]))
	b := make([]byte, n)
	copy(b, h[:])
	if _, err := io.ReadFull(c.br, b[16:]); err != nil {
		return nil, err
	}
	return decodeRaw(b)
}

// next returns the next frame, flattening op 9 as goim's clients do.
func (c *goimClient) next(timeout time.Duration) (rawFrame, error) {
	for len(c.buf) == 0 {
		fs, err := c.readMsg(timeout)
		if err != nil {
			return rawFrame{}, err
		}
		for _, f := range fs {
			if f.op == 9 {
				inner, err := decodeRaw(f.body)
				if err != nil {
					return rawFrame{}, err
				}
				c.buf = append(c.buf, inner...)
				continue
			}
			c.buf = append(c.buf, f)
		}
	}
	f := c.buf[0]
	c.buf = c.buf[1:]
	return f, nil
}

// nextOp returns the next frame with op, skipping others.
func (c *goimClient) nextOp(op int32) rawFrame {
	c.t.Helper()
	for {
		f, err := c.next(5 * time.Second)
		require.NoError(c.t, err, "waiting for op %d", op)
		if f.op == op {
			return f
		}
	}
}

type authReply struct {
	Mid       int64  `json:"mid"`
	Key       string `json:"key"`
	RoomID    string `json:"room_id"`
	Heartbeat int    `json:"heartbeat"`
}

// auth sends goim's auth JSON and waits for op 8.
func (c *goimClient) auth(ver int16, body string) authReply {
	c.t.Helper()
	require.NoError(c.t, c.send(ver, 7, 1, []byte(body)))
	f, err := c.next(5 * time.Second)
	require.NoError(c.t, err)
	require.Equal(c.t, int32(8), f.op)
	require.Equal(c.t, int32(1), f.seq)
	var r authReply
	require.NoError(c.t, json.Unmarshal(f.body, &r))
	return r
}

// expectClosed waits for the server to close the connection.
func (c *goimClient) expectClosed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.next(5 * time.Second); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("connection not closed")
			}
			return
		}
	}
	t.Fatal("connection not closed")
}

func goimAuth(mid int64, key, room string, accepts ...int32) string {
	b, _ := json.Marshal(map[string]any{"mid": mid, "key": key, "room_id": room, "platform": "web", "accepts": accepts})
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func keysMsg(op int32, body string, keys ...string) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Node: "n", Keys: keys, Op: op, Body: []byte(body)}
}

func roomMsg(room string, op int32, body string) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: room, Op: op, Body: []byte(body)}
}

func deliver(t *testing.T, srv *cloud.Server, msgs ...*imcloud.Message) {
	t.Helper()
	require.NoError(t, srv.Deliver(context.Background(), msgs))
}

// fakeStore is a small in-memory SessionStore that can be made to fail.
type fakeStore struct {
	mu       sync.Mutex
	down     bool
	sessions map[string]imcloud.Session
	nodes    map[string]imcloud.Node
	counts   map[string]map[string]int32
	puts     int
}

func newFakeStore() *fakeStore {
	return &fakeStore{sessions: map[string]imcloud.Session{}, nodes: map[string]imcloud.Node{}, counts: map[string]map[string]int32{}}
}

var errStoreDown = errors.New("fake store down")

func (f *fakeStore) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func (f *fakeStore) PutSessions(_ context.Context, ss []imcloud.Session, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errStoreDown
	}
	f.puts++
	for _, s := range ss {
		f.sessions[s.Key] = s
	}
	return nil
}

func (f *fakeStore) RemoveSessions(_ context.Context, ss []imcloud.Session) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errStoreDown
	}
	for _, s := range ss {
		if cur, ok := f.sessions[s.Key]; ok && cur.Node == s.Node && cur.Gen == s.Gen {
			delete(f.sessions, s.Key)
		}
	}
	return nil
}

func (f *fakeStore) PutNode(_ context.Context, n imcloud.Node, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errStoreDown
	}
	f.nodes[n.ID] = n
	return nil
}

func (f *fakeStore) RemoveNode(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errStoreDown
	}
	delete(f.nodes, id)
	return nil
}

func (f *fakeStore) PutRoomCounts(_ context.Context, node string, counts map[string]int32, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errStoreDown
	}
	cp := make(map[string]int32, len(counts))
	for k, v := range counts {
		cp[k] = v
	}
	f.counts[node] = cp
	return nil
}

func (f *fakeStore) RoomCounts(context.Context) (map[string]int32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errStoreDown
	}
	out := map[string]int32{}
	for _, cs := range f.counts {
		for k, v := range cs {
			out[k] += v
		}
	}
	return out, nil
}

func (f *fakeStore) session(key string) (imcloud.Session, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[key]
	return s, ok
}

func (f *fakeStore) node(id string) (imcloud.Node, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[id]
	return n, ok
}

func newReader(nc net.Conn) *bufio.Reader { return bufio.NewReader(nc) }

func mustPrefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
