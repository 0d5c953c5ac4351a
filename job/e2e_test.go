package job

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/cloud/client"
	"github.com/stretchr/testify/require"
)

// Compile-time: the gateway is a Link in one process.
var _ Link = (*cloud.Server)(nil)

// cloudNode is a real gateway on loopback: client TCP listener and link
// listener.
type cloudNode struct {
	srv      *cloud.Server
	tcpAddr  string
	linkAddr string
}

func startCloudNode(t testing.TB, id string, queue int) *cloudNode {
	t.Helper()
	return startCloudNodeConfig(t, cloud.Config{NodeID: id, QueueLength: queue})
}

// startCloudNodeConfig is startCloudNode with cfg (NodeID, QueueLength,
// Store...), its listeners and test settings filled in.
func startCloudNodeConfig(t testing.TB, cfg cloud.Config) *cloudNode {
	t.Helper()
	ll, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg.Authenticator, cfg.LinkSecret = cloud.DevAuthenticator(), secret
	cfg.LinkAddr, cfg.InboundRate, cfg.AcceptRate = ll.Addr().String(), -1, -1
	srv, err := cloud.New(cfg)
	require.NoError(t, err)
	go func() { _ = srv.ServeTCP(tl) }()
	go func() { _ = srv.ServeLink(ll) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &cloudNode{srv: srv, tcpAddr: tl.Addr().String(), linkAddr: ll.Addr().String()}
}

func (n *cloudNode) node() imcloud.Node { return imcloud.Node{ID: n.srv.ID(), LinkAddr: n.linkAddr} }

// recorder collects what one client receives.
type recorder struct {
	c    *client.Client
	mu   sync.Mutex
	got  []string
	at   []time.Time
	more chan struct{}
}

func dialClient(t testing.TB, addr, key, room string, buffer int) *recorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Addr: addr, Mid: 1, Key: key, Room: room,
		Accepts: []int32{1000, 1001, 1002}, Buffer: buffer})
	require.NoError(t, err)
	r := &recorder{c: c, more: make(chan struct{}, 1)}
	go func() {
		for p := range c.Messages() {
			r.mu.Lock()
			r.got = append(r.got, string(p.Body))
			r.at = append(r.at, p.Received)
			r.mu.Unlock()
			signal(r.more)
		}
	}()
	t.Cleanup(func() { c.Close() })
	return r
}

func (r *recorder) bodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func receivedTimes(r *recorder) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.at...)
}

func (r *recorder) waitFor(t testing.TB, cond func([]string) bool, timeout time.Duration) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if b := r.bodies(); cond(b) {
			return b
		}
		select {
		case <-r.more:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			b := r.bodies()
			t.Fatalf("client: condition not met after %v; %d messages, last %v", timeout, len(b), b[max(0, len(b)-5):])
		}
	}
}

// TestEndToEndTwoCloudNodes runs a job, two gateways and clients on
// loopback, and checks what every client receives, in order.
func TestEndToEndTwoCloudNodes(t *testing.T) {
	a := startCloudNode(t, "node-a", 0)
	b := startCloudNode(t, "node-b", 0)
	src := newMemQueue(t, 4)
	startJob(t, fastConfig(src, newMemDir(a.node(), b.node())))

	c1 := dialClient(t, a.tcpAddr, "k1", "live://1", 0) // node a, room 1
	c2 := dialClient(t, b.tcpAddr, "k2", "live://1", 0) // node b, room 1
	c3 := dialClient(t, b.tcpAddr, "k3", "live://2", 0) // node b, room 2

	const n = 50
	for i := 0; i < n; i++ {
		src.publish(
			// a key push to one connection on a
			&imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: 1000, Node: a.node().ID,
				Keys: []string{"k1"}, Body: []byte(fmt.Sprint("key-", i))},
			// a mid push resolves to one keys message per node: both of
			// b's connections
			&imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: 1000, Node: b.node().ID,
				Keys: []string{"k2", "k3"}, Body: []byte(fmt.Sprint("mid-", i))},
			roomMsg("live://1", fmt.Sprint("room1-", i)),
			roomMsg("live://2", fmt.Sprint("room2-", i)),
		)
	}
	src.publish(&imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1002, Body: []byte("all")})

	seq := func(prefix string) []string {
		var out []string
		for i := 0; i < n; i++ {
			out = append(out, fmt.Sprint(prefix, i))
		}
		return out
	}
	only := func(got []string, prefix string) []string {
		var out []string
		for _, g := range got {
			if len(g) >= len(prefix) && g[:len(prefix)] == prefix {
				out = append(out, g)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		r        *recorder
		prefixes []string
	}{
		{"c1", c1, []string{"key-", "room1-"}},
		{"c2", c2, []string{"mid-", "room1-"}},
		{"c3", c3, []string{"mid-", "room2-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := 2*n + 1
			got := tc.r.waitFor(t, func(b []string) bool { return len(b) >= want }, 10*time.Second)
			require.Len(t, got, want, "nothing else, nothing twice")
			for _, p := range tc.prefixes {
				require.Equal(t, seq(p), only(got, p), "%s in order", p)
			}
			require.Equal(t, []string{"all"}, only(got, "all"))
		})
	}
	eventually(t, src.allCommitted, 5*time.Second, "all committed")
}

// TestEndToEndInProcessLink delivers through *cloud.Server directly.
func TestEndToEndInProcessLink(t *testing.T) {
	a := startCloudNode(t, "node-a", 0)
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, newMemDir(a.node()))
	cfg.Connect = func(ctx context.Context, n imcloud.Node) (Link, error) { return a.srv, nil }
	startJob(t, cfg)
	c := dialClient(t, a.tcpAddr, "k1", "live://1", 0)
	for i := 0; i < 20; i++ {
		src.publish(roomMsg("live://1", fmt.Sprint(i)))
	}
	got := c.waitFor(t, func(b []string) bool { return len(b) >= 20 }, 10*time.Second)
	for i, g := range got {
		require.Equal(t, fmt.Sprint(i), g)
	}
}

// flakyProxy forwards TCP to target and can be cut and restored, standing
// in for a network fault between job and a gateway.
type flakyProxy struct {
	target string
	ln     net.Listener
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func startProxy(t testing.TB, target string) *flakyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &flakyProxy{target: target, ln: ln, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *flakyProxy) addr() string { return p.ln.Addr().String() }

// cut closes every connection and, while down, refuses new ones.
func (p *flakyProxy) cut(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// TestEndToEndNodeUnreachableThenBack cuts the link to one gateway for a
// few seconds: the other keeps receiving, and the cut one's clients get
// everything, in order, once it is back.
func TestEndToEndNodeUnreachableThenBack(t *testing.T) {
	a := startCloudNode(t, "node-a", 0)
	b := startCloudNode(t, "node-b", 0)
	pb := startProxy(t, b.linkAddr)
	nb := b.node()
	nb.LinkAddr = pb.addr()
	src := newMemQueue(t, 2)
	dir := newMemDir(a.node(), nb)
	startJob(t, fastConfig(src, dir))
	ca := dialClient(t, a.tcpAddr, "ka", "live://1", 0)
	cb := dialClient(t, b.tcpAddr, "kb", "live://1", 0)

	src.publish(roomMsg("live://1", "0"))
	ca.waitFor(t, func(b []string) bool { return len(b) == 1 }, 5*time.Second)
	cb.waitFor(t, func(b []string) bool { return len(b) == 1 }, 5*time.Second)

	pb.cut(true)
	for i := 1; i < 100; i++ {
		src.publish(roomMsg("live://1", fmt.Sprint(i)))
	}
	ca.waitFor(t, func(b []string) bool { return len(b) == 100 }, 5*time.Second)
	time.Sleep(2 * time.Second) // b stays unreachable a while
	require.Len(t, cb.bodies(), 1)
	require.False(t, src.allCommitted(), "commits wait for b")

	pb.cut(false)
	got := cb.waitFor(t, func(b []string) bool { return len(b) >= 100 }, 10*time.Second)
	for i, g := range got {
		require.Equal(t, fmt.Sprint(i), g)
	}
	eventually(t, src.allCommitted, 5*time.Second, "all committed")
}
