package cloud_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"
)

// wireCapture is a client of the golden capture: it speaks the wire by hand
// (goim frames over TCP, or goim frames in binary WebSocket messages, read
// with gobwas/ws's frame reader and nothing of this project's) and records
// every unit it sends and receives, one line each, in order:
//
//	-> ...                    a frame the client sent
//	<- frame ...              a goim frame read from TCP
//	<- ws fin=.. op=.. len=.. a WebSocket frame (its goim frames indented below)
//	     inner ...            a frame inside an op 9 body (goim's raw batch)
//	<- closed                 the server ended the connection
//	# ...                     a step of the script
//
// A goim frame is recorded as its header fields as read (packet length,
// header length, ver, op, seq) and its body (see formatBody).
type wireCapture struct {
	t     *testing.T
	nc    net.Conn
	br    *bufio.Reader
	ws    bool
	ver   int16 // the header ver this client sends (1: goim, 2: extensions)
	key   string
	lines []string
}

// dialCapture connects through dialRaw and then reads and writes its
// connection by hand.
func dialCapture(t *testing.T, addr string, isWS bool, ver int16) *wireCapture {
	t.Helper()
	rc := dialRaw(t, addr, isWS)
	return &wireCapture{t: t, nc: rc.nc, br: rc.br, ws: isWS, ver: ver}
}

func (c *wireCapture) note(format string, args ...any) {
	c.lines = append(c.lines, "# "+fmt.Sprintf(format, args...))
}

// send writes one goim frame with the client's ver (a masked binary
// message on WebSocket, as browsers send).
func (c *wireCapture) send(op, seq int32, body string) {
	c.t.Helper()
	b := encodeRaw(c.ver, op, seq, []byte(body))
	c.lines = append(c.lines, "-> "+c.formatFrame(b))
	var err error
	if c.ws {
		err = wsutil.WriteClientBinary(c.nc, b)
	} else {
		_, err = c.nc.Write(b)
	}
	require.NoError(c.t, err)
}

// expect reads transport units until n goim frames (pushes inside op 9
// counted one by one) have arrived, recording each unit.
func (c *wireCapture) expect(n int) {
	c.t.Helper()
	for n > 0 {
		got, err := c.readUnit()
		require.NoError(c.t, err, "capture so far:\n%s", strings.Join(c.lines, "\n"))
		n -= got
	}
	require.Zero(c.t, n, "more frames than expected; capture so far:\n%s", strings.Join(c.lines, "\n"))
}

// expectEnd reads until the server ends the connection, recording what
// comes before. A WebSocket close frame is recorded and ends the reading;
// how a connection ends otherwise (EOF or reset) is normalised to
// "<- closed", as it depends on which side's close the kernel saw first.
func (c *wireCapture) expectEnd() {
	c.t.Helper()
	for {
		_, err := c.readUnit()
		if err == nil {
			continue
		}
		var ne net.Error
		require.False(c.t, errors.As(err, &ne) && ne.Timeout(), "connection not closed; capture so far:\n%s", strings.Join(c.lines, "\n"))
		c.lines = append(c.lines, "<- closed")
		return
	}
}

// readUnit reads one TCP goim frame or one WebSocket frame and reports how
// many goim frames it carried.
func (c *wireCapture) readUnit() (int, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if !c.ws {
		b, err := readGoimFrame(c.br)
		if err != nil {
			return 0, err
		}
		return c.recordFrames("<- frame ", b)
	}
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return 0, err
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, err
	}
	if h.Masked {
		ws.Cipher(payload, h.Mask, 0)
	}
	line := fmt.Sprintf("<- ws fin=%t rsv=%d op=%s masked=%t len=%d", h.Fin, h.Rsv, wsOpName(h.OpCode), h.Masked, h.Length)
	switch h.OpCode {
	case ws.OpBinary, ws.OpText:
		c.lines = append(c.lines, line)
		return c.recordFrames("   frame ", payload)
	case ws.OpClose:
		code, reason := ws.ParseCloseFrameData(payload)
		c.lines = append(c.lines, fmt.Sprintf("%s code=%d reason=%q", line, code, reason))
		return 0, io.EOF
	default:
		c.lines = append(c.lines, fmt.Sprintf("%s payload=%s", line, formatBody(payload)))
		return 0, nil
	}
}

// recordFrames records the goim frames back to back in b, with the inner
// frames of an op 9 indented under it.
func (c *wireCapture) recordFrames(prefix string, b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		f, rest, err := splitGoimFrame(b)
		if err != nil {
			c.lines = append(c.lines, fmt.Sprintf("%sundecodable %x", prefix, b))
			return n, err
		}
		c.learnKey(f)
		c.lines = append(c.lines, prefix+c.formatFrame(f))
		if binary.BigEndian.Uint32(f[8:]) == 9 {
			inner := f[16:]
			for len(inner) > 0 {
				in, r, err := splitGoimFrame(inner)
				if err != nil {
					c.lines = append(c.lines, fmt.Sprintf("     inner undecodable %x", inner))
					return n, err
				}
				c.lines = append(c.lines, "     inner "+c.formatFrame(in))
				inner = r
				n++
			}
		} else {
			n++
		}
		b = rest
	}
	return n, nil
}

// learnKey remembers the connection key the server assigned (the AuthReply
// body's "key"), so that formatFrame can normalise it.
func (c *wireCapture) learnKey(f []byte) {
	if binary.BigEndian.Uint32(f[8:]) != 8 || c.key != "" {
		return
	}
	var r struct {
		Key string `json:"key"`
	}
	if json.Unmarshal(f[16:], &r) == nil {
		c.key = r.Key
	}
}

// formatFrame prints a goim frame's header fields as read and its body;
// an op 9 body is shown as its inner frames (recordFrames checks that
// they fill it exactly).
// Normalised: the connection key the server generated (random hex, always
// 24 characters, so packet lengths stay exact) prints as <key>.
func (c *wireCapture) formatFrame(f []byte) string {
	op := int32(binary.BigEndian.Uint32(f[8:]))
	body := f[16:]
	if c.key != "" {
		body = []byte(strings.ReplaceAll(string(body), c.key, "<key>"))
	}
	shown := formatBody(body)
	if op == 9 {
		shown = "(the inner frames below)"
	}
	return fmt.Sprintf("len=%d hlen=%d ver=%d op=%d seq=%d body=%s",
		binary.BigEndian.Uint32(f[0:]), binary.BigEndian.Uint16(f[4:]), int16(binary.BigEndian.Uint16(f[6:])),
		op, int32(binary.BigEndian.Uint32(f[12:])), shown)
}

// formatBody prints a body quoted when it is short printable text, in hex
// when it is short binary (the heartbeat reply's count), and as its length
// and SHA-256 prefix when long.
func formatBody(b []byte) string {
	printable := true
	for _, x := range b {
		if x < 0x20 || x > 0x7e {
			printable = false
			break
		}
	}
	switch {
	case len(b) > 120:
		sum := sha256.Sum256(b)
		return fmt.Sprintf("<%d bytes sha256:%x>", len(b), sum[:8])
	case printable:
		return fmt.Sprintf("%q", b)
	default:
		return fmt.Sprintf("hex:%x", b)
	}
}

func wsOpName(op ws.OpCode) string {
	switch op {
	case ws.OpContinuation:
		return "cont"
	case ws.OpText:
		return "text"
	case ws.OpBinary:
		return "binary"
	case ws.OpClose:
		return "close"
	case ws.OpPing:
		return "ping"
	case ws.OpPong:
		return "pong"
	}
	return fmt.Sprintf("0x%x", byte(op))
}

// readGoimFrame reads one goim frame from a TCP stream.
func readGoimFrame(r io.Reader) ([]byte, error) {
	var h [16]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n < 16 || n > 1<<20 {
		return nil, fmt.Errorf("bad packet length %d", n)
	}
	b := make([]byte, n)
	copy(b, h[:])
	_, err := io.ReadFull(r, b[16:])
	return b, err
}

// splitGoimFrame cuts the first goim frame off b.
func splitGoimFrame(b []byte) (frame, rest []byte, err error) {
	if len(b) < 16 {
		return nil, nil, errors.New("short frame")
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < 16 || n > len(b) {
		return nil, nil, fmt.Errorf("bad packet length %d of %d bytes", n, len(b))
	}
	return b[:n], b[n:], nil
}
