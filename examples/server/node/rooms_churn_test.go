package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// churnSize is the size of a join-churn run: the test runs a small one,
// BenchmarkRoomChurn (make bench-rooms) the issue's.
type churnSize struct {
	nodes    int
	rooms    int
	stable   int // clients that stay in one room each, on node 0
	churners int // clients that join and leave rooms, on the other nodes
	pushes   int // room pushes per second
	hold     time.Duration
	run      time.Duration
}

// churnResult is what a run measured.
type churnResult struct {
	pushes, joins, leaves int
	joinLatencies         []time.Duration
	leaveLatencies        []time.Duration
}

// runChurn runs stable members (each in one room, on node 0) and
// churners (on the other nodes, each joining a room no client of its node
// is in, holding it, leaving it, and never coming back to a room) while
// room pushes flow, then checks: every stable member got every push of
// its room, in order (nothing lost), and no churner got a push of a room
// whose push started after its leave was answered (nothing reached a
// connection outside the room).
func runChurn(t testing.TB, c *roomsCluster, sz churnSize) churnResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sz.run+2*time.Minute)
	defer cancel()
	roomName := func(r int) string { return fmt.Sprintf("churn://%d", r) }

	stable := make([]*inbox, sz.stable)
	for i := range stable {
		cl := c.dial(t, 0, int64(i+1), fmt.Sprintf("stable-%d", i), "")
		stable[i] = collect(cl)
		_, err := cl.Join(ctx, roomName(i%sz.rooms))
		require.NoError(t, err)
	}

	// Pushes: body "room|n|startedAtUnixNano", n counting per room; each
	// pusher goroutine owns the rooms r with r % pushers == its index, so
	// a room's pushes are accepted in order.
	var pushes atomic.Int64
	seq := make([]int, sz.rooms)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var pushErr atomic.Pointer[error]
	pushers := min(8, sz.rooms)
	for g := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * time.Duration(pushers) / time.Duration(sz.pushes))
			defer tick.Stop()
			for r := g; ; r += pushers {
				if r >= sz.rooms {
					r = g
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				body := fmt.Sprintf("%d|%d|%d", r, seq[r], time.Now().UnixNano())
				seq[r]++
				if _, err := c.logic.pusher.PushRoom(ctx, 1000, roomName(r), []byte(body)); err != nil {
					pushErr.Store(&err)
					return
				}
				pushes.Add(1)
			}
		}()
	}

	// Churners: each its own sequence of rooms, so a room is never
	// re-entered by the same connection.
	type left struct {
		room string
		at   int64 // unix ns when the leave was answered
	}
	var mu sync.Mutex
	var latencies, leaveLatencies []time.Duration
	var joins, leaves atomic.Int64
	churnLeft := make([][]left, sz.churners)
	churnIn := make([]*inbox, sz.churners)
	for i := range sz.churners {
		cl := c.dial(t, 1+i%(len(c.clouds)-1), int64(100000+i), fmt.Sprintf("churner-%d", i), "")
		churnIn[i] = collect(cl)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				room := roomName(rng.IntN(sz.rooms))
				if slices.ContainsFunc(churnLeft[i], func(l left) bool { return l.room == room }) {
					continue
				}
				start := time.Now()
				if _, err := cl.Join(ctx, room); err != nil {
					return
				}
				d := time.Since(start)
				joins.Add(1)
				mu.Lock()
				latencies = append(latencies, d)
				mu.Unlock()
				time.Sleep(sz.hold)
				start = time.Now()
				if err := cl.Leave(ctx, room); err != nil {
					return
				}
				d = time.Since(start)
				leaves.Add(1)
				mu.Lock()
				leaveLatencies = append(leaveLatencies, d)
				mu.Unlock()
				churnLeft[i] = append(churnLeft[i], left{room: room, at: time.Now().UnixNano()})
				if len(churnLeft[i]) == sz.rooms {
					return // every room done once
				}
			}
		}()
	}
	time.Sleep(sz.run)
	close(stop)
	wg.Wait()
	if p := pushErr.Load(); p != nil {
		t.Fatalf("push refused: %v", *p)
	}

	// Nothing lost: every stable member has every push of its room, in
	// order.
	for i, in := range stable {
		r := i % sz.rooms
		want := seq[r]
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := in.bodies()
			if len(got) >= want || time.Now().After(deadline) {
				require.Len(t, got, want, "stable member %d of %s", i, roomName(r))
				for n, b := range got {
					parts := strings.Split(b, "|")
					require.Equal(t, strconv.Itoa(r), parts[0], "stable member %d got another room's push", i)
					require.Equal(t, strconv.Itoa(n), parts[1], "stable member %d: out of order or duplicate", i)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Nothing outside the room: no churner has a push that started
	// after it left that room.
	for i, in := range churnIn {
		for _, b := range in.bodies() {
			parts := strings.Split(b, "|")
			r, _ := strconv.Atoi(parts[0])
			started, _ := strconv.ParseInt(parts[2], 10, 64)
			for _, l := range churnLeft[i] {
				if l.room == roomName(r) && started > l.at {
					t.Fatalf("churner %d got a push of %s started %v after it left", i, l.room, time.Duration(started-l.at))
				}
			}
		}
	}
	return churnResult{pushes: int(pushes.Load()), joins: int(joins.Load()), leaves: int(leaves.Load()), joinLatencies: latencies, leaveLatencies: leaveLatencies}
}

// TestJoinChurnDuringPushes is the churn check at test size.
func TestJoinChurnDuringPushes(t *testing.T) {
	c := startRoomsCluster(t, 3)
	res := runChurn(t, c, churnSize{nodes: 3, rooms: 12, stable: 24, churners: 24, pushes: 200,
		hold: 10 * time.Millisecond, run: 3 * time.Second})
	require.Positive(t, res.joins)
	require.Positive(t, res.pushes)
	t.Logf("%d pushes, %d joins, %d leaves", res.pushes, res.joins, res.leaves)
}

// BenchmarkRoomChurn is the churn scenario: 20 nodes, joins and
// leaves at over 10,000 per second (400 clients, 50 ms in a room) while 1,000 room pushes per second
// flow (make bench-rooms). It reports the join latency percentiles.
func BenchmarkRoomChurn(b *testing.B) {
	for range b.N {
		c := startRoomsCluster(b, 20)
		res := runChurn(b, c, churnSize{nodes: 20, rooms: 1000, stable: 1000, churners: 400, pushes: 1000,
			hold: 50 * time.Millisecond, run: 20 * time.Second})
		secs := 20.0
		b.ReportMetric(float64(res.joins+res.leaves)/secs, "joins+leaves/s")
		b.ReportMetric(float64(res.pushes)/secs, "pushes/s")
		b.ReportMetric(quantileMS(res.joinLatencies, 0.5), "join-p50-ms")
		b.ReportMetric(quantileMS(res.joinLatencies, 0.99), "join-p99-ms")
		b.ReportMetric(quantileMS(res.leaveLatencies, 0.99), "leave-p99-ms")
	}
}

// quantileMS is the q quantile of ds in milliseconds (0 for none).
func quantileMS(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000
}
