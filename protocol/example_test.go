package protocol_test

import (
	"bufio"
	"bytes"
	"fmt"

	"github.com/imcloud/imcloud/protocol"
)

// Encode a push frame into a reused buffer and decode it again.
func ExampleAppendFrame() {
	var buf []byte // keep it across frames: once grown, encoding allocates nothing
	buf = protocol.AppendFrame(buf[:0], &protocol.Frame{
		Ver:  protocol.VerGoim,
		Op:   1000,
		Body: []byte("hi"),
	})
	fmt.Printf("% x\n", buf)

	var f protocol.Frame
	n, err := protocol.ParseFrame(buf, &f, protocol.MaxInboundBody)
	fmt.Println(n, err, f.Op, string(f.Body))
	// Output:
	// 00 00 00 12 00 10 00 01 00 00 03 e8 00 00 00 00 68 69
	// 18 <nil> 1000 hi
}

// Write frames to a buffered writer and read them back, as a connection does.
func ExampleReadFrame() {
	var conn bytes.Buffer
	w := bufio.NewWriter(&conn)
	_ = protocol.WriteFrame(w, &protocol.Frame{Ver: 1, Op: protocol.OpHeartbeat, Seq: 2})
	_ = protocol.WriteFrame(w, &protocol.Frame{Ver: 1, Op: protocol.OpHeartbeatReply, Seq: 2,
		Body: protocol.AppendHeartbeatBody(nil, 42)})
	_ = w.Flush()

	r := bufio.NewReader(&conn)
	var f protocol.Frame // reused: its body buffer is kept across reads
	for protocol.ReadFrame(r, &f, protocol.MaxInboundBody) == nil {
		if f.Op == protocol.OpHeartbeatReply {
			online, _ := protocol.HeartbeatOnline(f.Body)
			fmt.Println("heartbeat reply, online", online)
		} else {
			fmt.Println("op", f.Op, "seq", f.Seq)
		}
	}
	// Output:
	// op 2 seq 2
	// heartbeat reply, online 42
}

// Build an op 9 batch of pushes and iterate the frames inside it.
func ExampleBatch() {
	var b protocol.Batch
	b.Reset()
	b.Append(&protocol.Frame{Ver: protocol.VerGoim, Op: 1000, Body: []byte("first")})
	room := protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerGoim, Op: 1001, Body: []byte("room push")})
	b.AppendEncoded(room) // encoded once, shared by every receiver
	wire := b.Bytes()
	fmt.Println("frames", b.Count(), "bytes", len(wire))

	var outer protocol.Frame
	_, _ = protocol.ParseFrame(wire, &outer, 0)
	it := protocol.NewBatchIter(outer.Body)
	var inner protocol.Frame
	for it.Next(&inner) {
		fmt.Println(inner.Op, string(inner.Body))
	}
	fmt.Println("err", it.Err())
	// Output:
	// frames 2 bytes 62
	// 1000 first
	// 1001 room push
	// err <nil>
}
