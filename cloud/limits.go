package cloud

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
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

// ErrProxyHeader is a malformed or missing PROXY protocol header.
var ErrProxyHeader = errors.New("cloud: bad PROXY protocol header")

var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// readProxyHeader reads a PROXY protocol v1 or v2 header from r without
// reading past it, and returns the source address it names (invalid for
// LOCAL / UNKNOWN).
func readProxyHeader(r io.Reader) (netip.Addr, error) {
	var head [16]byte
	if _, err := io.ReadFull(r, head[:5]); err != nil {
		return netip.Addr{}, err
	}
	if string(head[:5]) == "PROXY" {
		// v1: a text line of at most 107 bytes ending in CRLF.
		line := make([]byte, 0, 107)
		line = append(line, head[:5]...)
		var b [1]byte
		for !bytes.HasSuffix(line, []byte("\r\n")) {
			if len(line) >= 107 {
				return netip.Addr{}, ErrProxyHeader
			}
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return netip.Addr{}, err
			}
			line = append(line, b[0])
		}
		f := strings.Fields(string(line[:len(line)-2]))
		if len(f) >= 2 && f[1] == "UNKNOWN" {
			return netip.Addr{}, nil
		}
		if len(f) != 6 {
			return netip.Addr{}, ErrProxyHeader
		}
		a, err := netip.ParseAddr(f[2])
		if err != nil {
			return netip.Addr{}, ErrProxyHeader
		}
		return a.Unmap(), nil
	}
	if _, err := io.ReadFull(r, head[5:]); err != nil {
		return netip.Addr{}, err
	}
	if !bytes.Equal(head[:12], proxyV2Sig) || head[12]>>4 != 2 {
		return netip.Addr{}, ErrProxyHeader
	}
	n := int(binary.BigEndian.Uint16(head[14:16]))
	if n > 1024 {
		return netip.Addr{}, ErrProxyHeader
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return netip.Addr{}, err
	}
	if head[12]&0x0F == 0 { // LOCAL
		return netip.Addr{}, nil
	}
	switch head[13] >> 4 {
	case 1: // AF_INET
		if n < 12 {
			return netip.Addr{}, ErrProxyHeader
		}
		return netip.AddrFrom4([4]byte(body[:4])), nil
	case 2: // AF_INET6
		if n < 36 {
			return netip.Addr{}, ErrProxyHeader
		}
		return netip.AddrFrom16([16]byte(body[:16])).Unmap(), nil
	}
	return netip.Addr{}, nil
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
