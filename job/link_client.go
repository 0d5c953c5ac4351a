package job

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/link"
	"github.com/imcloud/imcloud/protocol"
	"golang.org/x/sync/semaphore"
)

// Link client errors.
var (
	// ErrLinkClosed is returned by Deliver after Close.
	ErrLinkClosed = errors.New("job: link client closed")
	// ErrLinkBroken is returned for requests in flight on a connection
	// that failed; the next Deliver reconnects.
	ErrLinkBroken = errors.New("job: link connection lost")
	// ErrLinkRefused is returned when the node refuses the hello (wrong
	// secret or version) or cannot prove that it knows the secret. It is
	// retried like any other error, with backoff.
	ErrLinkRefused = errors.New("job: link hello refused")
	// ErrAckTimeout is returned when a node does not acknowledge a request
	// within LinkOptions.AckTimeout; the connection is closed.
	ErrAckTimeout = errors.New("job: link acknowledgement timed out")
	// ErrRejected is returned when the node acknowledged a request with an
	// error (it did not accept the messages).
	ErrRejected = errors.New("job: node rejected the delivery")
	// ErrTooLarge is returned for a request over the link's frame cap.
	ErrTooLarge = errors.New("job: link request over the frame size cap")
)

// LinkOptions tunes a LinkClient. Every zero field means its default.
type LinkOptions struct {
	// Client names this job instance in the hello, for the node's logs.
	// Default: "job@" + hostname.
	Client string
	// DialTimeout bounds a connect plus hello. Default 5s.
	DialTimeout time.Duration
	// WriteTimeout bounds writing one request to the socket. Default 5s.
	WriteTimeout time.Duration
	// AckTimeout bounds the wait for a request's acknowledgement; a node
	// that does not answer in time is treated as a broken connection.
	// Default 10s (an ack never waits for client sockets, so it is quick).
	AckTimeout time.Duration
	// MaxInFlight bounds the messages sent and not yet acknowledged on
	// this client; Deliver waits for room. Default 65536.
	MaxInFlight int
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// connection attempts after a failure. Defaults 50ms and 5s.
	ReconnectMin, ReconnectMax time.Duration
	// Dial opens the TCP connection (a custom dialer). Default: a
	// net.Dialer.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// TLS, if not nil, runs TLS over the connection Dial opened: set
	// RootCAs to verify the node's certificate and Certificates to present
	// a client certificate. An empty ServerName is the host of the node's
	// link address.
	TLS *tls.Config
	// LegacyHello speaks the previous release's hello, which sends the
	// secret itself, to reach nodes not yet upgraded (they refuse the
	// current hello). Deprecated: upgrade the nodes first instead; the
	// next release removes it.
	LegacyHello bool
	// Logger receives connection events. Nil is silent.
	Logger *slog.Logger
	// RoundTrip, if not nil, observes each request's round trip: from
	// writing it to the socket to its acknowledgement (accepted or
	// rejected by the node; a lost connection is no round trip). A Job
	// with the default Connect sets its own (Stats.LinkRoundTrip).
	RoundTrip *imcloud.Histogram
}

func (o LinkOptions) withDefaults() LinkOptions {
	if o.Client == "" {
		host, _ := os.Hostname()
		o.Client = "job@" + host
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 5 * time.Second
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 10 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 65536
	}
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = 50 * time.Millisecond
	}
	if o.ReconnectMax <= 0 {
		o.ReconnectMax = 5 * time.Second
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = o.ReconnectMin
	}
	if o.Dial == nil {
		o.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// LinkClient is the job side of the link to one cloud node: a persistent
// framed connection (TLS with LinkOptions.TLS), opened with a versioned
// hello in which job and the node prove to each other that they know the
// shared secret, without sending it, over which Deliver requests are pipelined with request ids and
// matched with their acknowledgements. A broken connection fails the
// requests in flight on it; the next Deliver reconnects, with exponential
// backoff between attempts. It satisfies Link and is safe for concurrent
// use; concurrent Deliver calls share the connection.
type LinkClient struct {
	addr   string
	secret string
	opts   LinkOptions
	sem    *semaphore.Weighted

	cur     atomic.Pointer[linkConn]
	closed  atomic.Bool
	nextID  atomic.Int32
	dialMu  sync.Mutex // one connection attempt at a time
	backoff time.Duration
	retryAt time.Time
	node    atomic.Value // string: node id from the hello ack
}

var _ Link = (*LinkClient)(nil)

// NewLinkClient returns a client for the link server at addr. It connects
// on the first Deliver.
func NewLinkClient(addr, secret string, opts LinkOptions) *LinkClient {
	opts = opts.withDefaults()
	return &LinkClient{addr: addr, secret: secret, opts: opts, sem: semaphore.NewWeighted(int64(opts.MaxInFlight))}
}

// DialLink returns a client for the link server at addr, connected: an
// error means the node could not be reached or refused the hello.
func DialLink(ctx context.Context, addr, secret string, opts LinkOptions) (*LinkClient, error) {
	c := NewLinkClient(addr, secret, opts)
	if _, err := c.conn(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Addr is the link server's address.
func (c *LinkClient) Addr() string { return c.addr }

// Connected reports whether the client holds a working connection.
func (c *LinkClient) Connected() bool {
	lc := c.cur.Load()
	return lc != nil && !lc.broken.Load()
}

// Close closes the connection and fails the requests in flight. Deliver
// returns ErrLinkClosed afterwards. Close is idempotent.
func (c *LinkClient) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if lc := c.cur.Load(); lc != nil {
		lc.fail(ErrLinkClosed)
	}
	return nil
}

// Deliver sends msgs to the node as one request and waits until the node
// acknowledged it, ctx ends (ctx's error, connecting included), or the
// connection fails. msgs are encoded before Deliver returns and not
// retained.
func (c *LinkClient) Deliver(ctx context.Context, msgs []*imcloud.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if c.closed.Load() {
		return ErrLinkClosed
	}
	weight := min(int64(len(msgs)), int64(c.opts.MaxInFlight))
	if err := c.sem.Acquire(ctx, weight); err != nil {
		return err
	}
	defer c.sem.Release(weight)

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := append((*bp)[:0], make([]byte, protocol.HeaderLen)...)
	buf = link.AppendMessages(buf, msgs)
	*bp = buf
	if len(buf)-protocol.HeaderLen > link.MaxFrameBody {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(buf)-protocol.HeaderLen)
	}

	lc, err := c.conn(ctx)
	if err != nil {
		return err
	}
	id := c.nextID.Add(1)
	protocol.AppendHeader(buf[:0], len(buf)-protocol.HeaderLen, lc.version, link.OpDeliver, id)
	ch, err := lc.register(id)
	if err != nil {
		return err
	}
	sent := time.Now()
	if err := lc.write(buf); err != nil {
		return err
	}
	timer := time.NewTimer(c.opts.AckTimeout)
	defer timer.Stop()
	select {
	case err := <-ch:
		if err == nil || errors.Is(err, ErrRejected) {
			c.opts.RoundTrip.ObserveSince(sent)
		}
		return err
	case <-ctx.Done():
		lc.unregister(id)
		return ctx.Err()
	case <-timer.C:
		lc.fail(fmt.Errorf("%w after %v", ErrAckTimeout, c.opts.AckTimeout))
		return fmt.Errorf("%w after %v", ErrAckTimeout, c.opts.AckTimeout)
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// conn returns the working connection, connecting when there is none.
func (c *LinkClient) conn(ctx context.Context) (*linkConn, error) {
	if lc := c.cur.Load(); lc != nil && !lc.broken.Load() {
		return lc, nil
	}
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	if lc := c.cur.Load(); lc != nil && !lc.broken.Load() {
		return lc, nil
	}
	if c.closed.Load() {
		return nil, ErrLinkClosed
	}
	if wait := time.Until(c.retryAt); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	lc, err := c.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up, which says nothing about the node:
			// its error, and no backoff for the next caller.
			return nil, ctx.Err()
		}
		c.backoff = min(max(c.backoff*2, c.opts.ReconnectMin), c.opts.ReconnectMax)
		c.retryAt = time.Now().Add(c.backoff)
		c.opts.Logger.Debug("link dial failed", "addr", c.addr, "err", err, "retry_in", c.backoff)
		return nil, err
	}
	c.backoff = 0
	c.retryAt = time.Time{}
	c.cur.Store(lc)
	if c.closed.Load() { // Close raced with the dial
		lc.fail(ErrLinkClosed)
		return nil, ErrLinkClosed
	}
	go lc.readLoop()
	return lc, nil
}

// dial connects and exchanges hellos.
func (c *LinkClient) dial(ctx context.Context) (*linkConn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	nc, err := c.opts.Dial(ctx, c.addr)
	if err != nil {
		return nil, fmt.Errorf("job: link dial %s: %w", c.addr, err)
	}
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	raw := nc // nc becomes the TLS connection; the deadlines are the socket's
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if c.opts.TLS != nil {
		cfg := c.opts.TLS
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(c.addr)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("job: link TLS handshake with %s: %w", c.addr, err)
		}
		nc = tc
	}
	version := link.Version
	if c.opts.LegacyHello {
		version = link.VersionLegacy
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	node, err := link.Connect(br, nc, c.secret, c.opts.Client, version)
	if err != nil {
		nc.Close()
		if errors.Is(err, link.ErrRefused) {
			return nil, fmt.Errorf("%w by %s: %w", ErrLinkRefused, c.addr, err)
		}
		return nil, fmt.Errorf("job: link hello with %s: %w", c.addr, err)
	}
	if !stop() {
		nc.Close()
		return nil, ctx.Err()
	}
	_ = nc.SetDeadline(time.Time{})
	c.node.Store(node)
	c.opts.Logger.Debug("link connected", "addr", c.addr, "node", node)
	return &linkConn{c: c, nc: nc, br: br, version: int16(version), pending: make(map[int32]chan error)}, nil
}

// linkConn is one connection of a LinkClient.
type linkConn struct {
	c       *LinkClient
	nc      net.Conn
	br      *bufio.Reader
	version int16 // the hello's, in every frame's ver
	broken  atomic.Bool

	wmu sync.Mutex // serialises writes

	pmu     sync.Mutex
	pending map[int32]chan error
	err     error // why the connection failed; set once, under pmu
}

func (lc *linkConn) register(id int32) (chan error, error) {
	ch := make(chan error, 1)
	lc.pmu.Lock()
	defer lc.pmu.Unlock()
	if lc.err != nil {
		return nil, lc.err
	}
	lc.pending[id] = ch
	return ch, nil
}

func (lc *linkConn) unregister(id int32) {
	lc.pmu.Lock()
	delete(lc.pending, id)
	lc.pmu.Unlock()
}

func (lc *linkConn) write(b []byte) error {
	lc.wmu.Lock()
	_ = lc.nc.SetWriteDeadline(time.Now().Add(lc.c.opts.WriteTimeout))
	_, err := lc.nc.Write(b)
	lc.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("%w: write to %s: %v", ErrLinkBroken, lc.c.addr, err)
		lc.fail(err)
		// The reader may have failed the connection first: report the
		// request as lost either way.
		return err
	}
	return nil
}

// fail closes the connection once and fails every request in flight.
func (lc *linkConn) fail(err error) {
	lc.pmu.Lock()
	if lc.err != nil {
		lc.pmu.Unlock()
		return
	}
	if !errors.Is(err, ErrLinkBroken) && !errors.Is(err, ErrLinkClosed) {
		err = fmt.Errorf("%w: %w", ErrLinkBroken, err)
	}
	lc.err = err
	lc.broken.Store(true)
	pending := lc.pending
	lc.pending = nil
	lc.pmu.Unlock()
	_ = lc.nc.Close()
	for _, ch := range pending {
		ch <- err
	}
	lc.c.opts.Logger.Debug("link connection closed", "addr", lc.c.addr, "err", err)
}

// readLoop matches acknowledgements with requests until the connection
// fails.
func (lc *linkConn) readLoop() {
	var f protocol.Frame
	for {
		if err := protocol.ReadFrame(lc.br, &f, link.MaxFrameBody); err != nil {
			lc.fail(fmt.Errorf("%w: read from %s: %v", ErrLinkBroken, lc.c.addr, err))
			return
		}
		if f.Op != link.OpAck {
			lc.fail(fmt.Errorf("%w: unexpected op %#x from %s", ErrLinkBroken, f.Op, lc.c.addr))
			return
		}
		var result error
		if len(f.Body) > 0 {
			result = fmt.Errorf("%w: %s", ErrRejected, f.Body)
		}
		lc.pmu.Lock()
		ch, ok := lc.pending[f.Seq]
		delete(lc.pending, f.Seq)
		lc.pmu.Unlock()
		if ok {
			ch <- result
		}
	}
}
