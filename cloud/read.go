package cloud

import (
	"encoding/binary"
	"errors"
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
// fragmented) into a pooled buffer, answering pings and close frames on
// the way (RFC 6455). gobwas/ws parses and checks each frame header
// (ws.ReadHeaderBuffer, ws.CheckHeader: masking, reserved bits and
// opcodes, control frame rules, fragment order, the 64-bit length's top
// bit) and unmasks payloads (ws.Cipher). Kept here, because wsutil's
// Reader does not fit: reassembly into the pooled read buffer under the
// goim size limit without allocating (wsutil.Reader is a per-connection
// struct with its own buffering), and control replies that go through the
// connection's outbound queue rather than straight to the socket.
func (c *conn) readWSMessage() ([]byte, error) {
	limit := int64(protocol.HeaderLen + c.srv.cfg.MaxInboundBody)
	var msg []byte
	state := ws.StateServerSide
	for {
		h, err := c.readWSHeader()
		if err != nil {
			return nil, err
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return nil, fmt.Errorf("%w: %w", errWSProtocol, err)
		}
		if h.OpCode.IsControl() {
			if err := c.readWSControl(h); err != nil {
				return nil, err
			}
			continue
		}
		if h.Length > limit-int64(len(msg)) {
			return nil, protocol.ErrBodyTooLarge
		}
		if msg == nil {
			msg = c.getRbuf(int(limit))[:0]
		}
		start := len(msg)
		msg = msg[:start+int(h.Length)]
		if _, err := io.ReadFull(c.r, msg[start:]); err != nil {
			return nil, eofUnexpected(err)
		}
		ws.Cipher(msg[start:], h.Mask, 0)
		if h.Fin {
			return msg, nil
		}
		state = state.Set(ws.StateFragmented)
	}
}

// readWSHeader reads the next frame header with ws.ReadHeaderBuffer. Its
// first two bytes may already sit in c.hdr[:2] (hdrAhead: readFrame waited
// for them); otherwise they are read here first, so that EOF on a frame
// boundary stays a clean EOF and EOF inside a header is unexpected.
func (c *conn) readWSHeader() (ws.Header, error) {
	if !c.hdrAhead {
		if _, err := io.ReadFull(c.r, c.hdr[:2]); err != nil {
			return ws.Header{}, err
		}
		c.hdrAhead = true
	}
	// The library reads into c.hdr[2:] (it needs 12 bytes): the replay
	// source c.hdr[:2] is not overwritten, and nothing is allocated.
	h, err := ws.ReadHeaderBuffer((*wsHeaderReader)(c), c.hdr[2:])
	c.hdrAhead = false
	switch {
	case errors.Is(err, ws.ErrHeaderLengthMSB), errors.Is(err, ws.ErrHeaderLengthUnexpected):
		// RFC 6455: the 64-bit length's top bit must be 0 (read as
		// negative, it once passed the size checks and panicked the node).
		return h, fmt.Errorf("%w: %w", errWSProtocol, err)
	case err != nil:
		return h, eofUnexpected(err)
	}
	return h, nil
}

// wsHeaderReader is a conn seen as the reader ws.ReadHeaderBuffer reads a
// header from: the first two bytes replayed from c.hdr[:2] (its first
// read asks for exactly those two), the rest from c.r. A pointer
// conversion, so passing it as an io.Reader allocates nothing.
type wsHeaderReader conn

func (r *wsHeaderReader) Read(p []byte) (int, error) {
	if r.hdrAhead {
		r.hdrAhead = false
		return copy(p, r.hdr[:2]), nil
	}
	return r.r.Read(p)
}

// readWSControl reads a control frame's payload (at most 125 bytes, as
// ws.CheckHeader ensured) and acts on it: a ping is answered with a pong
// carrying the same payload, a close ends the connection after echoing
// the status code, a pong is ignored.
func (c *conn) readWSControl(h ws.Header) error {
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(c.r, payload); err != nil {
		return eofUnexpected(err)
	}
	ws.Cipher(payload, h.Mask, 0)
	switch h.OpCode {
	case ws.OpPing:
		c.enqueue(outItem{b: append(appendWSFrameHeader(nil, ws.OpPong, len(payload)), payload...), kind: itemControl})
	case ws.OpClose:
		code := payload
		if len(code) > 2 {
			code = code[:2]
		}
		c.closeWS(code)
		return errWSClosed
	}
	return nil
}

// closeWS answers a close frame with one echoing its status code, then
// closes once it is written.
func (c *conn) closeWS(code []byte) {
	frame := append(appendWSFrameHeader(nil, ws.OpClose, len(code)), code...)
	c.closeWith(false, outItem{b: frame, kind: itemControl})
}

// wsCloseGoingAway is the RFC 6455 status of a server going down or
// dropping a client on purpose.
const wsCloseGoingAway = ws.StatusGoingAway

// wsCloseFrame builds a close frame with a status code and a reason (cut to
// fit a control frame's 125 bytes).
func wsCloseFrame(code ws.StatusCode, reason string) []byte {
	if len(reason) > ws.MaxControlFramePayloadSize-2 {
		reason = reason[:ws.MaxControlFramePayloadSize-2]
	}
	payload := ws.NewCloseFrameBody(code, reason)
	return append(appendWSFrameHeader(nil, ws.OpClose, len(payload)), payload...)
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// wsPath is the standalone WebSocket endpoint's path (goim's).
const wsPath = "/sub"

// maxUpgradeBytes caps the whole WebSocket upgrade request (request line
// and headers) on ServeWS, as net/http's DefaultMaxHeaderBytes caps
// ServeHTTP's: the upgrade reader otherwise grows a line to whatever the
// client sends before its newline.
const maxUpgradeBytes = 16 << 10

// errUpgradeTooLarge ends an upgrade request longer than maxUpgradeBytes.
var errUpgradeTooLarge = errors.New("cloud: websocket upgrade request too large")

// capReader returns errUpgradeTooLarge once n bytes have been read.
type capReader struct {
	r io.Reader
	n int
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errUpgradeTooLarge
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// upgradeRaw performs the WebSocket upgrade on a raw connection
// (ServeWS), collecting the request's headers and query for the
// authenticator. A request over maxUpgradeBytes is answered 431 (400 when
// the request line alone is over it) and refused.
func (s *Server) upgradeRaw(nc net.Conn) (*handshakeInfo, error) {
	info := &handshakeInfo{header: make(http.Header)}
	_, info.tls = nc.(interface{ Handshake() error })
	lineRead := false
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			lineRead = true
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
	rw := struct {
		io.Reader
		io.Writer
	}{&capReader{r: nc, n: maxUpgradeBytes}, nc}
	if _, err := u.Upgrade(rw); err != nil {
		if errors.Is(err, errUpgradeTooLarge) {
			status := http.StatusRequestHeaderFieldsTooLarge
			if !lineRead {
				status = http.StatusBadRequest
			}
			_, _ = fmt.Fprintf(nc, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", status, http.StatusText(status))
		}
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
