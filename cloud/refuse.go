package cloud

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/imcloud/imcloud/protocol"
)

// refusal is why a connection was refused before it was served. Every
// refusal is counted by its code (Stats.Refused) and logged in a summary
// at most every refusalLogEvery; a ver-2 client refused after its auth
// frame was read receives the code as an op 6 reason.
type refusal uint8

const (
	refusedNone         refusal = iota
	refusedIPRate               // the client IP's accept rate
	refusedAcceptRate           // the node's accept rate
	refusedNodeCap              // MaxConns
	refusedIPCap                // MaxConnsPerIP
	refusedHandshakes           // MaxHandshakes
	refusedIPHandshakes         // MaxHandshakesPerIP
	refusedUpgradeSize          // a WebSocket upgrade request over its cap
	refusedAuth                 // the authenticator refused (or the auth JSON is bad)
	refusedIdentity             // the identity is not well-formed
	refusedRoom                 // the auth room_id is forbidden (Config.RoomAuth, Identity.MayEnter)
	refusedRevoked              // the credential was revoked (revoke.go); op 6 says "auth"
	numRefusals

	// refusedClosed is not a refusal: the server shut down (not counted).
	refusedClosed refusal = 255
)

// refusals describes each refusal: its code (op 6 reason and metric
// label), what it is, and for a limit the Config field, the
// reference-server flag and the configured value.
var refusals = [numRefusals]struct {
	code, what, field, flag string
	limit                   func(*Config) int
}{
	refusedIPRate:       {"ip_accept_rate", "per-IP accept rate", "AcceptRatePerIP", "-accept-rate-per-ip", func(c *Config) int { return c.AcceptRatePerIP }},
	refusedAcceptRate:   {"accept_rate", "accept rate", "AcceptRate", "-accept-rate", func(c *Config) int { return c.AcceptRate }},
	refusedNodeCap:      {"node_cap", "connection cap", "MaxConns", "-max-conns", func(c *Config) int { return c.MaxConns }},
	refusedIPCap:        {"ip_cap", "per-IP cap", "MaxConnsPerIP", "-max-conns-per-ip", func(c *Config) int { return c.MaxConnsPerIP }},
	refusedHandshakes:   {"handshakes", "handshake cap", "MaxHandshakes", "-max-handshakes", func(c *Config) int { return c.MaxHandshakes }},
	refusedIPHandshakes: {"ip_handshakes", "per-IP handshake cap", "MaxHandshakesPerIP", "-max-handshakes-per-ip", func(c *Config) int { return c.MaxHandshakesPerIP }},
	refusedUpgradeSize:  {code: "upgrade_too_large", what: "WebSocket upgrade request over 16 KiB"},
	refusedAuth:         {code: "auth", what: "auth refused"},
	refusedIdentity:     {code: "identity", what: "invalid identity (mid, key, room or platform)"},
	refusedRoom:         {code: "room_forbidden", what: "auth room forbidden"},
	refusedRevoked:      {code: "revoked", what: "credential revoked"},
}

// refused counts a refusal.
func (s *Server) refused(r refusal) { s.stats.refused[r].Add(1) }

// refusedCounts returns the counts by code, for Stats.
func (c *counters) refusedCounts() map[string]uint64 {
	m := make(map[string]uint64, numRefusals)
	for r := refusedNone + 1; r < numRefusals; r++ {
		m[refusals[r].code] = c.refused[r].Load()
	}
	return m
}

// refusalLog logs, every refusalLogEvery until Shutdown, how many
// connections were refused since the last log and why, naming the limit
// and its setting, so an operator sees which knob to turn.
func (s *Server) refusalLog() {
	defer s.bg.Done()
	every := s.cfg.refusalLogEvery
	t := time.NewTicker(every)
	defer t.Stop()
	var last [numRefusals]uint64
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		var parts []string
		total := uint64(0)
		for r := refusedNone + 1; r < numRefusals; r++ {
			n := s.stats.refused[r].Load()
			delta := n - last[r]
			last[r] = n
			if delta == 0 {
				continue
			}
			total += delta
			d := refusals[r]
			part := d.what
			if d.limit != nil {
				part = fmt.Sprintf("%s %d (%s, %s)", d.what, d.limit(&s.cfg), d.field, d.flag)
			}
			parts = append(parts, fmt.Sprintf("%s: %d", part, delta))
		}
		if total > 0 {
			s.cfg.Logger.Warn(fmt.Sprintf("cloud: refused %d connections in the last %s: %s", total, every, strings.Join(parts, "; ")))
		}
	}
}

// reconnectHint is the op 6 hint for a limit that passes: random in
// [ReconnectMin, ReconnectMax), so refused clients come back spread out.
func (s *Server) reconnectHint() time.Duration {
	hint := s.cfg.ReconnectMin
	if span := s.cfg.ReconnectMax - s.cfg.ReconnectMin; span > 0 {
		hint += rand.N(span)
	}
	return hint
}

// revokedHint is op 6's reconnect hint for a revoked credential: "iat" is
// in whole seconds, so a token minted at once after the revocation may
// still be refused (revoke.go); one minted a second later is not.
const revokedHint = time.Second

// refuse counts r and, when the client opted into extensions (its auth
// frame has ver 2), writes op 6 with r's code before the handshake ends:
// a limit carries a reconnect hint, a revoked credential revokedHint, an
// auth, identity or room refusal 0. The
// write runs on the handshake goroutine under the handshake deadline,
// before anything was queued; the caller closes the socket.
func (c *conn) refuse(f *protocol.Frame, r refusal) {
	s := c.srv
	s.refused(r)
	if f.Ver < protocol.VerExtensions {
		return
	}
	var hint time.Duration
	switch r {
	case refusedAuth, refusedIdentity, refusedRoom:
	case refusedRevoked:
		hint = revokedHint
	default:
		hint = s.reconnectHint()
	}
	reason := refusals[r].code
	if r == refusedRevoked {
		reason = refusals[refusedAuth].code // a credential the node does not take
	}
	b := disconnectFrame(disconnectBody{Reason: reason, ReconnectMS: hint.Milliseconds()})
	if c.ws {
		b = append(appendWSFrameHeader(nil, ws.OpBinary, len(b)), b...)
		code := ws.StatusPolicyViolation
		if hint > 0 && r != refusedRevoked {
			code = ws.StatusCode(1013) // try again later
		}
		b = append(b, wsCloseFrame(code, reason)...)
	}
	_, _ = c.nc.Write(b)
}

// disconnectBody is op 6's JSON body. Kick marks a kick's, whose
// reason is the application's text: a client tells it from the node's
// own reasons by the flag, not by the text.
type disconnectBody struct {
	Reason      string `json:"reason"`
	ReconnectMS int64  `json:"reconnect_ms"`
	Kick        bool   `json:"kick,omitempty"`
}

// disconnectFrame is op 6 (ver 2) with body: every op 6 the node writes
// (a refusal, a disconnect on purpose, a kick) is built here.
func disconnectFrame(body disconnectBody) []byte {
	b, _ := json.Marshal(body)
	return protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerExtensions, Op: protocol.OpDisconnect, Body: b})
}

// disconnectItems queues op 6 with body after first and, on WebSocket, a
// close frame 1001 (going away) with its reason, so browsers report a
// clean close rather than 1006: a connection's last items when the node
// closes it on purpose after auth (disconnect, kick).
func (c *conn) disconnectItems(body disconnectBody, first ...outItem) []outItem {
	items := append(first, outItem{b: disconnectFrame(body), kind: itemFrame})
	if c.ws {
		items = append(items, outItem{b: wsCloseFrame(wsCloseGoingAway, body.Reason), kind: itemControl})
	}
	return items
}
