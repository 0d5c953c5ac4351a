package cloud

import (
	"bytes"
	"testing"

	"github.com/gobwas/ws"

	"github.com/imcloud/imcloud/protocol"
)

// loopReader replays data forever, as a client that keeps sending the
// same stream of frames, counting the reads (each one a read(2) on a
// socket).
type loopReader struct {
	data  []byte
	off   int
	reads int
}

func (l *loopReader) Read(p []byte) (int, error) {
	l.reads++
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

// BenchmarkReadFrame reads goim frames through an authenticated
// connection's frame reader from memory (no socket): the per-frame cost
// and allocations of the read path, and the reads it makes per frame
// (system calls, on a socket). ws-fragmented sends each goim frame as
// two WebSocket fragments with a 16-bit length on the first.
func BenchmarkReadFrame(b *testing.B) {
	hb := protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerGoim, Op: protocol.OpHeartbeat, Seq: 1})
	msg := protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerGoim, Op: protocol.OpSendMsg, Seq: 2, Body: bytes.Repeat([]byte("m"), 200)})
	for _, bc := range []struct {
		name   string
		ws     bool
		stream []byte
	}{
		{"tcp", false, append(append([]byte(nil), hb...), msg...)},
		{"ws", true, append(benchWSFrame(true, ws.OpBinary, hb), benchWSFrame(true, ws.OpBinary, msg)...)},
		{"ws-fragmented", true, append(benchWSFrame(false, ws.OpBinary, msg[:150]), benchWSFrame(true, ws.OpContinuation, msg[150:])...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(Config{Authenticator: DevAuthenticator()})
			if err != nil {
				b.Fatal(err)
			}
			c := newConn(s, &discardConn{}, bc.ws)
			lr := &loopReader{data: bc.stream}
			c.r = lr
			var f protocol.Frame
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.readFrame(&f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(lr.reads)/float64(b.N), "reads/frame")
		})
	}
}

// benchWSFrame is a masked client frame carrying payload.
func benchWSFrame(fin bool, op ws.OpCode, payload []byte) []byte {
	fr := ws.MaskFrameInPlace(ws.NewFrame(op, fin, append([]byte(nil), payload...)))
	var buf bytes.Buffer
	if err := ws.WriteFrame(&buf, fr); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
