package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/internal/eventtest"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/protocol"
)

// TestAllInOneEvents: all in one process, connection events and upstream
// messages go to the in-process callbacks, which log them at debug level
// and count them in imcloud_app_messages_total.
func TestAllInOneEvents(t *testing.T) {
	cfg, err := Parse([]string{"-tcp-addr", "127.0.0.1:0", "-ws-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0"}, noEnv, io.Discard)
	require.NoError(t, err)
	out := new(syncLog)
	app := runWith(t, cfg, slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Addr: app.Addr("tcp"), Mid: 9, Key: "k9", Room: "live://1"})
	require.NoError(t, err)
	require.NoError(t, c.Send(ctx, []byte("hello")))
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool {
		ev, up := app.events.stats()
		return ev.Sent == 3 && up.Sent == 1 // connect, room_join, disconnect
	}, 10*time.Second, 10*time.Millisecond)
	log := out.String()
	assert.Contains(t, log, "msg=event role=cloud type=connect")
	assert.Contains(t, log, "type=disconnect node=")
	assert.Contains(t, log, "reason=client_closed")
	assert.Contains(t, log, `msg="upstream message" role=cloud mid=9 key=k9 room=live://1 op=4`)

	resp, err := http.Get("http://" + app.Addr("http") + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	assert.Contains(t, string(body), `imcloud_app_messages_total{outcome="sent",stream="events"} 3`)
	assert.Contains(t, string(body), `imcloud_app_messages_total{outcome="sent",stream="upstream"} 1`)
}

// TestEventsOff: -events=false leaves both hooks unset.
func TestEventsOff(t *testing.T) {
	app := startAllInOne(t, "-events=false")
	require.Nil(t, app.events.events)
	require.Nil(t, app.events.upstream)
}

// eventsCluster is redis-server, a Kafka-protocol broker with the push,
// events and upstream topics, and cloud nodes, each a separate App.
type eventsCluster struct {
	kafka  *testenv.Kafka
	clouds []*App
}

func startEventsCluster(t testing.TB, nodes int, extra ...string) *eventsCluster {
	t.Helper()
	rd := testenv.StartRedis(t)
	kf := testenv.StartKafka(t, "imcloud-push", "imcloud-push.events", "imcloud-push.upstream")
	c := &eventsCluster{kafka: kf}
	common := append([]string{"-redis-addr", rd.Addr, "-kafka-brokers", kf.Brokers[0],
		"-link-secret", "events-link-secret", "-auth", "dev", "-log-level", "warn", "-admin-addr", "127.0.0.1:0",
		"-role", "cloud", "-tcp-addr", "127.0.0.1:0", "-ws-addr", "127.0.0.1:0", "-link-addr", "127.0.0.1:0",
		"-accept-rate", "-1", "-accept-rate-per-ip", "-1"}, extra...)
	for i := range nodes {
		a := runApp(t, append([]string{"-node-id", fmt.Sprintf("cloud-%d", i)}, common...))
		c.clouds = append(c.clouds, a)
	}
	for _, a := range c.clouds {
		require.Eventually(t, func() bool { _, err := a.events.events.(*lazyEvents).c.get(); return err == nil },
			15*time.Second, 10*time.Millisecond, "the event producer connects")
	}
	return c
}

// churn connects and closes n clients, alternating between the nodes,
// from workers goroutines; each client's key is prefix and its number.
func (c *eventsCluster) churn(t testing.TB, n, workers int, prefix string) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				cl, err := client.Dial(ctx, client.Config{Addr: c.clouds[i%len(c.clouds)].Addr("tcp"), Mid: int64(i + 1),
					Key: prefix + strconv.Itoa(i), Room: "live://churn", Heartbeat: time.Hour})
				cancel()
				if err != nil {
					errs <- err
					return
				}
				_ = cl.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// checkChurnEvents reads the events topic until every client of churn has
// its connect and disconnect, then checks each connection's events: one
// partition, connect before room_join before disconnect (client_closed),
// stamped with its node and that node's epoch. Duplicates (at least once)
// are allowed.
func (c *eventsCluster) checkChurnEvents(t testing.TB, n int, prefix string, timeout time.Duration) {
	t.Helper()
	type life struct {
		connect, disconnect int
	}
	var evs []imcloud.Event
	recs := eventtest.ReadTopic(t, c.kafka.Brokers, "imcloud-push.events", timeout, func(recs []eventtest.Record) bool {
		for _, r := range recs[len(evs):] {
			evs = append(evs, r.Event(t))
		}
		ended := 0
		for _, ev := range evs {
			if ev.Type == imcloud.EventDisconnect && strings.HasPrefix(ev.Key, prefix) {
				ended++
			}
		}
		return ended >= n
	})
	type conn struct {
		key string
		gen uint64
	}
	partition := map[string]int32{}
	seen := map[conn][]imcloud.EventType{}
	epochs := map[string]string{}
	for i, r := range recs {
		ev := evs[i]
		if !strings.HasPrefix(ev.Key, prefix) {
			continue
		}
		require.Equal(t, ev.Key, r.Key, "keyed by connection key")
		if p, ok := partition[ev.Key]; ok {
			require.Equal(t, p, r.Partition, "%s: one partition", ev.Key)
		}
		partition[ev.Key] = r.Partition
		require.NotEmpty(t, ev.Epoch)
		if e, ok := epochs[ev.Node]; ok {
			require.Equal(t, e, ev.Epoch, "one epoch per node process")
		}
		epochs[ev.Node] = ev.Epoch
		k := conn{ev.Key, ev.Gen}
		if l := seen[k]; len(l) > 0 && l[len(l)-1] == ev.Type {
			continue // a redelivery
		}
		seen[k] = append(seen[k], ev.Type)
		if ev.Type == imcloud.EventDisconnect {
			require.Equal(t, imcloud.ReasonClientClosed, ev.Reason, "%+v", ev)
		}
	}
	require.Len(t, seen, n, "every connection's events are on the topic")
	require.Len(t, epochs, len(c.clouds))
	for k, types := range seen {
		require.Equal(t, []imcloud.EventType{imcloud.EventConnect, imcloud.EventRoomJoin, imcloud.EventDisconnect}, types, "%v", k)
	}
}

// TestEventsClustered: 2,000 clients connect and disconnect across two
// cloud nodes; every connect and disconnect is on the events topic, each
// connection's in order in one partition.
func TestEventsClustered(t *testing.T) {
	c := startEventsCluster(t, 2)
	const n = 2000
	c.churn(t, n, 16, "churn-")
	c.checkChurnEvents(t, n, "churn-", 60*time.Second)
	for _, a := range c.clouds {
		ev, _ := a.events.stats()
		require.Zero(t, ev.Dropped+ev.Errors, "%+v", ev)
		require.Zero(t, a.cloud.Stats().EventsDropped)
	}
}

// BenchmarkEventsClustered is TestEventsClustered at the size:
// 10,000 connects and disconnects across two nodes per iteration, all on
// the events topic; it reports the connections per second and how long
// after the last close the topic had every event.
func BenchmarkEventsClustered(b *testing.B) {
	c := startEventsCluster(b, 2)
	const n = 10000
	for i := 0; i < b.N; i++ {
		prefix := fmt.Sprintf("b%d-", i)
		start := time.Now()
		c.churn(b, n, 32, prefix)
		closed := time.Now()
		c.checkChurnEvents(b, n, prefix, 5*time.Minute)
		b.ReportMetric(float64(n)/closed.Sub(start).Seconds(), "conns/s")
		b.ReportMetric(time.Since(closed).Seconds(), "s-to-topic")
	}
}

// upstreamRun is one run of the upstream check: clients clients on the
// nodes, each sending perClient messages paced over span, and one greedy
// client sending burst messages at once, over its inbound rate; every key
// starts with prefix.
type upstreamRun struct {
	prefix                    string
	clients, perClient, burst int
	span                      time.Duration
}

// run sends; it returns the messages each paced client sent, by key, the
// greedy client's key, and how long the sending took (the clients
// connected first).
func (u upstreamRun) run(t testing.TB, c *eventsCluster) (sent map[string][]string, greedy string, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	greedy = u.prefix + "greedy"
	g, err := client.Dial(ctx, client.Config{Addr: c.clouds[0].Addr("tcp"), Mid: 999999, Key: greedy, Heartbeat: time.Hour})
	require.NoError(t, err)
	defer g.Close()
	clients := make([]*client.Client, u.clients)
	for i := range clients {
		clients[i], err = client.Dial(ctx, client.Config{Addr: c.clouds[i%len(c.clouds)].Addr("tcp"), Mid: int64(i + 1),
			Key: u.prefix + strconv.Itoa(i), Room: "live://up", Heartbeat: time.Hour})
		require.NoError(t, err)
		defer clients[i].Close()
	}
	sent = map[string][]string{}
	began := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	gap := u.span / time.Duration(u.perClient)
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := began.Add(gap * time.Duration(i) / time.Duration(len(clients))) // the clients spread over a gap
			for m := range u.perClient {
				time.Sleep(time.Until(first.Add(gap * time.Duration(m))))
				key := u.prefix + strconv.Itoa(i)
				body := fmt.Sprintf("%s/%d", key, m)
				assert.NoError(t, cl.Send(ctx, []byte(body)), "a client within its rate is never limited")
				mu.Lock()
				sent[key] = append(sent[key], body)
				mu.Unlock()
			}
		}()
	}
	// The greedy client sends its burst without waiting for replies.
	for m := range u.burst {
		go func() { _ = g.Send(ctx, []byte(fmt.Sprintf("greedy/%d", m))) }()
	}
	wg.Wait()
	return sent, greedy, time.Since(began)
}

// check reads the upstream topic until every paced message is there and
// checks each one's headers and order; the greedy client's messages stop
// at its inbound rate, and it was closed for it (its disconnect event says
// protocol_error).
func (u upstreamRun) check(t testing.TB, c *eventsCluster, sent map[string][]string, greedy string, rate int, timeout time.Duration) {
	t.Helper()
	total := u.clients * u.perClient
	got := map[string][]string{}
	greedyGot := 0
	ours := 0
	recs := eventtest.ReadTopic(t, c.kafka.Brokers, "imcloud-push.upstream", timeout, func(recs []eventtest.Record) bool {
		for _, r := range recs[ours:] {
			if strings.HasPrefix(r.Key, u.prefix) && r.Key != greedy {
				total--
			}
		}
		ours = len(recs)
		return total <= 0
	})
	for _, r := range recs {
		key := r.Headers["key"]
		require.Equal(t, key, r.Key)
		if !strings.HasPrefix(key, u.prefix) {
			continue
		}
		require.Equal(t, strconv.Itoa(int(protocol.OpSendMsg)), r.Headers["op"])
		if key == greedy {
			require.Equal(t, "999999", r.Headers["mid"])
			greedyGot++
			continue
		}
		i, err := strconv.Atoi(strings.TrimPrefix(key, u.prefix))
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(i+1), r.Headers["mid"], "the sender's verified mid")
		require.Equal(t, fmt.Sprintf("cloud-%d", i%len(c.clouds)), r.Headers["node"])
		require.Equal(t, "live://up", r.Headers["room"])
		got[key] = append(got[key], string(r.Value))
	}
	require.Equal(t, sent, got, "every paced message, once, in order")
	require.Less(t, greedyGot, u.burst, "the greedy client was cut off")
	require.LessOrEqual(t, greedyGot, 2*rate, "at most its rate in each of two windows")

	var reason string
	eventtest.ReadTopic(t, c.kafka.Brokers, "imcloud-push.events", 30*time.Second, func(recs []eventtest.Record) bool {
		for _, r := range recs {
			if ev := r.Event(t); ev.Key == greedy && ev.Type == imcloud.EventDisconnect {
				reason = ev.Reason
				return true
			}
		}
		return false
	})
	require.Equal(t, imcloud.ReasonProtocolError, reason, "the greedy client was closed for its rate")
	for _, a := range c.clouds {
		_, up := a.events.stats()
		require.Zero(t, up.Dropped+up.Errors, "%+v", up)
	}
}

// TestUpstreamClustered: 200 clients on two nodes send 1,000 upstream
// messages per second for a second; each reaches the upstream topic with
// its sender's mid and key, in order, while a client sending over its
// inbound rate (20 per second) is closed and the others are not limited.
func TestUpstreamClustered(t *testing.T) {
	const rate = 20
	c := startEventsCluster(t, 2, "-inbound-rate", strconv.Itoa(rate))
	u := upstreamRun{prefix: "up-", clients: 200, perClient: 5, burst: 200, span: time.Second}
	sent, greedy, _ := u.run(t, c)
	u.check(t, c, sent, greedy, rate, 60*time.Second)
}

// BenchmarkUpstreamClustered is TestUpstreamClustered at the issue's
// size: 1,000 clients sending 5,000 messages per second for 5 seconds
// per iteration; it reports the rate reached and how long after the last
// send the topic had every message.
func BenchmarkUpstreamClustered(b *testing.B) {
	const rate = 20
	c := startEventsCluster(b, 2, "-inbound-rate", strconv.Itoa(rate))
	for i := 0; i < b.N; i++ {
		u := upstreamRun{prefix: fmt.Sprintf("b%d-", i), clients: 1000, perClient: 25, burst: 200, span: 5 * time.Second}
		sent, greedy, took := u.run(b, c)
		done := time.Now()
		u.check(b, c, sent, greedy, rate, 5*time.Minute)
		b.ReportMetric(float64(u.clients*u.perClient)/took.Seconds(), "msgs/s")
		b.ReportMetric(time.Since(done).Seconds(), "s-to-topic")
	}
}
