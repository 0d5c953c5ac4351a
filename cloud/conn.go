package cloud

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

// conn is one client connection. Its reader goroutine (serve) owns the
// read side and the connection's lifecycle; its writes belong to its
// outbound queue (out, outq.go) and whoever the scheduler lets write it
// (sched.go). An idle connection holds one goroutine, this struct and no
// buffers.
type conn struct {
	srv *Server
	nc  net.Conn
	r   io.Reader  // nc, or a reader replaying bytes read ahead during the upgrade
	w   sockWriter // nc's non-blocking write path, nil if it has none
	ws  bool
	ext bool // opted into extensions (auth ver 2)
	rec bool // a recover connection (auth ver 2, "recover": true; recover.go)
	// restrict, bindKey and allowed are the identity's RestrictRooms,
	// BindKey and Rooms (shared, not copied), for the room checks of
	// ChangeRoom and Join (join.go).
	restrict, bindKey bool
	// kicked: unregistered by a kick (kick.go), guarded by b.mu.
	kicked  bool
	allowed []string
	// expiry closes the connection when its token expires (refresh.go);
	// nil when the identity has no expiry.
	expiry *time.Timer
	// floors: per replayed stream, the position the client holds, until
	// a later push of it arrives (recover.go).
	hasFloors atomic.Bool
	floorMu   sync.Mutex
	floors    map[string]imcloud.Position
	// writes counts the socket writes, for latency sampling (latency.go);
	// only the writer claim's holder touches it.
	writes uint8
	// since is when c authenticated, in Unix seconds (Session.Since);
	// 32 bits (good until 2106) fill the padding after writes.
	since uint32

	// Identity, fixed after auth.
	mid      int64
	key      string
	platform string
	gen      uint64
	ip       netip.Addr
	b        *bucket
	// room, the primary room, and rooms, every room c is in (rooms.go),
	// are guarded by b.mu once registered.
	room  string
	rooms []roomRef
	// accepts is the op filter for key, mid and broadcast pushes
	// (copy-on-write: Sub/Unsub swap it).
	accepts atomic.Pointer[[]int32]
	// Index in the bucket's list of all connections, guarded by b.mu.
	allIdx int

	out outq

	// Read state, owned by the reader goroutine.
	hdr     [16]byte
	rbuf    *[]byte // pooled; released before every blocking read
	pending []byte  // unread goim frames of the current WS message
	// hdrAhead: the next WS frame's first two bytes are in hdr already.
	hdrAhead bool
	rateWin  int64
	rateN    int
	ipHeld   bool
	// why the node closed it on purpose, for its disconnect event
	// (events.go).
	why atomic.Pointer[endReason]
}

// Errors that end a connection (counted as protocol errors unless noted).
var (
	errWSProtocol  = errors.New("cloud: websocket protocol error")
	errWSClosed    = errors.New("cloud: websocket closed by peer")
	errRateLimited = errors.New("cloud: inbound frame rate exceeded")
	errAuthTimeout = errors.New("cloud: no auth within the handshake timeout")
)

// readBufs pools inbound body buffers.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096+protocol.HeaderLen); return &b }}

func (c *conn) getRbuf(n int) []byte {
	bp := readBufs.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, 0, n)
	}
	c.rbuf = bp
	return (*bp)[:n]
}

func (c *conn) putRbuf() {
	if c.rbuf != nil {
		if cap(*c.rbuf) <= 64<<10 {
			readBufs.Put(c.rbuf)
		}
		c.rbuf = nil
	}
	c.pending = nil
}

func newConn(s *Server, nc net.Conn, ws bool) *conn {
	c := &conn{srv: s, nc: nc, r: nc, ws: ws, allIdx: -1, writes: latencyPhase()}
	c.out.shard = s.backlog.shard()
	return c
}

// handshakeInfo is what the accept path learned before auth; it is
// dropped once the connection is authenticated.
type handshakeInfo struct {
	header http.Header
	query  url.Values
	tls    bool
}

// serveConn runs the handshake (PROXY header, WebSocket upgrade, auth)
// and then hands the connection to a fresh goroutine for its read loop, so
// the deep stack the handshake grew (JSON, JWT, upgrade parsing) is not
// kept for the connection's idle life. Counted in s.wg until the
// connection ends.
func (s *Server) serveConn(nc net.Conn, ws bool, hi *handshakeInfo, upgraded bool) {
	c := newConn(s, nc, ws)
	if !c.handshake(hi, upgraded) {
		c.end(false)
		return
	}
	go c.run()
}

func (c *conn) handshake(hi *handshakeInfo, upgraded bool) bool {
	s := c.srv
	if !c.prepare(&hi, upgraded) {
		return false
	}
	if peer := addrOf(c.nc.RemoteAddr()); s.trusted(peer) && c.ip != peer && !s.ipRates.allow(c.ip) {
		// A trusted proxy's client, named now: its own accept rate.
		s.refused(refusedIPRate)
		return false
	}
	ok, err := c.authenticate(hi)
	if !ok && err != nil {
		s.cfg.Logger.Debug("cloud: handshake failed", "remote", c.nc.RemoteAddr().String(), "err", err)
	}
	return ok
}

// run is the authenticated connection's reader: it reads and handles one
// client frame, then hands the reading on to a new goroutine and ends.
// Handling a frame (a heartbeat's reply, a Join and its store round)
// grows a goroutine's stack past its first 2 KB, and a goroutine waiting
// in a read keeps what it grew: the runtime shrinks a stack only when it
// uses under a quarter of it. A fresh goroutine for the next wait starts
// at 2 KB again, and the one that ends gives its grown stack back, so an
// idle connection holds 2 KB of stack whatever it did before
// (BENCHMARKS.md, rooms). Client frames are rare (a heartbeat every 30
// s, requests), so a goroutine per frame costs nothing that shows.
func (c *conn) run() {
	if err := c.readOne(); err != nil {
		c.ended(err)
		return
	}
	go c.run()
}

// ended logs why the reader stopped and releases the connection.
func (c *conn) ended(err error) {
	if err != nil && !isClosedErr(err) {
		c.srv.cfg.Logger.Debug("cloud: connection ended", "key", c.key, "err", err)
	}
	c.endAs(readEndReason(err), "")
	c.end(true)
}

// end releases everything the connection held.
func (c *conn) end(registered bool) {
	s := c.srv
	c.finish(registered)
	if c.ipHeld {
		s.releaseIP(c.ip)
	}
	s.handshakeDone(c.nc)
	s.stats.conns.Add(-1)
	s.wg.Done()
}

// prepare reads the PROXY header and performs the standalone WebSocket
// upgrade, within the handshake deadline, and sets c.ip.
func (c *conn) prepare(hi **handshakeInfo, upgraded bool) bool {
	s := c.srv
	_ = c.nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	peer := addrOf(c.nc.RemoteAddr())
	c.ip = peer
	if *hi != nil && (*hi).header != nil {
		c.ip = s.clientIPFromHeader(peer, (*hi).header)
	}
	if !upgraded && s.cfg.ProxyProtocol && s.trusted(peer) {
		ip, err := readProxyHeader(c.nc)
		if err != nil {
			s.stats.protocolErrors.Add(1)
			return false
		}
		if ip.IsValid() {
			c.ip = ip
		}
	}
	if s.cfg.TLS != nil && !upgraded {
		// TLS starts after the plaintext PROXY header, as load balancers
		// send it; the handshake runs on first read, under the deadline.
		tc := tls.Server(c.nc, s.cfg.TLS)
		s.rekeyPending(c.nc, tc)
		c.nc, c.r = tc, tc
	}
	if c.ws && !upgraded {
		info, err := s.upgradeRaw(c.nc)
		if errors.Is(err, errUpgradeTooLarge) {
			s.refused(refusedUpgradeSize)
			return false
		}
		if err != nil {
			s.stats.protocolErrors.Add(1)
			return false
		}
		if s.trusted(c.ip) {
			c.ip = s.clientIPFromHeader(c.ip, info.header)
		}
		*hi = info
	}
	c.setSockWriter(newSockWriter(c.nc))
	return true
}

// authenticate waits for the auth frame, runs the authenticator,
// registers the connection and queues the AuthReply.
func (c *conn) authenticate(hi *handshakeInfo) (bool, error) {
	s := c.srv
	var f protocol.Frame
	ignored := 0
	for {
		if err := c.readFrame(&f); err != nil {
			c.countReadErr(err)
			if isTimeout(err) {
				s.stats.authRefused.Add(1)
				return false, errAuthTimeout
			}
			return false, err
		}
		if f.Op == protocol.OpAuth {
			break
		}
		// goim ignores well-formed frames before auth; bound how many.
		if ignored++; ignored > 16 {
			s.stats.protocolErrors.Add(1)
			return false, errors.New("cloud: too many frames before auth")
		}
	}
	// The per-IP cap counts from here, so that a refused ver-2 client
	// learns why (sockets still in their handshake are bounded by the
	// handshake caps).
	if !s.acquireIP(c.ip) {
		c.refuse(&f, refusedIPCap)
		return false, errors.New("cloud: per-IP connection cap")
	}
	c.ipHeld = true
	req := &AuthRequest{Raw: f.Body, ClientIP: c.ip, RemoteAddr: c.nc.RemoteAddr().String(), WebSocket: c.ws}
	if hi != nil {
		req.Header, req.Query, req.TLS = hi.header, hi.query, hi.tls
	}
	if _, ok := c.nc.(*tls.Conn); ok {
		req.TLS = true
	}
	err := json.Unmarshal(f.Body, &req.Body)
	if c.rec = f.Ver >= protocol.VerExtensions && req.Body.Recover; c.rec && err == nil {
		err = checkPositions(&req.Body)
	}
	if err != nil {
		s.stats.authRefused.Add(1)
		c.refuse(&f, refusedAuth)
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandshakeTimeout)
	defer cancel()
	id, err := s.cfg.Authenticator.Authenticate(ctx, req)
	if err != nil {
		s.stats.authRefused.Add(1)
		c.refuse(&f, refusedAuth)
		return false, err
	}
	key, err := bindKey(id)
	if err == nil {
		err = validIdentity(id, key)
	}
	if err != nil {
		s.stats.authRefused.Add(1)
		c.refuse(&f, refusedIdentity)
		return false, err
	}
	id.Key = key
	if err := c.refuseRevoked(ctx, &f, id); err != nil {
		return false, err
	}
	if id.Room != "" {
		if err := s.mayEnter(ctx, id, id.Room, protocol.OpAuth); err != nil {
			s.stats.authRefused.Add(1)
			s.stats.roomRefusals.Add(1)
			c.refuse(&f, refusedRoom)
			return false, err
		}
	}
	c.ext = f.Ver >= protocol.VerExtensions
	c.mid, c.key, c.platform, c.room = id.Mid, key, id.Platform, id.Room
	c.restrict, c.bindKey, c.allowed = id.RestrictRooms, id.BindKey, id.Rooms
	acc := append([]int32(nil), id.Accepts...)
	c.accepts.Store(&acc)
	c.gen = s.gen.Add(1)
	c.since = uint32(time.Now().Unix())
	c.b = s.bs.of(key)

	reply, _ := json.Marshal(authReply{Mid: c.mid, Key: key, RoomID: id.Room, Heartbeat: s.cfg.Client.HeartbeatSeconds()})
	first := outItem{b: protocol.AppendFrame(nil, &protocol.Frame{Ver: f.Ver, Op: protocol.OpAuthReply, Seq: f.Seq, Body: reply}), kind: itemFrame}
	// Count the session before the reply can reach the client, so Stats
	// never lags what a client has already seen.
	s.stats.sessions.Add(1)
	s.stats.authOK.Add(1)
	// Clear the handshake's write deadline before the AuthReply can be
	// written: it may have passed already (a late auth, a slow
	// authenticator), and nothing after the handshake should inherit it.
	_ = c.nc.SetWriteDeadline(time.Time{})
	// The queue stays paused until the session is in the store (outq).
	c.out.pause()
	if old := c.b.put(c, first); old != nil {
		s.stats.replaced.Add(1)
		old.endAs(imcloud.ReasonReplaced, "")
		old.disconnect("replaced", 0)
	}
	s.handshakeDone(c.nc)
	s.sess.awaitPut(c.putSession())
	if c.rec {
		c.recoverAt(1, c.followed(), req.Body.Positions) // after the AuthReply
	}
	c.connected() // before the client can see its AuthReply
	c.resume()
	c.armExpiry(id.Expires)
	if s.isClosed() {
		// Shutdown began while this client authenticated.
		c.endAs(imcloud.ReasonDrain, "")
		c.disconnect("shutdown", s.cfg.ReconnectMin)
	}
	return true, nil
}

const (
	maxKeyLen      = 128
	maxRoomLen     = 256
	maxPlatformLen = 32
)

type authReply struct {
	Mid       int64  `json:"mid"`
	Key       string `json:"key"`
	RoomID    string `json:"room_id"`
	Heartbeat int    `json:"heartbeat"`
}

// bindKey returns the connection key for id: a fresh random one when none
// was given, namespaced by mid when the identity binds keys.
func bindKey(id Identity) (string, error) {
	key := id.Key
	if key == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		key = hex.EncodeToString(b[:])
		if id.BindKey {
			key = strconv.FormatInt(id.Mid, 10) + ":" + key
		}
		return key, nil
	}
	if len(key) > maxKeyLen {
		return "", errors.New("cloud: key too long")
	}
	if id.BindKey {
		prefix := strconv.FormatInt(id.Mid, 10) + ":"
		if len(key) < len(prefix) || key[:len(prefix)] != prefix {
			key = prefix + key
		}
	}
	return key, nil
}

// readOne reads and handles one frame of an authenticated connection.
func (c *conn) readOne() error {
	s := c.srv
	var f protocol.Frame
	_ = c.nc.SetReadDeadline(time.Now().Add(s.cfg.HeartbeatTimeout))
	if err := c.readFrame(&f); err != nil {
		c.countReadErr(err)
		return err
	}
	if !c.allow() {
		s.stats.rateLimited.Add(1)
		return errRateLimited
	}
	c.handle(&f)
	return nil
}

// allow applies the inbound frames-per-second limit.
func (c *conn) allow() bool {
	limit := c.srv.cfg.InboundRate
	if limit < 0 {
		return true
	}
	now := time.Now().Unix()
	if now != c.rateWin {
		c.rateWin, c.rateN = now, 0
	}
	c.rateN++
	return c.rateN <= limit
}

func (c *conn) handle(f *protocol.Frame) {
	s := c.srv
	switch f.Op {
	case protocol.OpHeartbeat:
		c.reply(f, protocol.OpHeartbeatReply, protocol.AppendHeartbeatBody(nil, s.online(c.b.roomOf(c))))
	case protocol.OpAuth:
		// A second auth is ignored.
	case protocol.OpChangeRoom:
		c.changeRoom(f)
	case protocol.OpJoin, protocol.OpLeave:
		c.joinOrLeave(f)
	case protocol.OpSub, protocol.OpUnsub:
		c.subscribe(f)
	case protocol.OpRefresh:
		c.refresh(f) // ver 2; an upstream message otherwise (refresh.go)
	default:
		c.upstream(f)
	}
}

// reply queues a reply frame echoing f's ver and seq.
func (c *conn) reply(f *protocol.Frame, op int32, body []byte) {
	b := protocol.AppendFrame(make([]byte, 0, protocol.HeaderLen+len(body)), &protocol.Frame{Ver: f.Ver, Op: op, Seq: f.Seq, Body: body})
	c.enqueue(outItem{b: b, kind: itemFrame})
}

// disconnect closes c on purpose: with an op 6 reason first if the client
// opted in (the queue is cleared so the reason goes out at once, after
// first, the write bounded by closeGrace), at once otherwise.
func (c *conn) disconnect(reason string, reconnect time.Duration, first ...outItem) {
	if !c.ext {
		c.kill()
		return
	}
	c.closeWith(true, c.disconnectItems(disconnectBody{Reason: reason, ReconnectMS: reconnect.Milliseconds()}, first...)...)
}

// kill closes the socket now; the reader notices and cleans up, the
// writer's claim drops what is queued.
func (c *conn) kill() {
	c.out.kill()
	_ = c.nc.Close()
}

// setSockWriter gives c its non-blocking write path (nil: none), before
// anything is queued.
func (c *conn) setSockWriter(w sockWriter) {
	c.w = w
	c.out.fast = w != nil
}

// finish runs when the reader ends: unregister, remove the session, close
// the socket (or leave it to a writer flushing a final frame).
func (c *conn) finish(registered bool) {
	c.putRbuf()
	c.stopExpiry()
	if c.out.finish(c.armCloseDeadline) {
		_ = c.nc.Close()
	}
	if registered {
		s := c.srv
		s.stats.sessions.Add(-1)
		if c.b.del(c) || c.wasKicked() {
			s.sess.remove(imcloud.Session{Mid: c.mid, Key: c.key, Node: s.id, Gen: c.gen})
		}
		c.disconnected()
	}
}

func (c *conn) countReadErr(err error) {
	switch {
	case errors.Is(err, protocol.ErrHeaderLen), errors.Is(err, protocol.ErrPackLen),
		errors.Is(err, protocol.ErrBodyTooLarge), errors.Is(err, protocol.ErrTruncated),
		errors.Is(err, errWSProtocol), errors.Is(err, io.ErrUnexpectedEOF):
		c.srv.stats.protocolErrors.Add(1)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, errWSClosed)
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
