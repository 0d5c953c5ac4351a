package cloud_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/internal/eventtest"
	"github.com/imcloud/imcloud/protocol"
)

// eventLog is an in-process event sink that records what it gets.
type eventLog struct{ eventtest.Log }

// disconnect waits for key's disconnect event and returns it.
func (l *eventLog) disconnect(t *testing.T, key string) imcloud.Event {
	t.Helper()
	var got imcloud.Event
	waitFor(t, "the disconnect of "+key, func() bool {
		for _, ev := range l.Of(key) {
			if ev.Type == imcloud.EventDisconnect {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

// checkLifecycles checks every connection's events (by key and
// generation) against the contract: stamped with the node, its epoch and
// the connection; a connect first, exactly one disconnect, last.
func checkLifecycles(t *testing.T, srv *cloud.Server, evs []imcloud.Event) {
	t.Helper()
	type conn struct {
		key string
		gen uint64
	}
	byConn := map[conn][]imcloud.Event{}
	epoch := ""
	for _, ev := range evs {
		require.Equal(t, srv.ID(), ev.Node, "%+v", ev)
		require.NotEmpty(t, ev.Epoch, "%+v", ev)
		if epoch == "" {
			epoch = ev.Epoch
		}
		require.Equal(t, epoch, ev.Epoch, "one process, one epoch")
		require.NotZero(t, ev.Gen, "%+v", ev)
		require.False(t, ev.Time.IsZero(), "%+v", ev)
		c := conn{ev.Key, ev.Gen}
		byConn[c] = append(byConn[c], ev)
	}
	for c, evs := range byConn {
		require.Equal(t, imcloud.EventConnect, evs[0].Type, "%v: first event", c)
		require.Equal(t, imcloud.EventDisconnect, evs[len(evs)-1].Type, "%v: last event", c)
		for _, ev := range evs[1 : len(evs)-1] {
			require.Contains(t, []imcloud.EventType{imcloud.EventRoomJoin, imcloud.EventRoomLeave}, ev.Type, "%v", c)
		}
		for _, ev := range evs {
			require.Equal(t, evs[0].Mid, ev.Mid, "%v", c)
		}
	}
}

// dial connects to n over WebSocket or TCP.
func (n *node) dial(t *testing.T, ws bool) *goimClient {
	if ws {
		return dialRaw(t, n.wsAddr, true)
	}
	return dialRaw(t, n.tcpAddr, false)
}

// TestEventsEveryEnding: each way a connection ends gives its connect,
// then exactly one disconnect with the reason the application needs.
func TestEventsEveryEnding(t *testing.T) {
	cases := []struct {
		name   string
		cfg    cloud.Config
		ver    int16
		end    func(t *testing.T, n *node, c *goimClient, key string)
		reason string
		detail string
	}{
		{name: "client closed", reason: imcloud.ReasonClientClosed,
			end: func(t *testing.T, _ *node, c *goimClient, _ string) { _ = c.nc.Close() }},
		{name: "client closed mid-frame", reason: imcloud.ReasonClientClosed,
			end: func(t *testing.T, _ *node, c *goimClient, _ string) {
				_, _ = c.nc.Write(encodeRaw(1, 2, 1, nil)[:9])
				_ = c.nc.Close()
			}},
		{name: "heartbeat timeout", reason: imcloud.ReasonHeartbeatTimeout,
			cfg: cloud.Config{HeartbeatTimeout: 200 * time.Millisecond},
			end: func(t *testing.T, _ *node, c *goimClient, _ string) { c.expectClosed(t) }},
		{name: "kick", reason: imcloud.ReasonKicked, detail: "banned", ver: 2,
			end: func(t *testing.T, n *node, c *goimClient, key string) {
				n.srv.Kick(key, "banned")
				c.nextOp(protocol.OpDisconnect)
			}},
		{name: "kick by mid", reason: imcloud.ReasonKicked, detail: "logged out",
			end: func(t *testing.T, n *node, c *goimClient, _ string) {
				n.srv.KickMid(7, "logged out")
				c.expectClosed(t)
			}},
		{name: "malformed frame", reason: imcloud.ReasonProtocolError,
			end: func(t *testing.T, _ *node, c *goimClient, _ string) {
				b := encodeRaw(1, 2, 1, nil)
				b[5] = 15 // header length 15
				_, _ = c.nc.Write(b)
				c.expectClosed(t)
			}},
		{name: "over the inbound rate", reason: imcloud.ReasonProtocolError,
			cfg: cloud.Config{InboundRate: 2},
			end: func(t *testing.T, _ *node, c *goimClient, _ string) {
				for i := range 10 {
					_ = c.send(1, protocol.OpHeartbeat, int32(i), nil)
				}
				c.expectClosed(t)
			}},
		{name: "oversized ChangeRoom", reason: imcloud.ReasonProtocolError,
			end: func(t *testing.T, _ *node, c *goimClient, _ string) {
				_ = c.send(1, protocol.OpChangeRoom, 2, []byte(strings.Repeat("r", 300)))
				c.expectClosed(t)
			}},
		{name: "slow consumer", reason: imcloud.ReasonSlowConsumer,
			cfg: cloud.Config{QueueLength: 4},
			end: func(t *testing.T, n *node, c *goimClient, key string) {
				body := strings.Repeat("x", 32<<10)
				for i := 0; i < 400 && n.srv.Stats().SlowDisconnects == 0; i++ {
					m := keysMsg(1000, body, key)
					m.Node = n.srv.ID()
					require.NoError(t, n.srv.Deliver(context.Background(), []*imcloud.Message{m}))
				}
				require.NotZero(t, n.srv.Stats().SlowDisconnects, "%+v", n.srv.Stats())
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log := &eventLog{}
			cfg := tc.cfg
			cfg.Events = log
			n := startNode(t, cfg)
			var c *goimClient
			if tc.reason == imcloud.ReasonSlowConsumer {
				c = dialSmallWindow(t, n.tcpAddr)
			} else {
				c = dialRaw(t, n.tcpAddr, false)
			}
			ver := tc.ver
			if ver == 0 {
				ver = 1
			}
			key := "k-" + strings.ReplaceAll(tc.name, " ", "-")
			c.auth(ver, goimAuth(7, key, "live://1", 1000))
			tc.end(t, n, c, key)
			d := log.disconnect(t, key)
			assert.Equal(t, tc.reason, d.Reason)
			assert.Equal(t, tc.detail, d.Detail)
			evs := log.Of(key)
			require.Len(t, evs, 3, "%+v", evs)
			assert.Equal(t, imcloud.Event{Type: imcloud.EventConnect, Node: n.srv.ID(), Epoch: evs[0].Epoch,
				Key: key, Mid: 7, Gen: evs[0].Gen, Platform: "web", Room: "live://1", Time: evs[0].Time}, evs[0])
			assert.Equal(t, imcloud.Event{Type: imcloud.EventRoomJoin, Node: n.srv.ID(), Epoch: evs[0].Epoch,
				Key: key, Mid: 7, Gen: evs[0].Gen, Room: "live://1", Primary: true, Time: evs[1].Time}, evs[1])
			checkLifecycles(t, n.srv, evs)
			assert.Zero(t, n.srv.Stats().EventsDropped)
		})
	}
}

// TestEventsReplaced: a newer connection with the same key ends the older
// one (replaced); both have their own generation, the newer's larger.
func TestEventsReplaced(t *testing.T) {
	log := &eventLog{}
	n := startNode(t, cloud.Config{Events: log})
	old := dialRaw(t, n.tcpAddr, false)
	old.auth(1, goimAuth(3, "same", ""))
	cur := dialRaw(t, n.tcpAddr, false)
	cur.auth(1, goimAuth(3, "same", ""))
	old.expectClosed(t)
	d := log.disconnect(t, "same")
	assert.Equal(t, imcloud.ReasonReplaced, d.Reason)
	var gens []uint64
	waitFor(t, "both connects", func() bool {
		gens = gens[:0]
		for _, ev := range log.Of("same") {
			if ev.Type == imcloud.EventConnect {
				gens = append(gens, ev.Gen)
			}
		}
		return len(gens) == 2
	})
	assert.Less(t, gens[0], gens[1], "the first client's connect came first")
	assert.Equal(t, gens[0], d.Gen, "the older connection is the one replaced")
	_ = cur.nc.Close()
	waitFor(t, "both disconnects", func() bool { return len(log.Of("same")) == 4 })
	checkLifecycles(t, n.srv, log.All())
}

// TestEventsGenAcrossRestart: a process started under the NodeID of one
// before it (a restart) numbers its connections after the earlier
// one's, so a consumer that discards events older by Gen per (Node, Key)
// keeps the new process's.
func TestEventsGenAcrossRestart(t *testing.T) {
	connectGen := func(n *node, log *eventLog) uint64 {
		c := dialRaw(t, n.tcpAddr, false)
		c.auth(1, goimAuth(4, "same", ""))
		var gen uint64
		waitFor(t, "the connect", func() bool {
			for _, ev := range log.Of("same") {
				if ev.Type == imcloud.EventConnect {
					gen = ev.Gen
					return true
				}
			}
			return false
		})
		return gen
	}
	firstLog, nextLog := &eventLog{}, &eventLog{}
	first := connectGen(startNode(t, cloud.Config{NodeID: "g1", Events: firstLog}), firstLog)
	next := connectGen(startNode(t, cloud.Config{NodeID: "g1", Events: nextLog}), nextLog)
	assert.Greater(t, next, first, "the restarted process's connection has the larger gen")
}

// TestEventsDrain: Shutdown ends every connection with reason drain, and
// the events are all with the sink when it returns.
func TestEventsDrain(t *testing.T) {
	log := &eventLog{}
	n := startNode(t, cloud.Config{Events: log})
	const conns = 20
	for i := range conns {
		c := n.dial(t, i%2 == 1)
		c.auth(int16(1+i%2), goimAuth(int64(i+1), fmt.Sprintf("d%d", i), ""))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, n.srv.Shutdown(ctx))
	evs := log.All()
	require.Len(t, evs, 2*conns, "every connect and disconnect, flushed by Shutdown")
	for _, ev := range evs {
		if ev.Type == imcloud.EventDisconnect {
			assert.Equal(t, imcloud.ReasonDrain, ev.Reason, "%+v", ev)
		}
	}
	checkLifecycles(t, n.srv, evs)
}

// TestEventsRooms: the room events of the auth room, Join, Leave and
// ChangeRoom, in order; requests that change nothing report nothing.
func TestEventsRooms(t *testing.T) {
	log := &eventLog{}
	n := startNode(t, cloud.Config{Events: log})
	c := dialRaw(t, n.tcpAddr, false)
	c.auth(2, goimAuth(5, "r", "live://p"))
	require.True(t, c.roomRequest(protocol.OpJoin, 2, "live://a").OK)
	require.True(t, c.roomRequest(protocol.OpJoin, 3, "live://a").OK, "joined already: no event")
	require.True(t, c.roomRequest(protocol.OpJoin, 4, "live://b").OK)
	require.True(t, c.roomRequest(protocol.OpLeave, 5, "live://a").OK)
	require.True(t, c.roomRequest(protocol.OpLeave, 6, "live://x").OK, "not in it: no event")
	c.request(protocol.OpChangeRoom, 7, "live://q")
	c.request(protocol.OpChangeRoom, 8, "live://b") // joined before: becomes primary
	c.request(protocol.OpChangeRoom, 9, "live://b") // no change
	require.True(t, c.roomRequest(protocol.OpLeave, 10, "live://b").OK)
	_ = c.nc.Close()
	log.disconnect(t, "r")
	type step struct {
		typ     imcloud.EventType
		room    string
		primary bool
	}
	var got []step
	for _, ev := range log.Of("r") {
		got = append(got, step{ev.Type, ev.Room, ev.Primary})
	}
	assert.Equal(t, []step{
		{imcloud.EventConnect, "live://p", false},
		{imcloud.EventRoomJoin, "live://p", true},
		{imcloud.EventRoomJoin, "live://a", false},
		{imcloud.EventRoomJoin, "live://b", false},
		{imcloud.EventRoomLeave, "live://a", false},
		{imcloud.EventRoomLeave, "live://p", true},
		{imcloud.EventRoomJoin, "live://q", true},
		{imcloud.EventRoomLeave, "live://q", true},
		{imcloud.EventRoomJoin, "live://b", true},
		{imcloud.EventRoomLeave, "live://b", true},
		{imcloud.EventDisconnect, "", false},
	}, got)
	checkLifecycles(t, n.srv, log.All())
}

// TestEventsOrderUnderConcurrency: connections that come, change rooms
// and go at once each report their events in their own order.
func TestEventsOrderUnderConcurrency(t *testing.T) {
	log := &eventLog{}
	n := startNode(t, cloud.Config{Events: log})
	const conns = 100
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := n.dial(t, i%2 == 1)
			c.auth(2, goimAuth(int64(i+1), fmt.Sprintf("c%d", i), "live://p"))
			assert.True(t, c.roomRequest(protocol.OpJoin, 2, "live://a").OK)
			assert.True(t, c.roomRequest(protocol.OpLeave, 3, "live://a").OK)
			_ = c.nc.Close()
		}()
	}
	wg.Wait()
	waitFor(t, "every disconnect", func() bool { return len(log.All()) == 5*conns })
	checkLifecycles(t, n.srv, log.All())
	for i := range conns {
		var types []imcloud.EventType
		for _, ev := range log.Of(fmt.Sprintf("c%d", i)) {
			types = append(types, ev.Type)
		}
		require.Equal(t, []imcloud.EventType{imcloud.EventConnect, imcloud.EventRoomJoin, imcloud.EventRoomJoin,
			imcloud.EventRoomLeave, imcloud.EventDisconnect}, types, "c%d", i)
	}
}

// blockingSink holds the first event until release is closed.
type blockingSink struct {
	eventLog
	release chan struct{}
}

func (b *blockingSink) Event(ev imcloud.Event) {
	<-b.release
	b.Log.Event(ev)
}

// TestEventsSinkBlocked: a sink that does not return never holds up a
// connection: clients authenticate, change rooms and close while it is
// stuck; what the bounded queue cannot hold is dropped and counted, and
// every event is either delivered or counted.
func TestEventsSinkBlocked(t *testing.T) {
	sink := &blockingSink{release: make(chan struct{})}
	n := startNode(t, cloud.Config{Events: sink, EventBuffer: 4})
	const conns = 10
	for i := range conns {
		c := dialRaw(t, n.tcpAddr, false)
		c.auth(2, goimAuth(int64(i+1), fmt.Sprintf("b%d", i), ""))
		require.True(t, c.roomRequest(protocol.OpJoin, 2, "live://a").OK)
		_ = c.nc.Close()
	}
	waitFor(t, "the connections to end", func() bool { return n.srv.Stats().Sessions == 0 })
	require.NotZero(t, n.srv.Stats().EventsDropped)
	close(sink.release)
	const emitted = 3 * conns
	waitFor(t, "the queue to drain", func() bool {
		return uint64(len(sink.All()))+n.srv.Stats().EventsDropped == emitted
	})
	assert.LessOrEqual(t, len(sink.All()), 8, "the batch the sink was given, four queued behind it")
}
