package cloud

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"golang.org/x/time/rate"
)

// acquireIP counts a connection from ip against MaxConnsPerIP.
func (s *Server) acquireIP(ip netip.Addr) bool {
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	n := s.perIP[ip]
	if s.cfg.MaxConnsPerIP > 0 && n >= s.cfg.MaxConnsPerIP {
		return false
	}
	s.perIP[ip] = n + 1
	return true
}

func (s *Server) releaseIP(ip netip.Addr) {
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	if n := s.perIP[ip]; n <= 1 {
		delete(s.perIP, ip)
	} else {
		s.perIP[ip] = n - 1
	}
}

func (s *Server) distinctIPs() int {
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	return len(s.perIP)
}

// trusted reports whether ip is a configured proxy.
func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIPFromHeader returns the client address behind trusted proxies:
// the right-most X-Forwarded-For entry that is not itself a trusted proxy.
// A peer that is not trusted is the client.
func (s *Server) clientIPFromHeader(peer netip.Addr, h http.Header) netip.Addr {
	if !s.trusted(peer) {
		return peer
	}
	xff := h.Values("X-Forwarded-For")
	ip := peer
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return ip
			}
			ip = a.Unmap()
			if !s.trusted(ip) {
				return ip
			}
		}
	}
	return ip
}

// newAcceptLimiter returns a token bucket allowing perSec new connections
// per second with a burst of the same size, starting full; perSec <= 0
// means no cap.
func newAcceptLimiter(perSec int) *rate.Limiter {
	if perSec <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(perSec), perSec)
}

// admit applies the accept-time limits to a new socket from peer, cheapest
// and most specific first, so that one source hitting its own limits
// spends none of the node's: admitSource, then admitConn. An admitted
// socket is counted and tracked as handshaking; refusedNone is returned.
func (s *Server) admit(nc net.Conn, peer netip.Addr) refusal {
	if r := s.admitSource(peer); r != refusedNone {
		return r
	}
	return s.admitConn(nc, peer)
}

// admitSource applies the source's accept rate (by its address, unless it
// is a trusted proxy, whose clients are limited once the PROXY header or
// X-Forwarded-For names them) and the connection cap.
func (s *Server) admitSource(peer netip.Addr) refusal {
	if s.limitsByIP(peer) && !s.ipRates.allow(peer) {
		return refusedIPRate
	}
	if s.stats.conns.Load() >= int64(s.cfg.MaxConns) {
		return refusedNodeCap
	}
	return refusedNone
}

// admitConn applies the handshake caps (node-wide and per source) and
// last the node's accept rate, then counts nc and tracks it as
// handshaking. refusedClosed: Shutdown began.
func (s *Server) admitConn(nc net.Conn, peer netip.Addr) refusal {
	if !s.limitsByIP(peer) {
		peer = netip.Addr{}
	}
	if r := s.addConn(nc, peer); r != refusedNone {
		return r
	}
	if !s.acceptRate.Allow() {
		s.handshakeDone(nc)
		s.wg.Done()
		return refusedAcceptRate
	}
	s.stats.conns.Add(1)
	s.stats.accepted.Add(1)
	return refusedNone
}

// limitsByIP reports whether the per-IP accept limits apply to peer at
// accept: a known address that is not a trusted proxy.
func (s *Server) limitsByIP(peer netip.Addr) bool { return peer.IsValid() && !s.trusted(peer) }

// remoteIP parses an http.Request's RemoteAddr.
func remoteIP(addr string) netip.Addr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// addConn adds a connection goroutine to the wait group and nc to the
// handshaking set, within MaxHandshakes and, for a valid ip,
// MaxHandshakesPerIP; refusedClosed once shut down.
func (s *Server) addConn(nc net.Conn, ip netip.Addr) refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return refusedClosed
	}
	if s.cfg.MaxHandshakes > 0 && len(s.pending) >= s.cfg.MaxHandshakes {
		return refusedHandshakes
	}
	if ip.IsValid() {
		n := s.shakes[ip]
		if s.cfg.MaxHandshakesPerIP > 0 && n >= s.cfg.MaxHandshakesPerIP {
			return refusedIPHandshakes
		}
		s.shakes[ip] = n + 1
	}
	s.wg.Add(1)
	s.pending[nc] = ip
	return refusedNone
}

// handshakeDone removes nc from the handshaking set (once; later calls do
// nothing).
func (s *Server) handshakeDone(nc net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ip, ok := s.pending[nc]
	if !ok {
		return
	}
	delete(s.pending, nc)
	if ip.IsValid() {
		if n := s.shakes[ip]; n <= 1 {
			delete(s.shakes, ip)
		} else {
			s.shakes[ip] = n - 1
		}
	}
}

// rekeyPending replaces a handshaking connection by its TLS wrapper, so
// Shutdown closes (and handshakeDone finds) the connection in use.
func (s *Server) rekeyPending(old, nc net.Conn) {
	s.mu.Lock()
	if ip, ok := s.pending[old]; ok {
		delete(s.pending, old)
		s.pending[nc] = ip
	}
	s.mu.Unlock()
}
