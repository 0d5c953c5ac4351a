package cloud

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/time/rate"

	"github.com/imcloud/imcloud"
)

// Server is a cloud node: it holds client connections, authenticates
// them, keeps rooms and heartbeats, and delivers pushes. All methods are
// safe for concurrent use.
type Server struct {
	cfg Config
	id  string
	bs  *buckets

	stats counters
	// gen numbers the node's connections (Session.Gen, Event.Gen). It
	// starts at the clock in nanoseconds, not 0, so that a process
	// restarted under the same NodeID goes on with larger gens: a
	// consumer that discards events older by Gen per (Node, Key), and the
	// store's conditional removal, do not take the new process's
	// connections for stale ones.
	gen     atomic.Uint64
	sched   *scheduler // who writes each connection (sched.go)
	backlog backlog    // bytes the connections are behind (backlog.go)

	ipMu       sync.Mutex
	perIP      map[netip.Addr]int // authenticated-or-authenticating connections per client IP
	ipRates    *ipRates
	acceptRate *rate.Limiter

	dedup  *dedup
	sess   *sessionSync
	events *eventQueue   // nil without Config.Events (events.go)
	bcast  chan struct{} // semaphore of paced broadcasts

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	links     map[net.Conn]struct{}
	pending   map[net.Conn]netip.Addr // sockets not yet authenticated, by source (zero: not limited per IP)
	shakes    map[netip.Addr]int      // pending's sockets per source
	closed    bool

	wg       sync.WaitGroup // accept loops, connections, link conns, background loops
	bg       sync.WaitGroup // background loops and paced broadcasts
	quit     chan struct{}  // closed when Shutdown starts
	drained  chan struct{}  // closed when Shutdown finished
	shutOnce sync.Once
}

// Errors returned by the Server.
var (
	// ErrServerClosed is returned by Serve* after Shutdown, and by Deliver.
	ErrServerClosed = errors.New("cloud: server closed")
	// ErrOverloaded is returned by Deliver when too many paced broadcasts
	// are in progress.
	ErrOverloaded = errors.New("cloud: too many broadcasts in progress")
	// ErrNoLinkSecret is returned at once by ServeLink when neither
	// Config.LinkSecret nor Config.InsecureLink is set: it would refuse
	// every link connection.
	ErrNoLinkSecret = errors.New("cloud: ServeLink without Config.LinkSecret (or InsecureLink): every link hello would be refused")
)

// New returns a Server for cfg. With a Store, it registers the node before
// returning (waiting at most StoreTimeout; a failure is retried by the
// background loop), then starts the session, node and room-count loops.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		id:         cfg.NodeID,
		bs:         newBuckets(cfg.Buckets),
		sched:      newScheduler(),
		perIP:      make(map[netip.Addr]int),
		ipRates:    newIPRates(cfg.AcceptRatePerIP, ipRateEntries),
		acceptRate: newAcceptLimiter(cfg.AcceptRate),
		dedup:      newDedup(cfg.DedupSize),
		bcast:      make(chan struct{}, cfg.MaxBroadcasts),
		listeners:  make(map[net.Listener]struct{}),
		links:      make(map[net.Conn]struct{}),
		pending:    make(map[net.Conn]netip.Addr),
		shakes:     make(map[netip.Addr]int),
		quit:       make(chan struct{}),
		drained:    make(chan struct{}),
		events:     newEventQueue(cfg.Events, cfg.EventBuffer),
	}
	s.stats.initHistograms()
	s.gen.Store(uint64(time.Now().UnixNano()))
	s.sess = newSessionSync(s)
	for _, b := range s.bs.bs {
		b.ss = s.sess
	}
	s.sess.start()
	s.bg.Add(1)
	go s.refusalLog()
	return s, nil
}

// ID returns the node id.
func (s *Server) ID() string { return s.id }

// track registers a listener for Shutdown; false if already shut down.
func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
	s.wg.Done()
}

// ServeTCP accepts goim TCP clients on ln until Shutdown (then it returns
// ErrServerClosed). With Config.TLS every connection speaks TLS (after
// its PROXY header, when ProxyProtocol is set).
func (s *Server) ServeTCP(ln net.Listener) error { return s.serve(ln, false) }

// ServeWS accepts WebSocket clients on ln (path /sub, any query) until
// Shutdown, without net/http: the upgrade is read straight off the socket.
func (s *Server) ServeWS(ln net.Listener) error { return s.serve(ln, true) }

func (s *Server) serve(ln net.Listener, isWS bool) error {
	// With Config.TLS, each connection is wrapped after its PROXY header
	// (conn.prepare), not the listener: the header comes before TLS.
	if !s.track(ln) {
		_ = ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		switch r := s.admit(nc, addrOf(nc.RemoteAddr())); r {
		case refusedNone:
			go s.serveConn(nc, isWS, nil, false)
		case refusedClosed:
			_ = nc.Close()
			return ErrServerClosed
		default:
			s.refused(r)
			_ = nc.Close()
		}
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ServeHTTP upgrades the request to a WebSocket connection and serves it,
// so the node mounts in any mux (the path is the mux's choice). The
// hijacked connection is tracked and drained by Shutdown. TLS, if any, is
// the http.Server's.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.originAllowed(r.Header.Get("Origin")) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if s.isClosed() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	// The client behind trusted proxies is the source the limits count.
	peer := s.clientIPFromHeader(remoteIP(r.RemoteAddr), r.Header)
	if rf := s.admitSource(peer); rf != refusedNone {
		s.refused(rf)
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	nc, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		s.stats.protocolErrors.Add(1)
		return
	}
	if rf := s.admitConn(nc, peer); rf != refusedNone {
		if rf != refusedClosed {
			s.refused(rf)
		}
		_ = nc.Close()
		return
	}
	hi := &handshakeInfo{header: r.Header.Clone(), query: r.URL.Query(), tls: r.TLS != nil}
	if n := rw.Reader.Buffered(); n > 0 {
		// The client sent data right behind the upgrade request: replay it.
		ahead, _ := rw.Reader.Peek(n)
		nc = &prefixConn{Conn: nc, ahead: append([]byte(nil), ahead...)}
	}
	// Serve on a fresh goroutine so net/http's deep stack is released.
	go s.serveConn(nc, true, hi, true)
}

// prefixConn replays bytes read ahead before reading the connection.
type prefixConn struct {
	net.Conn
	ahead []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.ahead) > 0 {
		n := copy(b, p.ahead)
		p.ahead = p.ahead[n:]
		if len(p.ahead) == 0 {
			p.ahead = nil
		}
		return n, nil
	}
	return p.Conn.Read(b)
}

// Kick closes the connection with key on this node as a kick from the
// queue does (kick.go): its queued pushes are written first, then op 6
// with reason ("kicked" when empty) if it opted in. Unknown keys are
// ignored. Pusher.Kick (package logic) kicks across the cluster.
func (s *Server) Kick(key, reason string) {
	if c := s.bs.of(key).get(key); c != nil {
		s.kick(c, cmp.Or(reason, defaultKickReason))
	}
}

// KickMid closes every connection of user mid on this node, as Kick does.
func (s *Server) KickMid(mid int64, reason string) {
	reason = cmp.Or(reason, defaultKickReason)
	var buf []*conn
	for _, b := range s.bs.bs {
		buf = b.snapshot(buf[:0], "")
		for _, c := range buf {
			if c.mid == mid {
				s.kick(c, reason)
			}
		}
	}
}

// online is the room's online count for heartbeat replies: the cluster-wide
// count when known, the local count otherwise.
func (s *Server) online(room string) int32 {
	if room == "" {
		return 0
	}
	if n, ok := s.sess.clusterCount(room); ok {
		return n
	}
	var n int
	for _, b := range s.bs.bs {
		n += b.roomCount(room)
	}
	return int32(n)
}

// Shutdown drains the node: it stops accepting, deregisters the node,
// sends op 6 with a randomized reconnect hint to clients that opted in,
// closes connections in paced batches (DrainRate per second), and waits
// for every connection, hijacked WebSockets included. It returns ctx.Err()
// if ctx ends first (remaining connections are then closed at once). It
// may be called more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() { go s.drain() })
	select {
	case <-s.drained:
		return nil
	case <-ctx.Done():
		s.killAll()
		return ctx.Err()
	}
}

func (s *Server) drain() {
	defer close(s.drained)
	ph := newDrainPhases()
	s.mu.Lock()
	s.closed = true
	close(s.quit)
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for lc := range s.links {
		_ = lc.Close()
	}
	// Connections still handshaking have no session to drain: close them.
	for nc := range s.pending {
		_ = nc.Close()
	}
	s.mu.Unlock()
	ph.done("stop")
	s.bg.Wait()
	ph.done("background")
	s.sess.deregister()
	ph.done("deregister")

	// Close in paced batches of DrainRate/10 every 100 ms.
	batch := max(s.cfg.DrainRate/10, 1)
	span := s.cfg.ReconnectMax - s.cfg.ReconnectMin
	var buf []*conn
	sent := 0
	for _, b := range s.bs.bs {
		buf = b.snapshot(buf[:0], "")
		for _, c := range buf {
			hint := s.cfg.ReconnectMin
			if span > 0 {
				hint += rand.N(span)
			}
			c.endAs(imcloud.ReasonDrain, "")
			c.disconnect("shutdown", hint)
			if sent++; sent%batch == 0 {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	ph.done("close")
	s.wg.Wait()
	ph.done("ended")
	for s.writerCount() > 0 {
		time.Sleep(time.Millisecond)
	}
	ph.done("writers")
	s.sess.flushFinal()
	ph.done("removals")
	s.events.close(eventFlushTimeout)
	ph.done("events")
	ph.log(s.cfg.Logger, sent)
}

// writerCount is the number of connections whose writes are claimed:
// on the scheduler's ready list, being written, or on a goroutine of
// their own (sched.go).
func (s *Server) writerCount() int64 { return s.sched.claims.Load() }

// killAll closes every connection at once (Shutdown's deadline passed, or
// stragglers that are not authenticated).
func (s *Server) killAll() {
	s.mu.Lock()
	for nc := range s.pending {
		_ = nc.Close()
	}
	s.mu.Unlock()
	var buf []*conn
	for _, b := range s.bs.bs {
		buf = b.snapshot(buf[:0], "")
		for _, c := range buf {
			c.endAs(imcloud.ReasonDrain, "")
			c.kill()
		}
	}
}
