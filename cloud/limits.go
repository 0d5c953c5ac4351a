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

// newAcceptLimiter returns the node-wide accept-rate limiter: a token
// bucket allowing perSec new connections per second with a burst of the
// same size, starting full; perSec <= 0 means no cap.
func newAcceptLimiter(perSec int) *rate.Limiter {
	if perSec <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(perSec), perSec)
}

// admit applies the node-wide limits to a new socket (max connections and
// accept rate) and counts it. A refused socket is closed.
func (s *Server) admit(nc net.Conn) bool {
	if s.stats.conns.Load() >= int64(s.cfg.MaxConns) || !s.acceptRate.Allow() {
		s.stats.rejected.Add(1)
		_ = nc.Close()
		return false
	}
	s.stats.conns.Add(1)
	s.stats.accepted.Add(1)
	return true
}
