package cloud

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

// proxyV2 builds a PROXY protocol v2 header: version/command byte vc,
// family/transport byte ft, and the address block (and TLVs) in body.
func proxyV2(vc, ft byte, body []byte) []byte {
	b := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), vc, ft, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(body)))
	return append(b, body...)
}

// v2IPv4 is a v2 IPv4 address block: src, dst, src port, dst port.
func v2IPv4(src, dst string) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	return append(append(s[:], d[:]...), 0x15, 0xb3, 0x0c, 0x1d)
}

func v2IPv6(src, dst string) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	return append(append(s[:], d[:]...), 0x15, 0xb3, 0x0c, 0x1d)
}

// TestReadProxyHeader: the source address of v1 and v2 headers, none for
// LOCAL / UNKNOWN / non-IP families, ErrProxyHeader for malformed ones,
// and never a byte read past the header (the TLS handshake or the first
// goim frame follows it on the socket).
func TestReadProxyHeader(t *testing.T) {
	const after = "\x16\x03\x01 first bytes after the header"
	tlv := []byte{0x04, 0x00, 0x03, 'a', 'b', 'c'} // PP2_TYPE_NOOP
	for _, tc := range []struct {
		name string
		in   []byte
		want string // source address; "" for none
		err  bool   // ErrProxyHeader
	}{
		{"v1 tcp4", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 3101\r\n"), "203.0.113.7", false},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 5555 3101\r\n"), "2001:db8::7", false},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), "", false},
		{"v1 unknown with addresses", []byte("PROXY UNKNOWN ::1 ::2 1 2\r\n"), "", false},
		{"v1 too few fields", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555\r\n"), "", true},
		{"v1 bad address", []byte("PROXY TCP4 203.0.113 10.0.0.1 5555 3101\r\n"), "", true},
		{"v1 no CRLF within 107 bytes", []byte("PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"), "", true},
		{"v2 proxy tcp4", proxyV2(0x21, 0x11, v2IPv4("198.51.100.4", "10.0.0.1")), "198.51.100.4", false},
		{"v2 proxy udp4", proxyV2(0x21, 0x12, v2IPv4("198.51.100.4", "10.0.0.1")), "198.51.100.4", false},
		{"v2 proxy tcp6", proxyV2(0x21, 0x21, v2IPv6("2001:db8::9", "2001:db8::1")), "2001:db8::9", false},
		{"v2 proxy tcp6 mapped v4", proxyV2(0x21, 0x21, v2IPv6("::ffff:192.0.2.5", "::1")), "192.0.2.5", false},
		{"v2 proxy tcp4 with TLVs", proxyV2(0x21, 0x11, append(v2IPv4("198.51.100.4", "10.0.0.1"), tlv...)), "198.51.100.4", false},
		{"v2 local", proxyV2(0x20, 0x00, nil), "", false},
		{"v2 local with a block", proxyV2(0x20, 0x11, v2IPv4("198.51.100.4", "10.0.0.1")), "", false},
		{"v2 proxy unix", proxyV2(0x21, 0x31, make([]byte, 216)), "", false},
		{"v2 short ipv4 block", proxyV2(0x21, 0x11, make([]byte, 8)), "", true},
		{"v2 short ipv6 block", proxyV2(0x21, 0x21, make([]byte, 20)), "", true},
		{"v2 version 1", proxyV2(0x11, 0x11, v2IPv4("198.51.100.4", "10.0.0.1")), "", true},
		{"v2 block over 1 KB", proxyV2(0x21, 0x11, make([]byte, 2000)), "", true},
		{"bad signature", []byte("\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + string(v2IPv4("198.51.100.4", "10.0.0.1"))), "", true},
		{"goim frame instead", []byte("\x00\x00\x00\x10\x00\x10\x00\x01\x00\x00\x00\x07\x00\x00\x00\x01"), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(append(append([]byte(nil), tc.in...), after...))
			ip, err := readProxyHeader(r)
			if tc.err {
				if !errors.Is(err, ErrProxyHeader) {
					t.Fatalf("got %v, %v; want ErrProxyHeader", ip, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if ip.IsValid() {
				got = ip.String()
			}
			if got != tc.want {
				t.Errorf("source %q, want %q", got, tc.want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != after {
				t.Errorf("left %q unread, want %q", rest, after)
			}
		})
	}
}

// TestReadProxyHeaderTruncated: a header cut short is the socket's error,
// io.ErrUnexpectedEOF or io.EOF, not a success.
func TestReadProxyHeaderTruncated(t *testing.T) {
	for _, in := range [][]byte{
		[]byte("PRO"),
		[]byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 3101\r"),
		proxyV2(0x21, 0x11, v2IPv4("198.51.100.4", "10.0.0.1"))[:14],
		proxyV2(0x21, 0x11, v2IPv4("198.51.100.4", "10.0.0.1"))[:20],
	} {
		if ip, err := readProxyHeader(bytes.NewReader(in)); err == nil {
			t.Errorf("%q: got %v, want an error", in, ip)
		}
	}
}

// FuzzReadProxyHeader: no input panics, and a header read from data alone
// reads the same, taking the same bytes, with more bytes behind it (the
// framing never reads past the header).
//
//	go test -run '^$' -fuzz '^FuzzReadProxyHeader$' -fuzztime 60s ./cloud/
func FuzzReadProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 3101\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 5555 3101\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(proxyV2(0x21, 0x11, v2IPv4("198.51.100.4", "10.0.0.1")))
	f.Add(proxyV2(0x21, 0x21, v2IPv6("2001:db8::9", "2001:db8::1")))
	f.Add(proxyV2(0x20, 0x00, nil))
	f.Add(proxyV2(0x21, 0x31, make([]byte, 216)))
	f.Add(proxyV2(0x21, 0x11, append(v2IPv4("198.51.100.4", "10.0.0.1"), 0x04, 0x00, 0x01, 'x')))
	const tail = "\x16\x03\x01 more"
	f.Fuzz(func(t *testing.T, data []byte) {
		alone := bytes.NewReader(data)
		ip, err := readProxyHeader(alone)
		if err != nil {
			return
		}
		took := len(data) - alone.Len()
		more := bytes.NewReader(append(append([]byte(nil), data...), tail...))
		ip2, err := readProxyHeader(more)
		if err != nil || ip2 != ip {
			t.Fatalf("with bytes behind it: %v, %v; alone: %v", ip2, err, ip)
		}
		if took2 := len(data) + len(tail) - more.Len(); took2 != took {
			t.Fatalf("took %d bytes with bytes behind the header, %d alone", took2, took)
		}
	})
}
