package cloud

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/imcloud/imcloud"
)

// Config configures a Server. The zero Config is a standalone node (no
// session store) with defaults a public-facing node can live with, except
// that Authenticator must be set: the auth mode is always chosen on purpose.
type Config struct {
	// NodeID names the node in the cluster. Default: hostname, the first
	// listen address and a random restart epoch, so that a restarted
	// process never shares an id with its previous life. An explicit id
	// may be stable across restarts (a StatefulSet name): each process
	// registers a random epoch with it, and the store drops the routes a
	// crashed predecessor left under the id when the new one registers.
	// Live processes must not share an id.
	NodeID string
	// Store records sessions, the node and room counts. Nil: standalone,
	// nothing is registered and sessions are only local. The store is the
	// caller's; the server never closes it.
	Store SessionStore
	// Authenticator decides who a client is. Required: use
	// DevAuthenticator() to trust the client's JSON (goim's behaviour) on
	// purpose, NewTokenAuthenticator for signed tokens, or an AuthFunc.
	Authenticator Authenticator
	// LinkSecret is the shared secret job and the node prove to each
	// other in the link hello (ServeLink); it is never sent.
	// Empty: ServeLink returns ErrNoLinkSecret unless InsecureLink is set.
	LinkSecret string
	// InsecureLink accepts link hellos with an empty secret (tests and
	// one-box development only).
	InsecureLink bool
	// LinkAddr is the host:port job uses to reach ServeLink, as registered.
	LinkAddr string
	// PublicAddrs are the URLs clients use, as registered
	// ("tcp://host:3101", "ws://host:3102/sub").
	PublicAddrs []string
	// TLS, when set, wraps the TCP and WebSocket listeners given to
	// ServeTCP and ServeWS (not ServeHTTP, whose http.Server owns TLS).
	TLS *tls.Config
	// AllowedOrigins, when non-empty, is the WebSocket Origin allow-list
	// (exact match, e.g. "https://example.com"; "*" allows any). Requests
	// without an Origin header (non-browser clients) are always allowed.
	AllowedOrigins []string

	// Buckets is the number of shards connections are spread over by key
	// hash. Default 64: enough that lock contention is negligible on any
	// machine up to 64 cores, cheap on small ones.
	Buckets int
	// HandshakeTimeout bounds everything before a successful auth (PROXY
	// header, TLS, WebSocket upgrade, the auth frame). Default 5 s.
	HandshakeTimeout time.Duration
	// HeartbeatTimeout closes a connection that sends nothing for this
	// long. Default 8 min (goim's), above the 240 s goim's benchmark
	// client beats at.
	HeartbeatTimeout time.Duration
	// Client is what clients are told: the auth reply carries
	// Client.Heartbeat (default 30 s, goim's JavaScript client). Give
	// logic.HandlerConfig.Client the same value: its nodes/weighted route
	// reports the same settings.
	Client imcloud.ClientSettings
	// WriteTimeout bounds one socket write. Default 10 s.
	WriteTimeout time.Duration
	// MaxInboundBody caps a client frame's body. Default 4096 bytes.
	MaxInboundBody int
	// MaxBatchBody caps the body of one op 9 WebSocket message. Default
	// 4096 bytes, which goim's reader accepts. A single larger push is sent
	// alone.
	MaxBatchBody int
	// QueueLength bounds each connection's outbound queue (frames waiting
	// to be written). Default 1024.
	QueueLength int
	// DropOldest makes a full queue drop its oldest frame instead of
	// disconnecting the slow client (the default). Both are counted.
	DropOldest bool
	// MaxConns caps connections on this node. Default 1,000,000.
	MaxConns int
	// MaxConnsPerIP caps connections per client IP (authenticated, or
	// past the handshake caps with their auth frame read). Default 20,000.
	// Carrier-grade NAT puts thousands of subscribers behind one public
	// address, and a load test runs from one host; a NAT address holds at
	// most ~64 Ki flows to one server port in all, so 20,000 refuses no
	// real NAT's users here while one address still cannot take more than
	// 2% of MaxConns' default. Negative: no cap.
	MaxConnsPerIP int
	// AcceptRatePerIP caps new connections per second from one client IP
	// (an IPv6 client: its /64), with a burst of the same size, so one
	// source connecting in a loop spends its own budget, not the node's.
	// Default 2000: one host can open 10,000 connections at 1,500/s.
	// The table of sources is bounded (64 Ki; idle ones are forgotten
	// first). Negative: no cap.
	AcceptRatePerIP int
	// AcceptRate caps new connections per second on the node (reconnect
	// storms; the last resort once sources are limited), with a burst of
	// the same size. Default 10,000, five sources at AcceptRatePerIP.
	// Negative: no cap.
	AcceptRate int
	// MaxHandshakes caps the sockets in their handshake (accepted, not
	// yet authenticated) on the node, and MaxHandshakesPerIP those from
	// one client IP, so sockets that never authenticate (each lives at
	// most HandshakeTimeout) cannot use up MaxConns or the node's
	// attention for the clients that do. Defaults 10,000 and 1,000.
	// Negative: no cap.
	MaxHandshakes, MaxHandshakesPerIP int
	// MaxRooms caps the rooms one connection is in: its primary room
	// (auth room_id, ChangeRoom) and those it joined (op 18). A Join or
	// ChangeRoom beyond it is refused with "too_many_rooms". Default 32.
	MaxRooms int
	// RoomAuth, when set, decides alone whether a connection may enter a
	// room: its auth room_id, a ChangeRoom and a Join (docs/protocol-rooms.md).
	// A non-nil error refuses: the auth is refused (op 6
	// "room_forbidden" to ver-2 clients), a ChangeRoom or Join answered
	// "forbidden". Nil: Identity.MayEnter decides (any room unless the
	// authenticator restricted the identity's rooms, as the token
	// authenticator does with the token's "rooms" claim). It runs on the
	// connection's reader goroutine and should return quickly.
	RoomAuth func(ctx context.Context, req RoomRequest) error
	// InboundRate caps client frames per second per connection. Default 50.
	// Negative: no cap.
	InboundRate int
	// TrustedProxies are the networks whose PROXY protocol header (when
	// ProxyProtocol is set) or X-Forwarded-For (WebSocket) names the real
	// client. Default none: the peer address is the client.
	TrustedProxies []netip.Prefix
	// ProxyProtocol expects a PROXY protocol v1 or v2 header on every
	// connection from a trusted proxy (ServeTCP and ServeWS).
	ProxyProtocol bool

	// SessionTTL is how long a stored session lives without renewal; the
	// node renews every SessionTTL/3. Default 10 min.
	SessionTTL time.Duration
	// NodeTTL is how long the node's registration lives; renewed every
	// NodeTTL/3. Default 30 s.
	NodeTTL time.Duration
	// RoomCountInterval is how often room counts are reported and the
	// cluster-wide counts fetched. Default 10 s.
	RoomCountInterval time.Duration
	// StoreCallSessions is the most sessions per store call. Default 512.
	StoreCallSessions int
	// StoreTimeout bounds one store call. Default 5 s.
	StoreTimeout time.Duration
	// StoreCheckInterval is how often the node checks that the store
	// still holds what it registered: a new generation (GenerationStore:
	// the store lost its data) or a failed store call since the last
	// check makes the node register itself, every session and its room
	// counts again at once. It bounds the recovery after Redis comes back
	// empty, and must stay below the store's rebuild window (3 s by
	// default). Default 1 s.
	StoreCheckInterval time.Duration

	// History is the history store recover connections replay from
	// (recover.go). Nil: nothing is replayed, and a recover connection's
	// op 25 reports every stream it follows as not recovered, reason
	// "unavailable" (pushes that carry a stream still reach it as op 24).
	History History
	// HistoryTimeout bounds one history read of a recovery. Default 2 s.
	HistoryTimeout time.Duration
	// HistoryLimit is the most pushes a recovery replays per stream.
	// Default imcloud.DefaultHistoryLen.
	HistoryLimit int

	// DedupSize is how many recent message ids are remembered to drop
	// redeliveries. Default 65536.
	DedupSize int
	// MaxBroadcasts bounds paced broadcasts in progress; beyond it Deliver
	// returns ErrOverloaded. Default 64.
	MaxBroadcasts int

	// DrainRate is how many connections per second Shutdown closes.
	// Default 20,000.
	DrainRate int
	// ReconnectMin and ReconnectMax bound the randomized reconnect hint
	// sent in op 6 on drain. Defaults 1 s and 10 s.
	ReconnectMin, ReconnectMax time.Duration

	// Events, when set, receives the node's connection events (connect,
	// disconnect with its reason, room changes; imcloud.Event), from a
	// goroutine of the node's own, in order: see EventSink.
	Events EventSink
	// EventBuffer bounds the events waiting for Events; beyond it they
	// are dropped and counted (Stats.EventsDropped). Default 65536.
	EventBuffer int
	// UpstreamHook receives upstream client messages (op 4 and other
	// unknown ops). It runs on the connection's reader goroutine and must
	// not block for long; body is only valid during the call. The
	// client's reply (the same op, empty) is queued once it returned.
	UpstreamHook func(ctx context.Context, m Upstream)
	// Logger receives operational logs. Nil: silent.
	Logger *slog.Logger

	// refusalLogEvery is how often refusals are summed up in the log
	// (tests shorten it). Default 10 s.
	refusalLogEvery time.Duration
}

// Upstream is a message a client sent to the server.
type Upstream struct {
	Mid  int64
	Key  string
	Room string
	Op   int32
	Seq  int32
	Body []byte
	// Node is the id of the node the client is connected to.
	Node string
}

// ErrNoAuthenticator is returned by New when Config.Authenticator is nil.
var ErrNoAuthenticator = errors.New("cloud: no authenticator configured (choose DevAuthenticator, NewTokenAuthenticator or an AuthFunc)")

// ErrNoCertificate is returned by New when Config.TLS has no way to find
// a certificate (Certificates, GetCertificate or GetConfigForClient):
// every TLS handshake would fail.
var ErrNoCertificate = errors.New("cloud: Config.TLS has no certificate: every TLS handshake would fail")

func (c Config) withDefaults() (Config, error) {
	if c.Authenticator == nil {
		return c, ErrNoAuthenticator
	}
	if t := c.TLS; t != nil && len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetConfigForClient == nil {
		return c, ErrNoCertificate
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defi := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	if c.NodeID == "" {
		c.NodeID = defaultNodeID(c.LinkAddr, c.PublicAddrs)
	}
	defi(&c.Buckets, 64)
	if c.Buckets < 1 {
		c.Buckets = 1
	}
	def(&c.HandshakeTimeout, 5*time.Second)
	def(&c.HeartbeatTimeout, 8*time.Minute)
	c.Client = c.Client.WithDefaults()
	def(&c.WriteTimeout, 10*time.Second)
	defi(&c.MaxInboundBody, 4096)
	defi(&c.MaxBatchBody, 4096)
	defi(&c.QueueLength, 1024)
	defi(&c.MaxConns, 1_000_000)
	defi(&c.MaxConnsPerIP, 20_000)
	defi(&c.AcceptRatePerIP, 2000)
	defi(&c.AcceptRate, 10_000)
	defi(&c.MaxHandshakes, 10_000)
	defi(&c.MaxHandshakesPerIP, 1000)
	defi(&c.InboundRate, 50)
	defi(&c.MaxRooms, 32)
	if c.MaxRooms < 1 {
		c.MaxRooms = 1
	}
	def(&c.SessionTTL, 10*time.Minute)
	def(&c.NodeTTL, 30*time.Second)
	def(&c.RoomCountInterval, 10*time.Second)
	defi(&c.StoreCallSessions, 512)
	def(&c.StoreTimeout, 5*time.Second)
	def(&c.StoreCheckInterval, time.Second)
	def(&c.HistoryTimeout, 2*time.Second)
	defi(&c.HistoryLimit, imcloud.DefaultHistoryLen)
	defi(&c.DedupSize, 65536)
	defi(&c.EventBuffer, 65536)
	defi(&c.MaxBroadcasts, 64)
	defi(&c.DrainRate, 20000)
	def(&c.ReconnectMin, time.Second)
	def(&c.ReconnectMax, 10*time.Second)
	def(&c.refusalLogEvery, 10*time.Second)
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = c.ReconnectMin
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// defaultNodeID is host/address/epoch: the host name, the link address (or
// the first public one; left out when none is known yet) and a random
// restart epoch.
func defaultNodeID(linkAddr string, public []string) string {
	host, _ := os.Hostname()
	if host == "" {
		host = "imcloud"
	}
	parts := []string{host}
	if linkAddr == "" && len(public) > 0 {
		linkAddr = public[0]
	}
	if linkAddr != "" {
		parts = append(parts, linkAddr)
	}
	var e [4]byte
	_, _ = rand.Read(e[:])
	return strings.Join(append(parts, hex.EncodeToString(e[:])), "/")
}
