package cloud

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/pires/go-proxyproto"
)

// ErrProxyHeader is a malformed or missing PROXY protocol header.
var ErrProxyHeader = errors.New("cloud: bad PROXY protocol header")

// PROXY protocol header bounds: a v1 line is at most 107 bytes with its
// CRLF (the spec's worst case); a v2 header is 16 bytes and an address
// block we bound to 1 KB (addresses and a few TLVs).
const (
	proxyV1MaxLine = 107
	proxyV2Head    = 16
	proxyV2MaxBody = 1024
)

// readProxyHeader reads a PROXY protocol v1 or v2 header from r without
// reading past it, and returns the source address it names (invalid for
// LOCAL, UNKNOWN and non-IP families). Socket errors are returned as they
// are; a malformed header is ErrProxyHeader.
//
// go-proxyproto parses and validates the header. Framing its bytes stays
// here: the library reads through a bufio.Reader, which reads ahead past
// the header, and what follows (the TLS handshake, the first goim frame,
// the WebSocket upgrade) must stay on the socket, which itself must stay
// the connection (plain TCP writes go to it directly), so the library's
// Conn wrapper does not fit either. readProxyHeader therefore takes
// exactly the header's bytes off r (v1: up to the LF; v2: the fixed part,
// then the length it announces) and hands only those to the library.
func readProxyHeader(r io.Reader) (netip.Addr, error) {
	raw, err := readProxyBytes(r)
	if err != nil {
		return netip.Addr{}, err
	}
	br := bufio.NewReaderSize(bytes.NewReader(raw), len(raw))
	h, err := proxyproto.Read(br)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %w", ErrProxyHeader, err)
	}
	if br.Buffered() != 0 {
		return netip.Addr{}, ErrProxyHeader
	}
	if h.Command.IsLocal() {
		return netip.Addr{}, nil
	}
	src, _, ok := h.IPs()
	if !ok {
		return netip.Addr{}, nil
	}
	a, ok := netip.AddrFromSlice(src)
	if !ok {
		return netip.Addr{}, ErrProxyHeader
	}
	return a.Unmap(), nil
}

// readProxyBytes takes one PROXY header's bytes off r, reading nothing
// beyond: a v1 line byte by byte up to its LF, or a v2 header's fixed 16
// bytes and then the address block length they announce.
func readProxyBytes(r io.Reader) ([]byte, error) {
	raw := make([]byte, 5, proxyV2Head)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, err
	}
	if bytes.Equal(raw, proxyproto.SIGV1) {
		for raw[len(raw)-1] != '\n' {
			if len(raw) == proxyV1MaxLine {
				return nil, ErrProxyHeader
			}
			raw = append(raw, 0)
			if _, err := io.ReadFull(r, raw[len(raw)-1:]); err != nil {
				return nil, eofUnexpected(err)
			}
		}
		return raw, nil
	}
	raw = raw[:proxyV2Head]
	if _, err := io.ReadFull(r, raw[5:]); err != nil {
		return nil, eofUnexpected(err)
	}
	if !bytes.Equal(raw[:len(proxyproto.SIGV2)], proxyproto.SIGV2) {
		return nil, ErrProxyHeader
	}
	n := int(binary.BigEndian.Uint16(raw[14:]))
	if n > proxyV2MaxBody {
		return nil, ErrProxyHeader
	}
	raw = append(raw, make([]byte, n)...)
	if _, err := io.ReadFull(r, raw[proxyV2Head:]); err != nil {
		return nil, eofUnexpected(err)
	}
	return raw, nil
}
