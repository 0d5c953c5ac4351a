package cloud

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/gobwas/ws"

	"github.com/imcloud/imcloud/protocol"
)

// readFrame reads the next client frame into f. f.Body aliases a pooled
// buffer valid until the next call. No buffer is held while blocked
// waiting for a frame header.
func (c *conn) readFrame(f *protocol.Frame) error {
	if c.ws {
		if len(c.pending) == 0 {
			// Wait for the next WebSocket frame here rather than deep in
			// readWSMessage: an idle connection then blocks at the same
			// stack depth as on TCP and its goroutine stays within the
			// initial 2 KB stack (blocking in readWSMessage grew it to
			// 4 KB, +2 KB RSS per idle connection).
			c.putRbuf()
			if _, err := io.ReadFull(c.r, c.hdr[:2]); err != nil {
				return err
			}
			c.hdrAhead = true
		}
		return c.readWSFrame(f)
	}
	c.putRbuf()
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return err
		}
		return err
	}
	n, err := parseHeader(c.hdr[:], c.srv.cfg.MaxInboundBody, f)
	if err != nil {
		return err
	}
	f.Body = nil
	if n > 0 {
		body := c.getRbuf(n)
		if _, err := io.ReadFull(c.r, body); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		f.Body = body
	}
	return nil
}

// parseHeader checks a goim header and returns the body length.
func parseHeader(h []byte, maxBody int, f *protocol.Frame) (int, error) {
	packLen := int64(int32(binary.BigEndian.Uint32(h[0:])))
	if int16(binary.BigEndian.Uint16(h[4:])) != protocol.HeaderLen {
		return 0, protocol.ErrHeaderLen
	}
	if packLen < protocol.HeaderLen {
		return 0, protocol.ErrPackLen
	}
	n := packLen - protocol.HeaderLen
	if n > int64(maxBody) {
		return 0, protocol.ErrBodyTooLarge
	}
	f.Ver = int16(binary.BigEndian.Uint16(h[6:]))
	f.Op = int32(binary.BigEndian.Uint32(h[8:]))
	f.Seq = int32(binary.BigEndian.Uint32(h[12:]))
	return int(n), nil
}

// readWSFrame returns the next goim frame carried in WebSocket messages.
func (c *conn) readWSFrame(f *protocol.Frame) error {
	for {
		if len(c.pending) > 0 {
			n, err := protocol.ParseFrame(c.pending, f, c.srv.cfg.MaxInboundBody)
			if err != nil {
				return err
			}
			c.pending = c.pending[n:]
			return nil
		}
		c.putRbuf()
		msg, err := c.readWSMessage()
		if err != nil {
			return err
		}
		c.pending = msg
	}
}

// readWSMessage reads one complete data message (text or binary, possibly
// fragmented), answering pings and close frames on the way (RFC 6455).
func (c *conn) readWSMessage() ([]byte, error) {
	limit := protocol.HeaderLen + c.srv.cfg.MaxInboundBody
	var msg []byte
	started := false
	for {
		if c.hdrAhead {
			c.hdrAhead = false // readFrame read the first two bytes
		} else if _, err := io.ReadFull(c.r, c.hdr[:2]); err != nil {
			return nil, err
		}
		b0, b1 := c.hdr[0], c.hdr[1]
		fin, op := b0&0x80 != 0, b0&0x0F
		if b0&0x70 != 0 || b1&0x80 == 0 {
			return nil, fmt.Errorf("%w: reserved bits or unmasked client frame", errWSProtocol)
		}
		n := int64(b1 & 0x7F)
		switch n {
		case 126:
			if _, err := io.ReadFull(c.r, c.hdr[2:4]); err != nil {
				return nil, eofUnexpected(err)
			}
			n = int64(binary.BigEndian.Uint16(c.hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(c.r, c.hdr[2:10]); err != nil {
				return nil, eofUnexpected(err)
			}
			n = int64(binary.BigEndian.Uint64(c.hdr[2:10]))
			if n < 0 {
				// RFC 6455: the top bit must be 0. Read as negative, the
				// length would pass the size checks below (found by
				// FuzzInboundWS: it panicked the node).
				return nil, fmt.Errorf("%w: 64-bit length with the top bit set", errWSProtocol)
			}
		}
		var mask [4]byte
		if _, err := io.ReadFull(c.r, mask[:]); err != nil {
			return nil, eofUnexpected(err)
		}
		if op >= 0x8 { // control frame
			if !fin || n > 125 {
				return nil, fmt.Errorf("%w: bad control frame", errWSProtocol)
			}
			payload := make([]byte, n)
			if _, err := io.ReadFull(c.r, payload); err != nil {
				return nil, eofUnexpected(err)
			}
			ws.Cipher(payload, mask, 0)
			switch op {
			case wsOpPing:
				c.enqueue(outItem{b: append(appendWSHeader(nil, wsOpPong, len(payload)), payload...), kind: itemControl})
			case wsOpPong:
			case wsOpClose:
				code := payload
				if len(code) > 2 {
					code = code[:2]
				}
				c.closeWS(code)
				return nil, errWSClosed
			default:
				return nil, fmt.Errorf("%w: unknown opcode %d", errWSProtocol, op)
			}
			continue
		}
		switch op {
		case wsOpText, wsOpBinary:
			if started {
				return nil, fmt.Errorf("%w: new message inside a fragmented one", errWSProtocol)
			}
			started = true
		case wsOpCont:
			if !started {
				return nil, fmt.Errorf("%w: continuation without a message", errWSProtocol)
			}
		default:
			return nil, fmt.Errorf("%w: unknown opcode %d", errWSProtocol, op)
		}
		if int64(len(msg))+n > int64(limit) {
			return nil, protocol.ErrBodyTooLarge
		}
		if msg == nil {
			msg = c.getRbuf(limit)[:0]
		}
		start := len(msg)
		msg = msg[:start+int(n)]
		if _, err := io.ReadFull(c.r, msg[start:]); err != nil {
			return nil, eofUnexpected(err)
		}
		ws.Cipher(msg[start:], mask, 0)
		if fin {
			return msg, nil
		}
	}
}

// closeWS answers a close frame with one echoing its status code, then
// closes once it is written.
func (c *conn) closeWS(code []byte) {
	frame := append(appendWSHeader(nil, wsOpClose, len(code)), code...)
	c.mu.Lock()
	if c.dead || c.closing {
		c.mu.Unlock()
		return
	}
	c.q = append(c.q, outItem{b: frame, kind: itemControl})
	c.addQueuedLocked(int64(len(frame)))
	c.closing = true
	start := c.claimWriterLocked()
	c.mu.Unlock()
	if start {
		go c.writeFn()
	}
}

// wsCloseGoingAway is the RFC 6455 status of a server going down or
// dropping a client on purpose.
const wsCloseGoingAway = 1001

// wsCloseFrame builds a close frame with a status code and a reason (cut to
// fit a control frame's 125 bytes).
func wsCloseFrame(code uint16, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	payload := append([]byte{byte(code >> 8), byte(code)}, reason...)
	return append(appendWSHeader(nil, wsOpClose, len(payload)), payload...)
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// wsPath is the standalone WebSocket endpoint's path (goim's).
const wsPath = "/sub"

// upgradeRaw performs the WebSocket upgrade on a raw connection
// (ServeWS), collecting the request's headers and query for the
// authenticator.
func (s *Server) upgradeRaw(nc net.Conn) (*handshakeInfo, error) {
	info := &handshakeInfo{header: make(http.Header)}
	_, info.tls = nc.(interface{ Handshake() error })
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			p, q, _ := strings.Cut(string(uri), "?")
			if p != wsPath {
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusNotFound))
			}
			v, err := url.ParseQuery(q)
			if err != nil {
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest))
			}
			info.query = v
			return nil
		},
		OnHeader: func(key, value []byte) error {
			if len(info.header) > 64 {
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusRequestHeaderFieldsTooLarge))
			}
			k := http.CanonicalHeaderKey(string(key))
			if k == "Origin" && !s.originAllowed(string(value)) {
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden))
			}
			info.header.Add(k, string(value))
			return nil
		},
	}
	if _, err := u.Upgrade(nc); err != nil {
		return nil, err
	}
	return info, nil
}

// originAllowed applies the Origin allow-list.
func (s *Server) originAllowed(origin string) bool {
	if len(s.cfg.AllowedOrigins) == 0 || origin == "" {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}
