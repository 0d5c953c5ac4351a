package cloud

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
)

// discardConn is a socket that accepts every write at once, so a benchmark
// measures the node's own work (lookup, fan-out into queues, writers
// assembling writes) without the kernel.
type discardConn struct {
	bytes atomic.Int64
}

func (d *discardConn) Read([]byte) (int, error)         { select {} }
func (d *discardConn) tryWrite(b []byte) (int, error)   { return d.Write(b) }
func (d *discardConn) Write(b []byte) (int, error)      { d.bytes.Add(int64(len(b))); return len(b), nil }
func (d *discardConn) Close() error                     { return nil }
func (d *discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (d *discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (d *discardConn) SetDeadline(time.Time) error      { return nil }
func (d *discardConn) SetReadDeadline(time.Time) error  { return nil }
func (d *discardConn) SetWriteDeadline(time.Time) error { return nil }

// benchNode builds a server with n registered connections in room, without
// sockets or reader goroutines.
func benchNode(b *testing.B, n int, room string, ws bool) (*Server, *discardConn) {
	b.Helper()
	s, err := New(Config{Authenticator: DevAuthenticator()})
	if err != nil {
		b.Fatal(err)
	}
	dc := &discardConn{}
	for i := 0; i < n; i++ {
		c := newConn(s, dc, ws)
		c.setSockWriter(dc) // written by the scheduler's writers, like a socket on Linux
		c.mid, c.key, c.room = int64(i), fmt.Sprintf("key-%d", i), room
		acc := []int32{1000}
		c.accepts.Store(&acc)
		c.gen = s.gen.Add(1)
		c.b = s.bs.of(c.key)
		c.b.put(c, outItem{b: []byte{}, kind: itemPush})
		s.stats.sessions.Add(1)
	}
	waitWriters(s)
	return s, dc
}

func waitWriters(s *Server) {
	for s.writerCount() > 0 {
		runtime.Gosched()
	}
}

// BenchmarkRoomFanout: one room push to a room of 10,000 local
// connections. ns/op is the time until the push sits on every queue
// (writers then drain outside the timer); deliveries/s follows from it.
func BenchmarkRoomFanout(b *testing.B) {
	for _, transport := range []string{"tcp", "ws"} {
		b.Run(transport, func(b *testing.B) {
			const N = 10000
			s, _ := benchNode(b, N, "live://bench", transport == "ws")
			msg := &imcloud.Message{Kind: imcloud.KindRoom, Room: "live://bench", Op: 1000, Body: make([]byte, 64)}
			benchInQueues(b, s, msg, N)
		})
	}
}

// BenchmarkRoomFanoutRecover: BenchmarkRoomFanout's push carrying a
// stream (history on), to a room where every other connection is a
// recover connection (op 24) and the rest get the plain frame.
func BenchmarkRoomFanoutRecover(b *testing.B) {
	const N = 10000
	s, _ := benchNode(b, N, "live://bench", false)
	for _, bk := range s.bs.bs {
		for i, c := range bk.all.conns {
			c.rec = i%2 == 0
		}
	}
	msg := &imcloud.Message{Kind: imcloud.KindRoom, Room: "live://bench", Op: 1000, Body: make([]byte, 64),
		Stream: imcloud.RoomStream("live://bench"), Epoch: "0123456789abcdef", Offset: 1 << 20}
	benchInQueues(b, s, msg, N)
}

// BenchmarkBroadcast: an unpaced broadcast to all 10,000 connections
// (op filter applied).
func BenchmarkBroadcast(b *testing.B) {
	const N = 10000
	s, _ := benchNode(b, N, "", false)
	msg := &imcloud.Message{Kind: imcloud.KindBroadcast, Op: 1000, Body: make([]byte, 64)}
	benchInQueues(b, s, msg, N)
}

// benchInQueues delivers msg b.N times and times each Deliver until the
// push sits on every receiver's queue; the writers drain outside the
// timer. It reports deliveries/s for n receivers.
func benchInQueues(b *testing.B, s *Server, msg *imcloud.Message, n int) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	var inQueues time.Duration
	for i := 0; i < b.N; i++ {
		msg.ID = imcloud.NewMessageID()
		start := time.Now()
		if err := s.Deliver(ctx, []*imcloud.Message{msg}); err != nil {
			b.Fatal(err)
		}
		inQueues += time.Since(start)
		b.StopTimer()
		waitWriters(s)
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/inQueues.Seconds(), "deliveries/s")
}

// BenchmarkRoomFanoutWritten includes the writers: each iteration waits
// until every connection's queue was written (to a discarding socket).
func BenchmarkRoomFanoutWritten(b *testing.B) {
	const N = 10000
	s, _ := benchNode(b, N, "live://bench", false)
	msg := &imcloud.Message{Kind: imcloud.KindRoom, Room: "live://bench", Op: 1000, Body: make([]byte, 64)}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msg.ID = imcloud.NewMessageID()
		if err := s.Deliver(ctx, []*imcloud.Message{msg}); err != nil {
			b.Fatal(err)
		}
		waitWriters(s)
	}
	b.ReportMetric(float64(N)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}
