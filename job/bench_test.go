package job

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/require"
)

// countingLink counts Deliver calls and messages.
type countingLink struct {
	Link
	calls, msgs atomic.Int64
}

func (l *countingLink) Deliver(ctx context.Context, msgs []*imcloud.Message) error {
	l.calls.Add(1)
	l.msgs.Add(int64(len(msgs)))
	return l.Link.Deliver(ctx, msgs)
}

// BenchmarkThroughputToCloudNode measures queue messages consumed and
// accepted by one local cloud gateway per second, through the TCP link.
// The records are queued before the timer starts; the timer stops when the
// last offset is committed. mids messages (one user each, four users
// with a connection each) go through Config.Users, and with "-history"
// room and mids messages are appended to logic's memory history first.
func BenchmarkThroughputToCloudNode(b *testing.B) {
	for _, kind := range []string{"keys", "room", "room-history", "mids", "mids-history"} {
		b.Run(kind, func(b *testing.B) {
			node := startCloudNode(b, "bench", 0)
			// A few connections, so that deliveries reach real queues.
			for i := 0; i < 4; i++ {
				dialClient(b, node.tcpAddr, fmt.Sprint("k", i), "live://bench", 1<<16)
			}
			// Capacity for every record: the job starts once all are queued.
			src := memQueue{logic.NewMemoryQueue(logic.MemoryQueueConfig{Partitions: 4, Capacity: b.N}), b}
			body := make([]byte, 64)
			for i := 0; i < b.N; i++ {
				m := &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: 1000,
					Node: node.node().ID, Keys: []string{fmt.Sprint("nobody", i%4)}, Body: body}
				switch strings.TrimSuffix(kind, "-history") {
				case "room":
					m = &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Op: 1000,
						Room: fmt.Sprint("live://r", i%16), Body: body}
				case "mids":
					m = &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindMids, Op: 1000,
						Mids: []int64{int64(i%4 + 1)}, Body: body}
				}
				src.publish(m)
			}
			var cl *countingLink
			cfg := fastConfig(src, newMemDir(node.node()))
			var sessions []imcloud.Session
			for mid := int64(1); mid <= 4; mid++ {
				sessions = append(sessions, imcloud.Session{Mid: mid, Key: fmt.Sprint("nobody", mid), Node: node.node().ID})
			}
			cfg.Users = newUsers(b, sessions...)
			if strings.HasSuffix(kind, "-history") {
				cfg.History = logic.NewMemoryHistory(logic.MemoryHistoryConfig{})
			}
			cfg.Connect = func(ctx context.Context, n imcloud.Node) (Link, error) {
				cl = &countingLink{Link: NewLinkClient(n.LinkAddr, secret, LinkOptions{})}
				return cl, nil
			}
			b.ReportAllocs()
			b.ResetTimer()
			j := startJob(b, cfg)
			for !src.allCommitted() {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			s := j.Stats()
			require.EqualValues(b, b.N, s.Delivered)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if cl != nil && cl.calls.Load() > 0 {
				b.ReportMetric(float64(cl.msgs.Load())/float64(cl.calls.Load()), "msgs/call")
			}
		})
	}
}

// BenchmarkRoomLatency publishes room pushes at 1, 10 and 100 per second
// to a client on a local gateway and reports the time from publishing to
// the client's receipt, and how many messages each Deliver call carried
// (room batching). Each op is one push, paced at the rate.
func BenchmarkRoomLatency(b *testing.B) {
	for _, rate := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			node := startCloudNode(b, "bench", 0)
			c := dialClient(b, node.tcpAddr, "k", "live://1", 1<<16)
			src := newMemQueue(b, 1)
			var cl *countingLink
			cfg := fastConfig(src, newMemDir(node.node()))
			cfg.Connect = func(ctx context.Context, n imcloud.Node) (Link, error) {
				cl = &countingLink{Link: NewLinkClient(n.LinkAddr, secret, LinkOptions{})}
				return cl, nil
			}
			startJob(b, cfg)
			// Warm up the link.
			src.publish(roomMsg("live://1", "warm"))
			c.waitFor(b, func(s []string) bool { return len(s) == 1 }, 10*time.Second)
			c.mu.Lock()
			c.got, c.at = nil, nil
			c.mu.Unlock()
			cl.calls.Store(0)
			cl.msgs.Store(0)

			sent := make([]time.Time, b.N)
			interval := time.Second / time.Duration(rate)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d)
				}
				sent[i] = time.Now()
				src.publish(roomMsg("live://1", strconv.Itoa(i)))
			}
			c.waitFor(b, func(s []string) bool { return len(s) >= b.N }, 30*time.Second)
			b.StopTimer()
			// Latencies from the client's receive times.
			lat := make([]time.Duration, 0, b.N)
			pushes := receivedTimes(c)
			for i, at := range pushes {
				if i < b.N {
					lat = append(lat, at.Sub(sent[i]))
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(cl.msgs.Load())/float64(max(cl.calls.Load(), 1)), "msgs/call")
		})
	}
}
