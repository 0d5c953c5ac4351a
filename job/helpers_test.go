package job

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/link"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/protocol"
	"github.com/stretchr/testify/require"
)

// testNode is a minimal link server built on internal/link and protocol,
// standing in for a cloud node: it checks the hello, accepts every deliver
// request in order and records the messages.
type testNode struct {
	id     string
	secret string
	addr   string

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]bool
	got      []*imcloud.Message
	requests int
	hellos   int
	reject   string        // non-empty: ack every request with this error
	silent   bool          // never ack
	ackDelay time.Duration // wait before each ack
	discard  bool          // count what is accepted, decode and keep none of it
	major    byte          // non-zero: the newest message major it reads (an older node)
	accepted int           // messages accepted
	bytes    int           // link bytes of the requests accepted, headers included
	changed  chan struct{}
}

func startTestNode(t testing.TB, id, secret string) *testNode {
	t.Helper()
	n := &testNode{id: id, secret: secret, conns: map[net.Conn]bool{}, changed: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n.addr = ln.Addr().String()
	n.serve(ln)
	t.Cleanup(n.stop)
	return n
}

func (n *testNode) node() imcloud.Node { return imcloud.Node{ID: n.id, LinkAddr: n.addr} }

func (n *testNode) serve(ln net.Listener) {
	n.mu.Lock()
	n.ln = ln
	n.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.mu.Lock()
			n.conns[c] = true
			n.mu.Unlock()
			go n.handle(c)
		}
	}()
}

// stop closes the listener and every connection (the node goes down).
func (n *testNode) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ln != nil {
		n.ln.Close()
		n.ln = nil
	}
	for c := range n.conns {
		c.Close()
	}
	n.conns = map[net.Conn]bool{}
}

// restart listens again on the same address.
func (n *testNode) restart(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", n.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err)
	n.serve(ln)
}

func (n *testNode) handle(c net.Conn) {
	defer func() {
		c.Close()
		n.mu.Lock()
		delete(n.conns, c)
		n.mu.Unlock()
	}()
	br := bufio.NewReader(c)
	if _, err := (link.Accepter{Secret: n.secret, Node: n.id}).Accept(br, c); err != nil {
		return
	}
	var f protocol.Frame
	n.mu.Lock()
	n.hellos++
	n.mu.Unlock()
	for {
		if err := protocol.ReadFrame(br, &f, link.MaxFrameBody); err != nil {
			return
		}
		if f.Op != link.OpDeliver {
			return
		}
		n.mu.Lock()
		discard, major := n.discard, n.major
		n.mu.Unlock()
		var msgs []*imcloud.Message
		count := 0
		err := link.SplitMessages(f.Body, func(enc []byte) error {
			if major > 0 && enc[0] > major { // as an older node's decoding fails
				return fmt.Errorf("%w: major %d, this reader knows %d", imcloud.ErrNewerVersion, enc[0], major)
			}
			if count++; discard {
				return nil
			}
			m := new(imcloud.Message)
			if err := m.UnmarshalBinary(enc); err != nil {
				return err
			}
			msgs = append(msgs, m)
			return nil
		})
		n.mu.Lock()
		reject, silent, delay := n.reject, n.silent, n.ackDelay
		var ackBody []byte
		switch {
		case err != nil:
			ackBody = []byte(err.Error())
		case reject != "":
			ackBody = []byte(reject)
		case !silent:
			n.got = append(n.got, msgs...)
			n.accepted += count
			n.bytes += protocol.HeaderLen + len(f.Body)
			n.requests++
			close(n.changed)
			n.changed = make(chan struct{})
		}
		n.mu.Unlock()
		if silent {
			continue
		}
		if delay > 0 {
			time.Sleep(delay)
		}
		if _, err := c.Write(protocol.AppendFrame(nil, &protocol.Frame{Ver: 1, Op: link.OpAck, Seq: f.Seq, Body: ackBody})); err != nil {
			return
		}
	}
}

func (n *testNode) set(fn func(n *testNode)) {
	n.mu.Lock()
	fn(n)
	n.mu.Unlock()
}

func (n *testNode) messages() []*imcloud.Message {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*imcloud.Message(nil), n.got...)
}

// waitCount waits until the node accepted at least count messages.
func (n *testNode) waitCount(t *testing.T, count int, timeout time.Duration) []*imcloud.Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		n.mu.Lock()
		got, ch := len(n.got), n.changed
		n.mu.Unlock()
		if got >= count {
			return n.messages()
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("node %s: %d messages after %v, want %d", n.id, got, timeout, count)
		}
	}
}

// memDir is a NodeDirectory the test edits.
type memDir struct {
	mu    sync.Mutex
	nodes map[string]imcloud.Node
	err   error
	calls int
}

func newMemDir(nodes ...imcloud.Node) *memDir {
	d := &memDir{nodes: map[string]imcloud.Node{}}
	for _, n := range nodes {
		d.nodes[n.ID] = n
	}
	return d
}

func (d *memDir) Nodes(ctx context.Context) ([]imcloud.Node, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.err != nil {
		return nil, d.err
	}
	out := make([]imcloud.Node, 0, len(d.nodes))
	for _, n := range d.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].ID < out[k].ID })
	return out, nil
}

func (d *memDir) put(n imcloud.Node) { d.mu.Lock(); d.nodes[n.ID] = n; d.mu.Unlock() }
func (d *memDir) remove(id string)   { d.mu.Lock(); delete(d.nodes, id); d.mu.Unlock() }

// memQueue is logic's memory queue, the Source most tests run the job on,
// with the tests' shorthands.
type memQueue struct {
	*logic.MemoryQueue
	t testing.TB
}

func newMemQueue(t testing.TB, partitions int) memQueue {
	return memQueue{logic.NewMemoryQueue(logic.MemoryQueueConfig{Partitions: partitions}), t}
}

func (q memQueue) publish(msgs ...*imcloud.Message) {
	q.t.Helper()
	require.NoError(q.t, q.Publish(context.Background(), msgs))
}

// allCommitted reports whether every published record is committed.
func (q memQueue) allCommitted() bool { return q.Len() == 0 }

// rawRecords adds to the memory queue what it cannot hold: records whose
// bytes are not a message that decodes (a broken producer, a newer
// version). publishRaw queues a placeholder message, and Receive hands
// out the raw bytes in its place, at the placeholder's partition and
// offset, so offsets and commits are the queue's own.
type rawRecords struct {
	memQueue
	mu  sync.Mutex
	raw map[string][]byte // by placeholder partition key
}

func newRawRecords(q memQueue) *rawRecords {
	return &rawRecords{memQueue: q, raw: map[string][]byte{}}
}

// publishRaw queues value as one record (the queue's partition for its
// placeholder: tests that use it have one partition).
func (q *rawRecords) publishRaw(value []byte) {
	q.t.Helper()
	q.mu.Lock()
	node := fmt.Sprint("raw-", len(q.raw))
	q.raw[node] = value // a keys message's partition key is its node
	q.mu.Unlock()
	q.publish(keysMsg(node, "placeholder"))
}

func (q *rawRecords) Receive(ctx context.Context) (imcloud.Record, error) {
	rec, err := q.memQueue.Receive(ctx)
	if err == nil {
		q.mu.Lock()
		if v, ok := q.raw[string(rec.Key)]; ok {
			rec.Value = v
		}
		q.mu.Unlock()
	}
	return rec, err
}

func keysMsg(node string, body string) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: 1000, Node: node,
		Keys: []string{"k"}, Body: []byte(body), Accepted: time.Now()}
}

func roomMsg(room string, body string) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Op: 1000, Room: room,
		Body: []byte(body), Accepted: time.Now()}
}

func bodies(msgs []*imcloud.Message, filter func(*imcloud.Message) bool) []string {
	var out []string
	for _, m := range msgs {
		if filter == nil || filter(m) {
			out = append(out, string(m.Body))
		}
	}
	return out
}

// startJob runs a job until the test ends.
func startJob(t testing.TB, cfg Config) *Job {
	t.Helper()
	j, err := New(cfg)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- j.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = j.Shutdown(ctx)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after Shutdown")
		}
	})
	return j
}

func eventually(t *testing.T, cond func() bool, timeout time.Duration, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, timeout, 5*time.Millisecond, append([]any{msg}, args...)...)
}
