package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/require"
)

// memRooms is a Rooms the test edits: room -> member nodes. While fail is
// set its lookups fail; while gate is set each lookup, its answer taken,
// waits for gate before it returns it. Every call's rooms are recorded,
// and onLookup (if set) runs at the start of each call.
type memRooms struct {
	mu       sync.Mutex
	nodes    map[string][]string
	fail     error
	gate     chan struct{}
	calls    [][]string
	onLookup func(rooms []string)
}

func newMemRooms(members map[string][]string) *memRooms {
	return &memRooms{nodes: members}
}

func (r *memRooms) NodesByRooms(ctx context.Context, rooms []string) (map[string][]string, error) {
	r.mu.Lock()
	hook := r.onLookup
	r.mu.Unlock()
	if hook != nil {
		hook(rooms)
	}
	r.mu.Lock()
	gate, err := r.gate, r.fail
	r.calls = append(r.calls, slices.Clone(rooms))
	out := make(map[string][]string)
	for _, room := range rooms {
		if nodes := r.nodes[room]; len(nodes) > 0 {
			out[room] = slices.Clone(nodes)
		}
	}
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (r *memRooms) set(fn func(r *memRooms)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r)
}

func (r *memRooms) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// recorded is the number of fan-outs in the job's record for late nodes.
func recorded(j *Job) int {
	j.dir.mu.Lock()
	defer j.dir.mu.Unlock()
	return len(j.dir.recent.q) - j.dir.recent.head
}

func seqOf(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(prefix, i)
	}
	return out
}

// startTestNodes starts n test link servers named a, b, c...
func startTestNodes(t testing.TB, n int) ([]*testNode, *memDir) {
	t.Helper()
	nodes := make([]*testNode, n)
	dir := newMemDir()
	for i := range nodes {
		nodes[i] = startTestNode(t, string(rune('a'+i)), secret)
		dir.put(nodes[i].node())
	}
	return nodes, dir
}

func TestRoomPushOnlyToMemberNodes(t *testing.T) {
	nodes, dir := startTestNodes(t, 5)
	rooms := newMemRooms(map[string][]string{"live://1": {"b", "d"}, "live://2": {"a"}})
	src := newMemQueue(t, 4)
	cfg := fastConfig(src, dir)
	cfg.Rooms = rooms
	j := startJob(t, cfg)

	const n = 50
	for i := 0; i < n; i++ {
		src.publish(roomMsg("live://1", fmt.Sprint("r1-", i)), roomMsg("live://2", fmt.Sprint("r2-", i)))
	}
	src.publish(&imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1002, Body: []byte("bc")})

	want := map[string][]string{
		"a": seqOf("r2-", n), "b": seqOf("r1-", n), "c": nil, "d": seqOf("r1-", n), "e": nil,
	}
	for _, node := range nodes {
		got := node.waitCount(t, len(want[node.id])+1, 5*time.Second)
		require.Equal(t, []string{"bc"}, bodies(got, func(m *imcloud.Message) bool { return m.Kind == imcloud.KindBroadcast }),
			"node %s: broadcasts go to every node", node.id)
		require.Equal(t, want[node.id], bodies(got, func(m *imcloud.Message) bool { return m.Kind == imcloud.KindRoom }),
			"node %s: its rooms' pushes, in order, nothing else", node.id)
	}
	eventually(t, src.allCommitted, 5*time.Second, "all committed")
	time.Sleep(50 * time.Millisecond) // nothing more arrives
	for _, node := range nodes {
		require.Len(t, node.messages(), len(want[node.id])+1, "node %s", node.id)
	}
	s := j.Stats()
	require.EqualValues(t, 3*n+5, s.Delivered)
	require.Zero(t, s.RoomFallbacks)
	require.Zero(t, s.RoomLookupErrors)
	require.Zero(t, s.RoomNoMembers)
	require.Zero(t, s.Unroutable)
	require.LessOrEqual(t, rooms.callCount(), 2*n, "one lookup per batch")
	require.Equal(t, 1, recorded(j), "only the broadcast is in the record for late nodes")
}

func TestRoomWithoutMembersDeliversNothingAndCommits(t *testing.T) {
	nodes, dir := startTestNodes(t, 2)
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, dir)
	cfg.Rooms = newMemRooms(map[string][]string{"live://1": {"a"}})
	j := startJob(t, cfg)

	src.publish(roomMsg("live://empty", "e0"), roomMsg("live://empty", "e1"), roomMsg("live://1", "r1"),
		keysMsg("b", "keys"))
	nodes[0].waitCount(t, 1, 5*time.Second)
	nodes[1].waitCount(t, 1, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "a room without members commits")
	require.Equal(t, []string{"r1"}, bodies(nodes[0].messages(), nil))
	require.Equal(t, []string{"keys"}, bodies(nodes[1].messages(), nil))
	s := j.Stats()
	require.EqualValues(t, 2, s.RoomNoMembers)
	require.Zero(t, s.Unroutable, "no members is not unroutable")
	require.Zero(t, s.RoomFallbacks)
	require.EqualValues(t, 2, s.Delivered)
}

// logCounter is a slog.Handler that counts the records by message.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logCounter) WithGroup(string) slog.Handler            { return h }

func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = map[string]int{}
	}
	h.counts[r.Message]++
	return nil
}

func (h *logCounter) count(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for msg, c := range h.counts {
		if strings.HasPrefix(msg, prefix) {
			n += c
		}
	}
	return n
}

func TestRoomLookupFailureFansOutToEveryNode(t *testing.T) {
	nodes, dir := startTestNodes(t, 3)
	rooms := newMemRooms(map[string][]string{"live://1": {"a"}})
	rooms.fail = errors.New("router rebuilding")
	var logs logCounter
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, dir)
	cfg.Rooms = rooms
	cfg.Logger = slog.New(&logs)
	j := startJob(t, cfg)

	// One at a time: each is a batch, each lookup fails.
	const n = 5
	for i := 0; i < n; i++ {
		src.publish(roomMsg("live://1", fmt.Sprint("f", i)))
		for _, node := range nodes {
			node.waitCount(t, i+1, 5*time.Second)
		}
	}
	eventually(t, src.allCommitted, 5*time.Second, "committed once every node has them")
	for _, node := range nodes {
		require.Equal(t, seqOf("f", n), bodies(node.messages(), nil), "node %s: everything, in order", node.id)
	}
	s := j.Stats()
	require.EqualValues(t, n, s.RoomFallbacks)
	require.EqualValues(t, n, s.RoomLookupErrors)
	require.EqualValues(t, 3*n, s.Delivered)
	require.Equal(t, n, recorded(j), "what fanned out is in the record for late nodes")
	require.Equal(t, 1, logs.count("job: room member lookup failed"), "logged once per failure streak")

	// The router is back: member nodes only, and the streak's end logged.
	rooms.set(func(r *memRooms) { r.fail = nil })
	src.publish(roomMsg("live://1", "ok"))
	nodes[0].waitCount(t, n+1, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "committed")
	require.Len(t, nodes[1].messages(), n)
	require.Len(t, nodes[2].messages(), n)
	require.Equal(t, 1, logs.count("job: room member lookups going through again"))

	// A new streak is logged again.
	rooms.set(func(r *memRooms) { r.fail = errors.New("redis down") })
	src.publish(roomMsg("live://1", "again"))
	nodes[2].waitCount(t, n+1, 5*time.Second)
	require.Equal(t, 2, logs.count("job: room member lookup failed"))
}

// TestRoomMemberNodeUnknownToDirectory: a member node the job has not
// listed yet gets the push after the directory read it asks for, in
// order; a member node the directory never lists is unroutable.
func TestRoomMemberNodeUnknownToDirectory(t *testing.T) {
	a := startTestNode(t, "a", secret)
	c := startTestNode(t, "c", secret)
	dir := newMemDir(a.node())
	rooms := newMemRooms(map[string][]string{"live://1": {"a", "c"}, "live://2": {"a", "ghost"}})
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, dir)
	cfg.Rooms = rooms
	cfg.RefreshInterval = time.Hour // read at start, then only on demand
	j := startJob(t, cfg)
	eventually(t, func() bool { return len(j.Stats().Nodes) == 1 }, 5*time.Second, "a listed")

	dir.put(c.node()) // c registered after the job's read
	for i := 0; i < 10; i++ {
		src.publish(roomMsg("live://1", fmt.Sprint(i)))
	}
	require.Equal(t, seqOf("", 10), bodies(c.waitCount(t, 10, 5*time.Second), nil), "c: every push, in order")
	require.Equal(t, seqOf("", 10), bodies(a.waitCount(t, 10, 5*time.Second), nil))
	eventually(t, src.allCommitted, 5*time.Second, "committed")

	src.publish(roomMsg("live://2", "x"))
	a.waitCount(t, 11, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "a member node never listed does not hold commits")
	s := j.Stats()
	require.EqualValues(t, 1, s.Unroutable, "ghost")
	require.EqualValues(t, 21, s.Delivered)
	require.Zero(t, recorded(j), "member-routed pushes are not in the record for late nodes")
}

// TestLimboMessageNotOvertaken: a message that waits for a node the job
// does not know goes out when a read lists the node, even a read that
// started before it was received; a later message for the node would
// otherwise find the node's worker and overtake it.
func TestLimboMessageNotOvertaken(t *testing.T) {
	a := startTestNode(t, "a", secret)
	dir := &gatedDir{memDir: newMemDir()}
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, dir)
	cfg.RefreshInterval = time.Hour
	j := startJob(t, cfg)
	eventually(t, func() bool { return dir.reads() > 0 }, 5*time.Second, "first read")

	// A read starts, and a's registration lands while it runs.
	dir.hold()
	readDone := make(chan struct{})
	go func() { defer close(readDone); _ = j.dir.refresh(context.Background()) }()
	dir.waitHeld(t)
	dir.put(a.node())
	src.publish(keysMsg("a", "first")) // received after the read started: waits
	eventually(t, func() bool { j.dir.mu.Lock(); defer j.dir.mu.Unlock(); return len(j.dir.limbo) == 1 },
		5*time.Second, "first waits for a read")
	dir.release(1) // the read lists a
	<-readDone
	src.publish(keysMsg("a", "second"))
	got := a.waitCount(t, 1, 5*time.Second)
	require.Equal(t, "first", string(got[0].Body), "the waiting message goes first")
	dir.release(-1)
	require.Equal(t, []string{"first", "second"}, bodies(a.waitCount(t, 2, 5*time.Second), nil))
}

// gatedDir is a memDir whose reads can be held: after hold, each read
// waits until release lets it through.
type gatedDir struct {
	*memDir
	mu    sync.Mutex
	gate  chan struct{}
	held  chan struct{}
	count int
}

func (d *gatedDir) Nodes(ctx context.Context) ([]imcloud.Node, error) {
	d.mu.Lock()
	d.count++
	gate, held := d.gate, d.held
	d.mu.Unlock()
	if gate != nil {
		signal(held)
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return d.memDir.Nodes(ctx)
}

func (d *gatedDir) reads() int { d.mu.Lock(); defer d.mu.Unlock(); return d.count }

func (d *gatedDir) hold() {
	d.mu.Lock()
	d.gate, d.held = make(chan struct{}, 16), make(chan struct{}, 1)
	d.mu.Unlock()
}

func (d *gatedDir) waitHeld(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	held := d.held
	d.mu.Unlock()
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("no read")
	}
}

// release lets n held reads through, every one from now on if n < 0.
func (d *gatedDir) release(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n < 0 {
		close(d.gate)
		d.gate = nil
		return
	}
	for range n {
		d.gate <- struct{}{}
	}
}

// TestRoomFirstMemberSeenByLaterPush: a lookup already running cannot
// answer for a push received after it started. The node's membership
// is written (the join's reply) while the partition's previous lookup
// is in flight, then the push is accepted: it gets a lookup of its own
// that finds the new member.
func TestRoomFirstMemberSeenByLaterPush(t *testing.T) {
	nodes, dir := startTestNodes(t, 2)
	rooms := newMemRooms(map[string][]string{"live://1": {"a"}})
	gate := make(chan struct{})
	rooms.gate = gate
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, dir)
	cfg.Rooms = rooms
	j := startJob(t, cfg)

	src.publish(roomMsg("live://1", "before"))
	eventually(t, func() bool { return rooms.callCount() == 1 }, 5*time.Second, "the first lookup runs")
	rooms.set(func(r *memRooms) { r.nodes["live://1"] = []string{"a", "b"} }) // b's first member joined
	src.publish(roomMsg("live://1", "after"))
	eventually(t, func() bool { return j.Stats().Consumed == 2 }, 5*time.Second, "received")
	close(gate)

	require.Equal(t, []string{"after"}, bodies(nodes[1].waitCount(t, 1, 5*time.Second), nil))
	require.Equal(t, []string{"before", "after"}, bodies(nodes[0].waitCount(t, 2, 5*time.Second), nil))
	eventually(t, src.allCommitted, 5*time.Second, "committed")
}

// TestRoomCommitWaitsForEveryMemberNode: a room push on two nodes is
// committed only once both acknowledged it, and holds the records after
// it in its partition.
func TestRoomCommitWaitsForEveryMemberNode(t *testing.T) {
	nodes, dir := startTestNodes(t, 3)
	a, b := nodes[0], nodes[1]
	b.stop() // down, still registered
	rooms := newMemRooms(map[string][]string{"live://1": {"a", "b"}})
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, dir)
	cfg.Rooms = rooms
	j := startJob(t, cfg)

	src.publish(roomMsg("live://1", "r0"), keysMsg("a", "k0"), roomMsg("live://1", "r1"), keysMsg("c", "k1"))
	a.waitCount(t, 3, 5*time.Second)
	nodes[2].waitCount(t, 1, 5*time.Second)
	eventually(t, func() bool { return j.Stats().Retried > 0 }, 5*time.Second, "b failing")
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, 4, src.Len(), "nothing committed: b has not acknowledged r0")
	require.Equal(t, 4, j.Stats().Partitions[0].Uncommitted)
	require.Equal(t, 2, j.Stats().Nodes["b"].Lag)

	b.restart(t)
	require.Equal(t, []string{"r0", "r1"}, bodies(b.waitCount(t, 2, 10*time.Second), nil))
	eventually(t, src.allCommitted, 5*time.Second, "committed once b acknowledged")
	require.EqualValues(t, 6, j.Stats().Delivered)
}

// eventHistory is a storeHistory that logs the rooms of each append
// that went through.
type eventHistory struct {
	*storeHistory
	log func(event string)
}

func (h eventHistory) Append(ctx context.Context, items []imcloud.HistoryAppend) error {
	if err := h.storeHistory.Append(ctx, items); err != nil {
		return err
	}
	var rooms []string
	for _, it := range items {
		rooms = append(rooms, strings.TrimPrefix(string(it.Stream), "r:"))
	}
	slices.Sort(rooms)
	h.log(fmt.Sprint("rooms ", slices.Compact(rooms)))
	return nil
}

// TestRoomHistoryAppendBeforeLookup: with History, each batch's room
// pushes are appended, then their rooms looked up, both for the same
// batch, and what is delivered carries its stream position.
func TestRoomHistoryAppendBeforeLookup(t *testing.T) {
	nodes, dir := startTestNodes(t, 3)
	var mu sync.Mutex
	var appends, lookups []string
	h := eventHistory{storeHistory: newStoreHistory(), log: func(e string) {
		mu.Lock()
		defer mu.Unlock()
		appends = append(appends, e)
	}}
	h.down.Store(true) // the partition waits: the records after the first make one batch
	rooms := newMemRooms(map[string][]string{"live://1": {"a"}, "live://2": {"b", "c"}})
	rooms.onLookup = func(rs []string) {
		mu.Lock()
		defer mu.Unlock()
		if len(appends) != len(lookups)+1 {
			lookups = append(lookups, fmt.Sprint("a lookup not after its append: ", rs))
			return
		}
		lookups = append(lookups, fmt.Sprint("rooms ", rs))
	}
	src := newMemQueue(t, 1)
	cfg := historyConfig(src, dir, newUsers(t), h)
	cfg.Rooms = rooms
	j := startJob(t, cfg)

	src.publish(roomMsg("live://1", "x0"), roomMsg("live://2", "y0"), roomMsg("live://1", "x1"),
		roomMsg("live://3", "z0"), roomMsg("live://2", "y1"))
	eventually(t, func() bool { return j.Stats().HistoryErrors >= 2 }, 5*time.Second, "appends retried")
	require.Zero(t, rooms.callCount(), "no lookup before the append went through")
	h.down.Store(false)
	gotA := nodes[0].waitCount(t, 2, 5*time.Second)
	gotB := nodes[1].waitCount(t, 2, 5*time.Second)
	gotC := nodes[2].waitCount(t, 2, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "committed")

	mu.Lock()
	require.Equal(t, appends, lookups, "each batch: its append, then the lookup of the same rooms")
	require.LessOrEqual(t, len(lookups), 2, "the records that waited went as one batch")
	mu.Unlock()
	require.Equal(t, []string{"x0", "x1"}, bodies(gotA, nil))
	require.Equal(t, []string{"y0", "y1"}, bodies(gotB, nil))
	require.Equal(t, []string{"y0", "y1"}, bodies(gotC, nil))
	for _, got := range [][]*imcloud.Message{gotA, gotB, gotC} {
		checkPlaced(t, h, got)
		for _, m := range got {
			require.NotEmpty(t, m.Stream)
		}
	}
	s := j.Stats()
	require.EqualValues(t, 5, s.HistoryAppended, "the room without members is in its history")
	require.EqualValues(t, 1, s.RoomNoMembers)
}

// TestRoomsOnTheMemoryRouter: logic's memory router as the directory
// and the Rooms: pushes go to the member nodes it lists, and while it
// rebuilds after losing its data they fan out to every node the job
// keeps.
func TestRoomsOnTheMemoryRouter(t *testing.T) {
	ctx := context.Background()
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{RebuildWindow: time.Hour})
	nodes, _ := startTestNodes(t, 3)
	for _, n := range nodes {
		require.NoError(t, router.PutNode(ctx, n.node(), time.Hour))
	}
	require.NoError(t, router.PutRooms(ctx, "b", []string{"live://1"}, nil, time.Hour))
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, router)
	cfg.Rooms = router
	j := startJob(t, cfg)

	src.publish(roomMsg("live://1", "members"))
	nodes[1].waitCount(t, 1, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "committed")
	require.Empty(t, nodes[0].messages())
	require.Empty(t, nodes[2].messages())

	router.Wipe()
	src.publish(roomMsg("live://1", "rebuilding"))
	for i, n := range nodes {
		want := []string{"rebuilding"}
		if i == 1 {
			want = []string{"members", "rebuilding"}
		}
		require.Equal(t, want, bodies(n.waitCount(t, len(want), 5*time.Second), nil), "node %s", n.id)
	}
	eventually(t, src.allCommitted, 5*time.Second, "committed")
	require.EqualValues(t, 1, j.Stats().RoomFallbacks)
}
