package cloud_test

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
)

// TestStoreSessions: sessions are put on auth, updated on room change,
// removed on disconnect (conditionally), the node registers, room counts
// are reported and the cluster-wide count reaches heartbeat replies.
func TestStoreSessions(t *testing.T) {
	st := newFakeStore()
	// Another node reports 5 clients in the same room.
	require.NoError(t, st.PutRoomCounts(context.Background(), "other", map[string]int32{"live://s": 5}, time.Minute))
	before := time.Now()
	n := startNode(t, cloud.Config{
		Store: st, NodeID: "node-a", LinkAddr: "127.0.0.1:1", PublicAddrs: []string{"tcp://x:1"},
		RoomCountInterval: 50 * time.Millisecond, NodeTTL: 300 * time.Millisecond,
	})
	waitFor(t, "node registered", func() bool { _, ok := st.node("node-a"); return ok })
	first, _ := st.node("node-a")
	assert.False(t, first.Since.Before(before), "Since is the process's registration: %v", first.Since)
	assert.False(t, first.Since.After(first.Updated))

	c := dialRaw(t, n.tcpAddr, false)
	r := c.auth(1, goimAuth(11, "", "live://s", 1000))
	waitFor(t, "session stored", func() bool { s, ok := st.session(r.Key); return ok && s.Room == "live://s" })
	s, _ := st.session(r.Key)
	assert.Equal(t, int64(11), s.Mid)
	assert.Equal(t, "node-a", s.Node)
	assert.Equal(t, []int32{1000}, s.Accepts)
	waitFor(t, "node conns", func() bool { nd, _ := st.node("node-a"); return nd.Conns == 1 })
	renewed, _ := st.node("node-a")
	assert.True(t, renewed.Updated.After(first.Updated))
	assert.True(t, renewed.Since.Equal(first.Since), "Since is kept across renewals")

	// Heartbeat reports the cluster-wide count: 5 elsewhere + 1 here.
	waitFor(t, "cluster count", func() bool {
		require.NoError(t, c.send(1, 2, 1, nil))
		return binary.BigEndian.Uint32(c.nextOp(3).body) == 6
	})

	require.NoError(t, c.send(1, 12, 2, []byte("live://t")))
	c.nextOp(13)
	waitFor(t, "room updated", func() bool { s, _ := st.session(r.Key); return s.Room == "live://t" })

	// A same-key replacement keeps the new route when the old one closes.
	c2 := dialRaw(t, n.tcpAddr, false)
	c2.auth(1, goimAuth(11, r.Key, ""))
	c.expectClosed(t)
	waitFor(t, "replacement stored", func() bool { s, ok := st.session(r.Key); return ok && s.Gen != 0 && s.Room == "" })
	time.Sleep(100 * time.Millisecond)
	_, ok := st.session(r.Key)
	assert.True(t, ok, "old connection's removal must not delete the new route")

	_ = c2.nc.Close()
	waitFor(t, "session removed", func() bool { _, ok := st.session(r.Key); return !ok })
}

// TestStoreOutage: the node keeps serving while the store is down and
// re-puts its sessions when it is back.
func TestStoreOutage(t *testing.T) {
	st := newFakeStore()
	st.setDown(true)
	n := startNode(t, cloud.Config{Store: st, NodeID: "node-b", NodeTTL: 150 * time.Millisecond, StoreTimeout: 100 * time.Millisecond})
	var cs []*goimClient
	var keys []string
	for i := 0; i < 10; i++ {
		c := dialRaw(t, n.tcpAddr, false)
		keys = append(keys, c.auth(1, goimAuth(int64(i+1), "", "", 1000)).Key)
		cs = append(cs, c)
	}
	// Still serving.
	deliver(t, n.srv, keysMsg(1000, "during outage", keys[3]))
	assert.Equal(t, "during outage", string(cs[3].nextOp(1000).body))
	waitFor(t, "store errors counted", func() bool { return n.srv.Stats().StoreErrors > 0 })

	st.setDown(false)
	waitFor(t, "sessions re-put", func() bool {
		for _, k := range keys {
			if _, ok := st.session(k); !ok {
				return false
			}
		}
		return true
	})
	// The node re-registers on its next tick (sessions may have been put
	// first by a flush that was still pending when the store came back).
	waitFor(t, "node re-registered", func() bool { _, ok := st.node("node-b"); return ok })

	// Drain deregisters the node and removes the sessions.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, n.srv.Shutdown(ctx))
	_, ok := st.node("node-b")
	assert.False(t, ok)
	for _, k := range keys {
		_, ok := st.session(k)
		assert.False(t, ok)
	}
}

// TestDrain: 1,000 opted-in clients each get op 6 with a reconnect hint
// and Shutdown returns within its deadline; goim clients are closed
// without it. Not parallel (leak check).
func TestDrain(t *testing.T) {
	done := checkNoLeak(t)
	srv, err := cloud.New(cloud.Config{Authenticator: cloud.DevAuthenticator(), DrainRate: 10000, MaxConnsPerIP: -1, AcceptRate: -1})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.ServeTCP(ln) }()

	const N = 1000
	conns := make([]net.Conn, N)
	auth := encodeRaw(2, 7, 1, []byte(goimAuth(1, "", "live://drain")))
	for i := range conns {
		nc, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		_, err = nc.Write(auth)
		require.NoError(t, err)
		conns[i] = nc
	}
	goim := dialRaw(t, ln.Addr().String(), false)
	goim.auth(1, goimAuth(2, "", "live://drain"))
	waitFor(t, "all authenticated", func() bool { return srv.Stats().Sessions == N+1 })

	var got sync.WaitGroup
	var mu sync.Mutex
	op6 := 0
	got.Add(N)
	for _, nc := range conns {
		go func(nc net.Conn) {
			defer got.Done()
			c := &goimClient{t: t, nc: nc, br: newReader(nc)}
			for {
				f, err := c.next(10 * time.Second)
				if err != nil {
					return
				}
				if f.op == 6 {
					mu.Lock()
					op6++
					mu.Unlock()
				}
			}
		}(nc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, srv.Shutdown(ctx))
	t.Logf("drained %d connections in %v", N+1, time.Since(start))
	got.Wait()
	assert.Equal(t, N, op6)
	for {
		f, err := goim.next(5 * time.Second)
		if err != nil {
			break
		}
		assert.NotEqual(t, int32(6), f.op)
	}
	assert.ErrorIs(t, <-served, cloud.ErrServerClosed)
	for _, nc := range conns {
		_ = nc.Close()
	}
	_ = goim.nc.Close()
	done()
}
