package node

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/internal/testenv"
)

// roomsCluster is redis-server, a Kafka-protocol broker and the server's
// roles in one test process: one logic, one job and several cloud nodes,
// each a separate cloud.Server with its own client and link listeners,
// as in a cluster (docs/design.md, rooms).
type roomsCluster struct {
	logic, job *App
	clouds     []*App
}

// startRoomsCluster starts it with nodes cloud nodes; extra flags go to
// every role.
func startRoomsCluster(t testing.TB, nodes int, extra ...string) *roomsCluster {
	t.Helper()
	rd := testenv.StartRedis(t)
	kf := testenv.StartKafka(t, "imcloud-push", "imcloud-push.events", "imcloud-push.upstream")
	common := append([]string{"-redis-addr", rd.Addr, "-kafka-brokers", kf.Brokers[0],
		"-link-secret", "rooms-link-secret", "-auth", "dev", "-log-level", "warn",
		"-admin-addr", "127.0.0.1:0"}, extra...)
	c := &roomsCluster{}
	for i := range nodes {
		c.clouds = append(c.clouds, runApp(t, append([]string{"-role", "cloud", "-node-id", fmt.Sprintf("cloud-%02d", i),
			"-tcp-addr", "127.0.0.1:0", "-ws-addr", "127.0.0.1:0", "-link-addr", "127.0.0.1:0",
			"-accept-rate", "-1", "-accept-rate-per-ip", "-1", "-inbound-rate", "-1"}, common...)))
	}
	c.logic = runApp(t, append([]string{"-role", "logic", "-http-addr", "127.0.0.1:0"}, common...))
	c.job = runApp(t, append([]string{"-role", "job"}, common...))
	c.waitJobNodes(t, nodes)
	return c
}

// runApp builds and runs one process's roles until the test ends.
func runApp(t testing.TB, args []string) *App {
	t.Helper()
	cfg, err := Parse(args, noEnv, io.Discard)
	require.NoError(t, err)
	app, err := New(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = app.Shutdown(sctx)
	})
	return app
}

// waitJobNodes waits until job delivers to n nodes.
func (c *roomsCluster) waitJobNodes(t testing.TB, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(c.job.job.Stats().Nodes) >= n },
		15*time.Second, 20*time.Millisecond, "job never saw %d nodes", n)
}

// messages is how many messages each node received from job so far.
func (c *roomsCluster) messages() []uint64 {
	out := make([]uint64, len(c.clouds))
	for i, a := range c.clouds {
		out[i] = a.cloud.Stats().Messages
	}
	return out
}

// dial connects a ver-2 client to node i.
func (c *roomsCluster) dial(t testing.TB, i int, mid int64, key, room string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Config{Addr: c.clouds[i].Addr("tcp"), Mid: mid, Key: key, Room: room,
		Extensions: true, Buffer: 4096, Heartbeat: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// pushRoom pushes body to room through the Pusher and fails the test if
// it is not accepted.
func (c *roomsCluster) pushRoom(t testing.TB, room, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.logic.pusher.PushRoom(ctx, 1000, room, []byte(body))
	require.NoError(t, err)
}

// inbox collects what one client receives, by body.
type inbox struct {
	mu   sync.Mutex
	got  []string
	more chan struct{}
	done chan struct{} // closed once Messages() is: nothing more comes
}

func collect(cl *client.Client) *inbox {
	in := &inbox{more: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(in.done)
		for p := range cl.Messages() {
			in.mu.Lock()
			in.got = append(in.got, string(p.Body))
			in.mu.Unlock()
			select {
			case in.more <- struct{}{}:
			default:
			}
		}
	}()
	return in
}

func (in *inbox) bodies() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.got...)
}

// waitBody waits until body arrived, at most timeout.
func (in *inbox) waitBody(body string, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		in.mu.Lock()
		for _, b := range in.got {
			if b == body {
				in.mu.Unlock()
				return true
			}
		}
		in.mu.Unlock()
		select {
		case <-in.more:
		case <-deadline.C:
			return false
		}
	}
}

// runReach spreads rooms over the cluster's nodes (room r has members on
// 1-3 of them, one client each) and checks that every room push reaches
// exactly its members, and that each node received exactly the pushes of
// the rooms it has members in: job sent the others nowhere. It returns
// how many node deliveries the pushes took.
func runReach(t testing.TB, c *roomsCluster, rooms, perNode int) int {
	t.Helper()
	nodes := len(c.clouds)
	clients := make([][]*client.Client, nodes)
	inboxes := make([][]*inbox, nodes)
	for n := range nodes {
		for k := range perNode {
			cl := c.dial(t, n, int64(n*perNode+k+1), fmt.Sprintf("n%d-c%d", n, k), "")
			clients[n] = append(clients[n], cl)
			inboxes[n] = append(inboxes[n], collect(cl))
		}
	}
	members := map[string][]*inbox{}
	memberRooms := make([]uint64, nodes)
	deliveries := 0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for r := range rooms {
		room := fmt.Sprintf("live://%d", r)
		for j := 0; j <= r%3 && j < nodes; j++ {
			n := (r + j) % nodes
			k := (r / nodes) % perNode
			_, err := clients[n][k].Join(ctx, room)
			require.NoError(t, err)
			members[room] = append(members[room], inboxes[n][k])
			memberRooms[n]++
			deliveries++
		}
	}
	before := c.messages()
	for r := range rooms {
		c.pushRoom(t, fmt.Sprintf("live://%d", r), fmt.Sprintf("room %d", r))
	}
	for room, ins := range members {
		body := "room " + strings.TrimPrefix(room, "live://")
		for _, in := range ins {
			require.True(t, in.waitBody(body, 30*time.Second), "a member of %s did not get its push", room)
		}
	}
	// Nothing reached a connection outside its rooms.
	for n := range nodes {
		for k := range perNode {
			for _, b := range inboxes[n][k].bodies() {
				room := "live://" + strings.TrimPrefix(b, "room ")
				require.True(t, slices.Contains(members[room], inboxes[n][k]),
					"node %d client %d got %q outside its rooms", n, k, b)
			}
		}
	}
	// Each node received the pushes of its rooms, and no other.
	require.Eventually(t, func() bool {
		after := c.messages()
		for n := range nodes {
			if after[n]-before[n] != memberRooms[n] {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "messages per node: before %v, after %v, member rooms %v", before, c.messages(), memberRooms)
	require.Zero(t, c.job.job.Stats().RoomFallbacks, "room pushes fanned out to every node")
	return deliveries
}

// TestRoomPushesReachOnlyMemberNodes is runReach at test size.
func TestRoomPushesReachOnlyMemberNodes(t *testing.T) {
	c := startRoomsCluster(t, 5)
	runReach(t, c, 60, 6)
}

// BenchmarkRoomReach is runReach at the size: 20 nodes, 1,000
// rooms (make bench-rooms).
func BenchmarkRoomReach(b *testing.B) {
	for range b.N {
		c := startRoomsCluster(b, 20)
		deliveries := runReach(b, c, 1000, 25)
		b.ReportMetric(float64(deliveries)/1000, "nodes/push")
	}
}

// TestFirstMemberRace is the race room-aware dispatch must not lose: a
// client enters a room no one on its node is in, and a push the API
// accepts right after the reply must reach it. The node writes its
// membership before the reply, and job reads memberships after it
// received the push, so it cannot miss it. By Join, by the auth room and
// by ChangeRoom, alternately, on two nodes.
func TestFirstMemberRace(t *testing.T) {
	const rounds = 1000
	c := startRoomsCluster(t, 2)
	joiners := []*client.Client{c.dial(t, 0, 1, "joiner-0", ""), c.dial(t, 1, 2, "joiner-1", "")}
	inboxes := []*inbox{collect(joiners[0]), collect(joiners[1])}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range rounds {
		room := fmt.Sprintf("race://%d", i)
		body := fmt.Sprintf("first %d", i)
		n := i % 2
		var in *inbox
		switch i % 3 {
		case 0:
			_, err := joiners[n].Join(ctx, room)
			require.NoError(t, err)
			in = inboxes[n]
		case 1:
			cl := c.dial(t, n, int64(1000+i), fmt.Sprintf("auth-%d", i), room)
			in = collect(cl)
		default:
			cl := c.dial(t, n, int64(1000+i), fmt.Sprintf("change-%d", i), "")
			in = collect(cl)
			require.NoError(t, cl.ChangeRoom(ctx, room))
		}
		c.pushRoom(t, room, body)
		require.True(t, in.waitBody(body, 10*time.Second), "round %d (%s): the push after the reply was lost", i, room)
		if i%3 == 0 {
			require.NoError(t, joiners[n].Leave(ctx, room))
		}
	}
}
