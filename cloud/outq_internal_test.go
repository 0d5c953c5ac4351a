package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

func newTestQueue(fast bool) (*outq, *atomic.Int64) {
	var shard atomic.Int64
	return &outq{fast: fast, shard: &shard}, &shard
}

func item(n int) outItem { return outItem{b: make([]byte, n)} }

// TestOutqTransitions walks the state machine of outq's doc comment.
func TestOutqTransitions(t *testing.T) {
	q, _ := newTestQueue(true)
	res, start := q.push(item(10), 8, false, nil)
	assert.Equal(t, pushQueued, res)
	assert.Equal(t, qReady, start, "idle -> ready: the pusher hands it to the scheduler")
	_, start = q.push(item(10), 8, false, nil)
	assert.Equal(t, qIdle, start, "already owned: nothing to start")

	var spare []outItem
	batch, ok, _ := q.take(&spare, maxWriteBytes)
	require.True(t, ok)
	assert.Len(t, batch, 2)
	assert.Equal(t, qWriting, q.state, "ready -> writing")

	_, start = q.push(item(5), 8, false, nil)
	assert.Equal(t, qIdle, start, "a push during a write starts nothing")
	assert.Equal(t, qReady, q.settle(0, 0), "writing -> ready: more queued meanwhile")
	batch, ok, _ = q.take(&spare, maxWriteBytes)
	require.True(t, ok)
	assert.Len(t, batch, 1)
	assert.Equal(t, qIdle, q.settle(0, 0), "writing -> idle: queue empty")

	_, start = q.push(item(5), 8, false, nil)
	require.Equal(t, qReady, start)
	q.take(&spare, maxWriteBytes)
	assert.Equal(t, qBlocking, q.settle(0, 3), "writing -> blocking: the socket took only part")
	_, start = q.push(item(5), 8, false, nil)
	assert.Equal(t, qIdle, start)
	assert.Equal(t, qBlocking, q.settle(3, 0), "blocking goes on while more is queued")
	_, ok, _ = q.take(&spare, maxWriteBytes)
	require.True(t, ok)
	assert.Equal(t, qBlocking, q.state, "take leaves a blocking owner blocking")
	assert.Equal(t, qIdle, q.settle(0, 0), "blocking -> idle: queue empty")
	_, ok, _ = q.take(&spare, maxWriteBytes)
	assert.False(t, ok, "take on an empty queue releases")

	slow, _ := newTestQueue(false)
	_, start = slow.push(item(1), 8, false, nil)
	assert.Equal(t, qBlocking, start, "idle -> blocking without a non-blocking path")
}

// TestOutqPause: a paused queue takes pushes and closes but is not claimed
// until resume, which starts an owner only when there is work.
func TestOutqPause(t *testing.T) {
	q, _ := newTestQueue(true)
	q.pause()
	assert.Equal(t, qIdle, q.resume(), "nothing queued: nothing to start")

	q.pause()
	res, start := q.push(item(10), 8, false, nil)
	assert.Equal(t, pushQueued, res)
	assert.Equal(t, qIdle, start, "paused: not claimed")
	assert.Equal(t, qReady, q.resume(), "resume hands the queue to the scheduler")

	c, _ := newTestQueue(true)
	c.pause()
	ok, start := c.close(false, nil)
	require.True(t, ok)
	assert.Equal(t, qIdle, start, "paused: a close waits for resume too")
	assert.Equal(t, qReady, c.resume(), "a pending close needs an owner to close the socket")
}

// TestOutqLifecycle: closing flushes what was queued and then closes;
// a close replaces the queue; dead drops everything and refuses pushes.
func TestOutqLifecycle(t *testing.T) {
	q, shard := newTestQueue(true)
	q.push(item(100), 8, false, nil)
	q.push(item(100), 8, false, nil)
	armed := false
	ok, start := q.close(true, func() { armed = true }, item(7))
	require.True(t, ok)
	assert.True(t, armed, "the close deadline is armed under the lock")
	assert.Equal(t, qIdle, start, "already claimed by the pushes")
	assert.EqualValues(t, 7, shard.Load(), "replace drops what was queued")
	ok, _ = q.close(false, nil, item(1))
	assert.False(t, ok, "closing twice queues nothing")
	res, _ := q.push(item(1), 8, false, nil)
	assert.Equal(t, pushRefused, res, "a closing queue refuses pushes")

	var spare []outItem
	batch, ok, closeNow := q.take(&spare, maxWriteBytes)
	require.True(t, ok)
	require.False(t, closeNow)
	assert.Len(t, batch, 1)
	assert.Equal(t, qReady, q.settle(0, 0), "a closing queue is not released by settle")
	_, ok, closeNow = q.take(&spare, maxWriteBytes)
	assert.False(t, ok)
	assert.True(t, closeNow, "flushed: the owner closes the socket")
	assert.True(t, q.dead)
	assert.Zero(t, shard.Load())

	// Dead while writing: the next take drops the rest.
	q, shard = newTestQueue(true)
	q.push(item(100), 8, false, nil)
	batch, _, _ = q.take(&spare, maxWriteBytes)
	require.Len(t, batch, 1)
	q.push(item(50), 8, false, nil)
	q.kill()
	res, _ = q.push(item(1), 8, false, nil)
	assert.Equal(t, pushRefused, res)
	assert.Equal(t, qReady, q.settle(0, 0))
	_, ok, closeNow = q.take(&spare, maxWriteBytes)
	assert.False(t, ok)
	assert.False(t, closeNow, "dead: the socket is closed already")
	assert.Equal(t, qIdle, q.state)
	assert.Zero(t, shard.Load(), "a dead queue's bytes leave the backlog")

	// The reader ends while the owner flushes a final frame: the owner
	// closes; otherwise the reader does.
	q, _ = newTestQueue(true)
	q.close(false, nil, item(3))
	flushing := false
	assert.False(t, q.finish(func() { flushing = true }))
	assert.True(t, flushing)
	q, _ = newTestQueue(true)
	assert.True(t, q.finish(func() { t.Error("nothing to flush") }))
	assert.True(t, q.dead)
}

// TestOutqAccounting: the backlog counts each queue's bytes, items and
// held, up to backlogConnCap, and returns to zero when all is written.
func TestOutqAccounting(t *testing.T) {
	q, shard := newTestQueue(true)
	for i := 0; i < 3; i++ {
		q.push(item(40<<10), 8, false, nil)
	}
	assert.EqualValues(t, 120<<10, q.bytes)
	assert.EqualValues(t, backlogConnCap, shard.Load(), "capped share")

	var spare []outItem
	batch, _, _ := q.take(&spare, maxWriteBytes)
	require.Len(t, batch, 1, "one write takes at most maxWriteBytes (at least one item)")
	assert.EqualValues(t, 80<<10, q.bytes, "taken items leave the count")
	q.settle(0, 1000) // the socket took all but 1000 bytes
	assert.EqualValues(t, 80<<10+1000, q.bytes, "what a short write left counts until written")
	assert.EqualValues(t, backlogConnCap, shard.Load(), "capped share")
	q.settle(1000, 0)
	q.take(&spare, maxWriteBytes)
	assert.EqualValues(t, 40<<10, shard.Load(), "under the cap the share is the bytes")
	q.settle(0, 0)
	q.take(&spare, maxWriteBytes)
	assert.Equal(t, qIdle, q.settle(0, 0))
	assert.Zero(t, shard.Load())

	// DropOldest: the dropped push leaves the count, a reply stays.
	q, shard = newTestQueue(true)
	q.push(outItem{b: make([]byte, 5), kind: itemFrame}, 2, true, nil)
	q.push(item(10), 2, true, nil)
	res, _ := q.push(item(20), 2, true, nil)
	assert.Equal(t, pushDropped, res)
	assert.EqualValues(t, 25, shard.Load())
	assert.Equal(t, itemFrame, q.items[0].kind)
	res, _ = q.push(item(1), 2, false, nil)
	assert.Equal(t, pushFull, res)

	// A fan-out counts the change itself.
	var delta int64
	q, shard = newTestQueue(true)
	q.push(item(10), 8, false, &delta)
	assert.EqualValues(t, 10, delta)
	assert.Zero(t, shard.Load())
}

// partialConn is a socket with a non-blocking path that takes at most
// budget bytes per call and, every other call, nothing (EAGAIN), so writes
// keep moving between the scheduler's writers and the blocking path.
// Everything either path takes lands in one stream.
type partialConn struct {
	discardConn
	budget int
	mu     sync.Mutex
	calls  int
	stream bytes.Buffer
	// blocking counts the writes that went through net.Conn.Write.
	blocking atomic.Int64
}

func (p *partialConn) tryWrite(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.calls%2 == 0 {
		return 0, nil
	}
	n := min(len(b), p.budget)
	p.stream.Write(b[:n])
	return n, nil
}

func (p *partialConn) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocking.Add(1)
	p.stream.Write(b)
	return len(b), nil
}

// TestPartialWrites: a socket that takes part of a write, or nothing,
// still receives every frame once and in order; the rest of a short
// write goes through the blocking path, and the claims and the backlog
// return to zero.
func TestPartialWrites(t *testing.T) {
	for _, ws := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "ws"}[ws], func(t *testing.T) {
			s, err := New(Config{Authenticator: DevAuthenticator(), Buckets: 1})
			require.NoError(t, err)
			pc := &partialConn{budget: 50}
			c := newConn(s, pc, ws)
			c.setSockWriter(pc)
			c.key, c.room = "k", "live://partial"
			acc := []int32{}
			c.accepts.Store(&acc)
			c.b = s.bs.of(c.key)
			c.b.put(c, outItem{b: []byte{}, kind: itemPush})
			var want bytes.Buffer
			for i := 0; i < 200; i++ {
				body := fmt.Sprintf("push %03d", i)
				require.NoError(t, s.Deliver(context.Background(), []*imcloud.Message{{
					ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: c.room, Op: 1000, Body: []byte(body)}}))
				want.WriteString(body)
				if i%7 == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			require.Eventually(t, func() bool { return s.Stats().Writers == 0 }, 5*time.Second, time.Millisecond)
			assert.Zero(t, s.Stats().QueuedBytes, "the backlog count drifted")
			assert.Positive(t, pc.blocking.Load(), "no short write reached the blocking path")

			var got bytes.Buffer
			pc.mu.Lock()
			stream := pc.stream.Bytes()
			pc.mu.Unlock()
			if ws {
				stream = wsPayloads(t, stream)
			}
			var f protocol.Frame
			for len(stream) > 0 {
				n, err := protocol.ParseFrame(stream, &f, 1<<20)
				require.NoError(t, err)
				stream = stream[n:]
				if f.Op == protocol.OpRaw {
					it := protocol.NewBatchIter(f.Body)
					var in protocol.Frame
					for it.Next(&in) {
						got.Write(in.Body)
					}
					continue
				}
				got.Write(f.Body)
			}
			assert.Equal(t, want.String(), got.String())
		})
	}
}

// wsPayloads concatenates the payloads of the unmasked server frames in b.
func wsPayloads(t *testing.T, b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		require.GreaterOrEqual(t, len(b), 2)
		n, hl := int(b[1]&0x7F), 2
		switch n {
		case 126:
			n, hl = int(b[2])<<8|int(b[3]), 4
		case 127:
			t.Fatal("unexpected 64-bit frame length")
		}
		out = append(out, b[hl:hl+n]...)
		b = b[hl+n:]
	}
	return out
}

// TestCloseWhileWriting: a disconnect while the connection's write is
// blocked on its socket replaces what is queued by op 6, which goes out
// once the socket moves, and then the socket closes; the claim and the
// backlog return to zero.
func TestCloseWhileWriting(t *testing.T) {
	s, err := New(Config{Authenticator: DevAuthenticator(), Buckets: 1})
	require.NoError(t, err)
	release := make(chan struct{})
	bc := &gateConn{blockConn: blockConn{release: release, wrote: make(chan int, 16)}, entered: make(chan struct{}, 16)}
	bc.block.Store(true)
	c := newConn(s, bc, false)
	c.ext = true
	c.key = "k"
	acc := []int32{}
	c.accepts.Store(&acc)
	c.b = s.bs.of(c.key)
	c.b.put(c, outItem{b: make([]byte, 100), kind: itemFrame}) // its write blocks
	<-bc.entered
	for i := 0; i < 5; i++ {
		require.True(t, c.enqueue(item(1000)))
	}
	assert.EqualValues(t, 5000, s.Stats().QueuedBytes, "queued, not the write in progress")

	c.disconnect("bye", time.Second)
	assert.False(t, c.enqueue(item(1)), "a closing connection refuses pushes")
	op6 := protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerExtensions, Op: protocol.OpDisconnect,
		Body: mustJSON(t, map[string]any{"reason": "bye", "reconnect_ms": 1000})})
	assert.EqualValues(t, len(op6), s.Stats().QueuedBytes, "the queue was replaced by op 6")

	close(release)
	assert.Equal(t, 100, <-bc.wrote)
	assert.Equal(t, len(op6), <-bc.wrote, "op 6 follows the write in progress")
	require.Eventually(t, func() bool { return s.Stats().Writers == 0 }, 5*time.Second, time.Millisecond)
	assert.Zero(t, s.Stats().QueuedBytes)
	c.out.mu.Lock()
	assert.True(t, c.out.dead, "the socket was closed once op 6 was written")
	c.out.mu.Unlock()
}

// gateConn is a blockConn that signals each write it starts.
type gateConn struct {
	blockConn
	entered chan struct{}
}

func (g *gateConn) Write(p []byte) (int, error) {
	g.entered <- struct{}{}
	return g.blockConn.Write(p)
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
