// Package client is the Go client of an imcloud cloud node (and of goim's
// comet): it dials TCP or WebSocket, authenticates, heartbeats, receives
// pushes, changes rooms, joins and leaves more rooms (extensions;
// rooms.go), subscribes to ops, sends upstream messages and, when asked,
// reconnects with jittered backoff honouring the server's op 6 reconnect
// hint, back in the rooms it was in, and keeps its token fresh: with
// Config.TokenFunc it gets one at every dial and refreshes it (op 22)
// before it expires (token.go). Tests, examples, load tools and users
// share it.
//
// All methods are safe for concurrent use. Pushes arrive on Messages();
// the channel is bounded and a push that finds it full is dropped and
// counted (Dropped), so a slow reader never stalls the connection.
//
// With Config.Recover, the client keeps its position in its user's and
// its room's streams and sends them at every (re)connect, so the node
// replays the pushes it missed meanwhile, once each and in order
// (recover.go); Recoveries() tells whether that was all.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud/protocol"
)

// Config configures a Client. Zero fields mean the documented default.
type Config struct {
	// Network is "tcp" (default) or "ws".
	Network string
	// Addr is host:port for TCP; for WebSocket a URL ("ws://host:port/sub",
	// "wss://...") or host:port, which means ws://host:port/sub.
	Addr string
	// Mid, Key, Room, Platform and Accepts fill the auth body (goim's
	// fields). Key empty lets the server assign one; after a reconnect the
	// assigned key is reused.
	Mid      int64
	Key      string
	Room     string
	Platform string
	// Accepts are the push ops taken for key, mid and broadcast pushes
	// (room pushes are not filtered). Nil means DefaultAccepts; an empty
	// non-nil slice takes none of them (goim's clients' default).
	Accepts []int32
	// Token is verified by the node's token authenticator.
	Token string
	// TokenFunc, when set, returns the token instead of Token: it is
	// called before every dial, and, for a token with an "exp" on a client
	// with Extensions, again at about 80% of its lifetime, the new token
	// sent to the node (op 22) so that the connection outlives the old one
	// (token.go). Called with a context bounded by DialTimeout; its
	// errors fail the dial, or are reported on TokenErrors().
	TokenFunc func(ctx context.Context) (string, error)
	// Extensions opts into extensions (auth with ver 2): op 6 disconnect
	// reasons and other new server-initiated ops.
	Extensions bool
	// Recover makes the connection a recover connection (implies
	// Extensions): the client keeps its position in its user's and its
	// room's streams and sends them at every (re)connect and ChangeRoom;
	// the node replays the pushes missed meanwhile, once each, in order,
	// before the live ones, and reports on Recoveries() whether it could
	// replay them all. Pushes then carry Stream, Epoch and Offset.
	Recover bool
	// Positions are the positions to start from (Recover), by stream
	// name: what Positions() returned in an earlier life of the client,
	// so that an application restarted, or moving to another node, gets
	// what it missed. Nil: none (nothing is replayed at the first
	// connect).
	Positions map[string]Position
	// Heartbeat is the op 2 interval. Default 30 s.
	Heartbeat time.Duration
	// Reconnect redials after the connection drops, until Close.
	Reconnect bool
	// BackoffMin and BackoffMax bound the jittered reconnect backoff.
	// Defaults 250 ms and 30 s.
	BackoffMin, BackoffMax time.Duration
	// Buffer is the capacity of Messages() (and of Disconnects()).
	// Default 1024.
	Buffer int
	// DialTimeout bounds dial, upgrade and auth. Default 10 s.
	DialTimeout time.Duration
	// TLS configures TLS for TCP (when set) and wss URLs.
	TLS *tls.Config
	// Header is sent with the WebSocket upgrade request (cookies, auth).
	Header http.Header
}

// DefaultAccepts returns the push ops a client takes when Config.Accepts
// is nil: 1000, 1001 and 1002, goim's example ops, which the README's
// pushes use. The JavaScript client (examples/web, DEFAULT_ACCEPTS) has the
// same default, so that both receive what the push API reports as sent.
func DefaultAccepts() []int32 { return []int32{1000, 1001, 1002} }

// Push is a message the server pushed.
type Push struct {
	Op       int32
	Body     []byte
	Received time.Time
	// Stream, Epoch and Offset place the push in its stream (a recover
	// connection's pushes that belong to one, replayed or live); Stream
	// is empty otherwise.
	Stream string
	Epoch  string
	Offset int64
}

// AuthInfo is the AuthReply body.
type AuthInfo struct {
	Mid       int64  `json:"mid"`
	Key       string `json:"key"`
	RoomID    string `json:"room_id"`
	Heartbeat int    `json:"heartbeat"`
}

// Disconnect is an op 6 reason sent before the server closed the
// connection (extensions only).
type Disconnect struct {
	Reason      string `json:"reason"`
	ReconnectMS int64  `json:"reconnect_ms"`
	// Kick reports a kick (Pusher.Kick, Server.Kick): Reason is then the
	// application's text.
	Kick bool `json:"kick,omitempty"`
}

// Errors returned by the client.
var (
	ErrClosed       = errors.New("client: closed")
	ErrDisconnected = errors.New("client: disconnected")
	ErrAuthRefused  = errors.New("client: auth refused (connection closed)")
)

// Client is a connection to a cloud node.
type Client struct {
	cfg Config

	msgs      chan Push
	discs     chan Disconnect
	recs      chan Recovery
	tokenErrs chan error

	mu      sync.Mutex
	cur     *session // nil while disconnected
	closed  bool
	room    string
	accepts []int32
	key     string
	auth    AuthInfo
	hint    time.Duration // op 6 reconnect hint for the next dial
	// recoverySeen: an op 25 arrived on the current connection, so its
	// node takes a ChangeRoom with a position (recover.go).
	recoverySeen bool
	// positions are the stream positions held (Recover; recover.go).
	positions map[string]Position
	// joined are the rooms joined besides room (rooms.go); roomOps
	// serializes Join, Leave, ChangeRoom and the rejoin after a reconnect.
	joined  []string
	roomOps sync.Mutex
	// tokenExp is the connection's token's expiry and refreshDue when it
	// is refreshed (zero: never; token.go).
	tokenExp, refreshDue time.Time

	online  atomic.Int32
	dropped atomic.Uint64
	seq     atomic.Int32
	done    chan struct{}
	wg      sync.WaitGroup
}

// Dial connects, authenticates and returns a running client. With
// Reconnect set, later drops are healed in the background; the first dial
// must succeed.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Network == "" {
		cfg.Network = "tcp"
	}
	if cfg.Network != "tcp" && cfg.Network != "ws" {
		return nil, fmt.Errorf("client: unknown network %q", cfg.Network)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 30 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 250 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 1024
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.Accepts == nil {
		cfg.Accepts = DefaultAccepts()
	}
	c := &Client{
		cfg: cfg, msgs: make(chan Push, cfg.Buffer), discs: make(chan Disconnect, 16), recs: make(chan Recovery, 16),
		tokenErrs: make(chan error, 16),
		positions: make(map[string]Position, len(cfg.Positions)),
		room:      cfg.Room, accepts: append([]int32(nil), cfg.Accepts...), key: cfg.Key,
		done: make(chan struct{}),
	}
	for k, v := range cfg.Positions {
		c.positions[k] = v
	}
	s, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.wg.Add(1)
	go c.run(s)
	return c, nil
}

// Messages returns the channel pushes arrive on (inner frames of op 9
// batches are delivered one by one). It is closed after Close.
func (c *Client) Messages() <-chan Push { return c.msgs }

// Disconnects returns the op 6 reasons the server sent (extensions only).
func (c *Client) Disconnects() <-chan Disconnect { return c.discs }

// Auth returns the latest AuthReply.
func (c *Client) Auth() AuthInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.auth
}

// Online returns the room online count of the last heartbeat reply.
func (c *Client) Online() int32 { return c.online.Load() }

// Dropped is the number of pushes dropped because Messages() was full.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// Done is closed when the client stops for good (Close, or a drop without
// Reconnect).
func (c *Client) Done() <-chan struct{} { return c.done }

// Connected reports whether a connection is up.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// Heartbeat sends op 2 now and returns the online count from the reply.
func (c *Client) Heartbeat(ctx context.Context) (int32, error) {
	f, err := c.request(ctx, protocol.OpHeartbeat, nil)
	if err != nil {
		return 0, err
	}
	return protocol.HeartbeatOnline(f.Body)
}

// ChangeRoom moves the connection to room ("" leaves it) and waits for the
// reply. The room is kept across reconnects. A node that refuses the room
// (a ver-2 client's op 13 with "ok":false) leaves the connection where it
// was; the refusal is a *RoomError.
func (c *Client) ChangeRoom(ctx context.Context, room string) error {
	c.roomOps.Lock()
	defer c.roomOps.Unlock()
	f, err := c.request(ctx, protocol.OpChangeRoom, c.changeRoomBody(room))
	if err != nil {
		return err
	}
	if err := changeRoomRefusal(room, f.Body); err != nil {
		return err
	}
	c.mu.Lock()
	c.room = room
	c.joined = slices.DeleteFunc(c.joined, func(r string) bool { return r == room }) // now the primary room
	c.mu.Unlock()
	return nil
}

// Sub adds ops to the accepted push ops and waits for the reply.
func (c *Client) Sub(ctx context.Context, ops ...int32) error {
	if _, err := c.request(ctx, protocol.OpSub, joinOps(ops)); err != nil {
		return err
	}
	c.mu.Lock()
	for _, op := range ops {
		if !contains(c.accepts, op) {
			c.accepts = append(c.accepts, op)
		}
	}
	c.mu.Unlock()
	return nil
}

// Unsub removes ops from the accepted push ops and waits for the reply.
func (c *Client) Unsub(ctx context.Context, ops ...int32) error {
	if _, err := c.request(ctx, protocol.OpUnsub, joinOps(ops)); err != nil {
		return err
	}
	c.mu.Lock()
	kept := c.accepts[:0]
	for _, op := range c.accepts {
		if !contains(ops, op) {
			kept = append(kept, op)
		}
	}
	c.accepts = kept
	c.mu.Unlock()
	return nil
}

// Send sends an upstream message (op 4) and waits for the server's reply.
func (c *Client) Send(ctx context.Context, body []byte) error {
	_, err := c.request(ctx, protocol.OpSendMsg, body)
	return err
}

// Close closes the connection and stops reconnecting. Messages() is
// closed once the background goroutines ended.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	s := c.cur
	c.mu.Unlock()
	if s != nil {
		s.close()
	}
	c.wg.Wait()
	return nil
}

func joinOps(ops []int32) []byte {
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = strconv.Itoa(int(op))
	}
	return []byte(strings.Join(parts, ","))
}

func contains(ops []int32, op int32) bool {
	for _, o := range ops {
		if o == op {
			return true
		}
	}
	return false
}

// request sends a frame with a fresh seq and waits for the reply.
func (c *Client) request(ctx context.Context, op int32, body []byte) (protocol.Frame, error) {
	c.mu.Lock()
	s := c.cur
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return protocol.Frame{}, ErrClosed
	}
	if s == nil {
		return protocol.Frame{}, ErrDisconnected
	}
	seq := c.seq.Add(1)
	ch := make(chan protocol.Frame, 1)
	s.mu.Lock()
	if s.pending == nil {
		s.mu.Unlock()
		return protocol.Frame{}, ErrDisconnected
	}
	s.pending[seq] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.pending != nil {
			delete(s.pending, seq)
		}
		s.mu.Unlock()
	}()
	if err := s.write(&protocol.Frame{Ver: c.ver(), Op: op, Seq: seq, Body: body}); err != nil {
		return protocol.Frame{}, err
	}
	select {
	case f, ok := <-ch:
		if !ok {
			return protocol.Frame{}, ErrDisconnected
		}
		return f, nil
	case <-ctx.Done():
		return protocol.Frame{}, ctx.Err()
	}
}

func (c *Client) ver() int16 {
	if c.cfg.Extensions || c.cfg.Recover {
		return protocol.VerExtensions
	}
	return protocol.VerGoim
}

// run serves sessions until the client stops for good.
func (c *Client) run(s *session) {
	defer c.wg.Done()
	defer close(c.done)
	defer close(c.msgs)
	defer func() {
		// Stopped for good: later calls see ErrClosed.
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
	}()
	backoff := c.cfg.BackoffMin
	for {
		c.serve(s)
		c.mu.Lock()
		c.cur = nil
		closed := c.closed
		hint := c.hint
		c.hint = 0
		c.mu.Unlock()
		if closed || !c.cfg.Reconnect {
			return
		}
		for {
			d := backoff/2 + rand.N(backoff)
			if hint > 0 {
				d = hint + rand.N(hint/4+1)
			}
			if !c.sleep(d) {
				return
			}
			backoff = min(backoff*2, c.cfg.BackoffMax)
			hint = 0
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.DialTimeout)
			ns, err := c.connect(ctx)
			cancel()
			if err == nil {
				s = ns
				backoff = c.cfg.BackoffMin
				c.wg.Add(1)
				go c.rejoin(s)
				break
			}
			if errors.Is(err, ErrClosed) {
				return
			}
		}
	}
}

// sleep waits d unless the client is closed meanwhile.
func (c *Client) sleep(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return false
		}
		time.Sleep(min(time.Until(deadline), 50*time.Millisecond))
	}
	return true
}
