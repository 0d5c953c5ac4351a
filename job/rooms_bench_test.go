package job

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/require"
)

// gatedSource is a Source that lets free records through, then holds
// Receive until open is closed.
type gatedSource struct {
	memQueue
	free     int64
	received atomic.Int64
	open     chan struct{}
}

func (s *gatedSource) Receive(ctx context.Context) (imcloud.Record, error) {
	if s.received.Add(1) > s.free {
		select {
		case <-s.open:
		case <-ctx.Done():
			return imcloud.Record{}, ctx.Err()
		}
	}
	return s.memQueue.Receive(ctx)
}

// benchRooms is how many rooms the room pushes of BenchmarkRoomPush go
// to, round robin.
const benchRooms = 1000

// BenchmarkRoomPush measures job's cost per room push and the link bytes
// it sends for it, at 2, 20 and 100 gateway nodes: "before" without
// Config.Rooms (every push to every node), "after" with logic's memory
// router as Rooms and each of 1,000 rooms with members on 1 to 3 nodes.
// Each node is an in-process link server that counts what it accepts
// and decodes none of it; the job sends through its own link clients.
// The pushes (64-byte bodies, 4 partitions) are queued while the job
// waits, after a broadcast opened every link; the timer runs from
// letting the job receive them to the last commit. ns/op and allocs/op
// include the link servers' share (reading and acknowledging requests).
func BenchmarkRoomPush(b *testing.B) {
	for _, n := range []int{2, 20, 100} {
		for _, variant := range []string{"before", "after"} {
			b.Run(fmt.Sprintf("nodes=%d/%s", n, variant), func(b *testing.B) {
				benchRoomPush(b, n, variant == "after")
			})
		}
	}
}

func benchRoomPush(b *testing.B, n int, rooms bool) {
	ctx := context.Background()
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	nodes, _ := startTestNodes(b, n)
	for _, node := range nodes {
		node.set(func(n *testNode) { n.discard = true })
		require.NoError(b, router.PutNode(ctx, node.node(), time.Hour))
	}
	// Room i has members on 1 + i%3 nodes (as many as there are), from
	// node i*7 on.
	for i := range benchRooms {
		for k := range min(1+i%3, n) {
			node := nodes[(i*7+k)%n].id
			require.NoError(b, router.PutRooms(ctx, node, []string{roomName(i)}, nil, time.Hour))
		}
	}
	src := &gatedSource{
		memQueue: memQueue{logic.NewMemoryQueue(logic.MemoryQueueConfig{Partitions: 4, Capacity: b.N + 1}), b},
		free:     1, open: make(chan struct{}),
	}
	cfg := fastConfig(src, router)
	if rooms {
		cfg.Rooms = router
	}
	j := startJob(b, cfg)
	src.publish(&imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1000, Body: []byte("warm")})
	for !src.allCommitted() {
		time.Sleep(time.Millisecond)
	}
	body := make([]byte, 64)
	for i := range b.N {
		src.publish(&imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Op: 1000,
			Room: roomName(i % benchRooms), Body: body})
	}
	for _, node := range nodes {
		node.set(func(n *testNode) { n.accepted, n.bytes = 0, 0 })
	}
	b.ReportAllocs()
	b.ResetTimer()
	close(src.open)
	for !src.allCommitted() {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	var accepted, bytes int
	for _, node := range nodes {
		node.set(func(n *testNode) { accepted, bytes = accepted+n.accepted, bytes+n.bytes })
	}
	s := j.Stats()
	require.Zero(b, s.RoomFallbacks+s.Unroutable+s.RoomNoMembers)
	b.ReportMetric(float64(bytes)/float64(b.N), "link-B/op")
	b.ReportMetric(float64(accepted)/float64(b.N), "deliveries/op")
}

func roomName(i int) string { return fmt.Sprint("live://r", i) }
