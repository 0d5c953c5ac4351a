// Package linktest is the conformance suite for job's Link: the way the job
// hands messages to one cloud node. job's LinkClient (over TCP to the node's
// link listener) and *cloud.Server (called in the job's process) both run
// it, with real clients connected to the node's TCP listener, so the job
// can rely on one set of semantics:
//
//   - keys messages reach the connections of their keys, room messages the
//     connections in their room, broadcasts every connection, paced or not;
//   - Deliver returns nil only once the node accepted every message, so
//     each one reaches its connections; a batch of many messages in one
//     call, and successive calls, arrive in order on each connection;
//   - concurrent calls from many goroutines are all acknowledged, nothing
//     lost or duplicated; an empty call is a no-op;
//   - a call whose ctx is done returns ctx's error without hanging, and
//     whatever it delivered arrives at most once;
//   - msgs are neither modified nor retained: changing them after Deliver
//     returned changes nothing a client receives;
//   - a message delivered again with the same id (a redelivery after a
//     restart or a retry) reaches each client once;
//   - after the node shut down, Deliver returns an error, promptly.
//
// Ordering is checked with fences: a keys message to every client of a
// test, delivered after the messages under test; since a connection's
// messages arrive in the order the node accepted them, what a client got
// before its fence is everything it will get from the earlier calls.
package linktest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud/client"
	"github.com/stretchr/testify/require"
)

// Link is job's Link.
type Link interface {
	Deliver(ctx context.Context, msgs []*imcloud.Message) error
}

// Harness is one fresh cloud node with no connections, and a Link to it.
type Harness struct {
	// Link delivers to the node.
	Link Link
	// Node is the node's id, the Node of the keys messages the suite
	// sends.
	Node string
	// ClientAddr is the node's TCP client listener. The node must accept
	// the suite's clients at once (cloud.DevAuthenticator, no accept or
	// inbound rate limit) and keep cloud's default QueueLength or more.
	ClientAddr string
	// Shutdown shuts the node down: cloud.Server.Shutdown. The harness's
	// cleanup may call it again.
	Shutdown func(ctx context.Context) error

	// ClosedErr, if not nil, is the error (errors.Is) Deliver returns
	// after the node shut down. The in-process Link knows the node is
	// closed (cloud.ErrServerClosed); a remote Link only sees its
	// connection lost or refused and reports that in its own words, so it
	// leaves ClosedErr nil and the suite only requires an error.
	ClosedErr error
}

// Wait bounds each wait in the suite: for a client to receive what it
// should, and for a Deliver that must not hang.
const Wait = 10 * time.Second

// Run runs the suite; newHarness is called once per subtest and must
// return a fresh node.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"Keys", testKeys},
		{"Room", testRoom},
		{"Broadcast", testBroadcast},
		{"BatchInOrder", testBatchInOrder},
		{"CallsInOrder", testCallsInOrder},
		{"ConcurrentCalls", testConcurrent},
		{"Empty", testEmpty},
		{"ContextDone", testContextDone},
		{"ContextCancelledInFlight", testCancelInFlight},
		{"NotModifiedNorRetained", testNotModified},
		{"Redelivery", testRedelivery},
		{"AfterShutdown", testAfterShutdown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, &suite{t: t, h: newHarness(t)})
		})
	}
}

// suite is one subtest's node and the clients it connected.
type suite struct {
	t       *testing.T
	h       Harness
	clients []*receiver
	fences  int
}

// receiver is one client connection and what it received.
type receiver struct {
	key  string
	room string
	c    *client.Client
	mu   sync.Mutex
	got  []string
	read int // got[:read] was returned by an earlier fence
	more chan struct{}
}

// op is the op of every message the suite sends; clients accept it.
const op = 1000

// dial connects a client with key to the node, in room ("" for none).
func (s *suite) dial(key, room string) *receiver {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Addr: s.h.ClientAddr, Mid: int64(len(s.clients) + 1),
		Key: key, Room: room, Accepts: []int32{op}, Buffer: 1 << 14})
	require.NoError(s.t, err)
	r := &receiver{key: key, room: room, c: c, more: make(chan struct{}, 1)}
	go func() {
		for p := range c.Messages() {
			r.mu.Lock()
			r.got = append(r.got, string(p.Body))
			r.mu.Unlock()
			select {
			case r.more <- struct{}{}:
			default:
			}
		}
	}()
	s.t.Cleanup(func() { _ = c.Close() })
	s.clients = append(s.clients, r)
	return r
}

// waitFor waits until cond holds for what r received since its last
// fence, and returns that.
func (r *receiver) waitFor(t *testing.T, what string, cond func(got []string) bool) []string {
	t.Helper()
	deadline := time.NewTimer(Wait)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got := slices.Clone(r.got[r.read:])
		r.mu.Unlock()
		if cond(got) {
			return got
		}
		select {
		case <-r.more:
		case <-deadline.C:
			t.Fatalf("client %s: no %s after %v; received %d: %q", r.key, what, Wait, len(got), got[max(0, len(got)-10):])
		}
	}
}

// waitAll waits until r received every body of want since its last fence
// (a paced broadcast arrives some time after Deliver returned).
func (r *receiver) waitAll(t *testing.T, want ...string) {
	t.Helper()
	r.waitFor(t, fmt.Sprintf("%q", want), func(got []string) bool {
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return true
	})
}

// fence delivers a keys message to every client of the test and returns,
// for each, what it received since its previous fence and before this one.
func (s *suite) fence() map[*receiver][]string {
	s.t.Helper()
	s.fences++
	body := fmt.Sprint("fence-", s.fences)
	keys := make([]string, len(s.clients))
	for i, r := range s.clients {
		keys[i] = r.key
	}
	s.deliver(s.keys(body, keys...))
	out := map[*receiver][]string{}
	for _, r := range s.clients {
		got := r.waitFor(s.t, body, func(got []string) bool { return slices.Contains(got, body) })
		i := slices.Index(got, body)
		require.NotContains(s.t, got[i+1:], body, "client %s: the fence arrives once", r.key)
		r.mu.Lock()
		r.read += i + 1
		r.mu.Unlock()
		if i > 0 {
			out[r] = got[:i]
		}
	}
	return out
}

// ctx bounds a call the suite expects to succeed.
func (s *suite) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	s.t.Cleanup(cancel)
	return ctx
}

// deliver delivers msgs in one call and requires it to succeed.
func (s *suite) deliver(msgs ...*imcloud.Message) {
	s.t.Helper()
	require.NoError(s.t, s.h.Link.Deliver(s.ctx(), msgs))
}

func (s *suite) keys(body string, keys ...string) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: op, Node: s.h.Node,
		Keys: keys, Body: []byte(body), Accepted: time.Now()}
}

func room(name, body string) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Op: op, Room: name,
		Body: []byte(body), Accepted: time.Now()}
}

// broadcast is a broadcast paced at speed connections per second (0: at
// once).
func broadcast(body string, speed int32) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: op, Speed: speed,
		Body: []byte(body), Accepted: time.Now()}
}

// sorted returns a sorted copy, to compare what arrives in no set order.
func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
