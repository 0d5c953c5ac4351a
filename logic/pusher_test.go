package logic_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// funcQueue is a Queue whose Publish is a function.
type funcQueue struct {
	publish func(ctx context.Context, msgs []*imcloud.Message) error
}

func (q funcQueue) Publish(ctx context.Context, msgs []*imcloud.Message) error {
	return q.publish(ctx, msgs)
}

// failingRouter is a Router whose lookups fail.
type failingRouter struct{ *logic.MemoryRouter }

var errBackend = errors.New("backend down")

func (failingRouter) NodesByMids(context.Context, []int64) (map[string]string, error) {
	return nil, errBackend
}

func (failingRouter) NodesByMidsOffline(context.Context, []int64) (map[string]string, []int64, error) {
	return nil, nil, errBackend
}

// env is a Pusher over the memory backends with a few sessions online:
// mid 1 on node-a (k1) and node-b (k2), mid 2 on node-a (k3).
type env struct {
	router *logic.MemoryRouter
	queue  *logic.MemoryQueue
	p      *logic.Pusher
}

func newEnv(t *testing.T, cfg logic.Config) *env {
	t.Helper()
	e := &env{router: logic.NewMemoryRouter(logic.MemoryRouterConfig{}), queue: logic.NewMemoryQueue(logic.MemoryQueueConfig{})}
	ctx := context.Background()
	require.NoError(t, e.router.PutSessions(ctx, []imcloud.Session{
		{Mid: 1, Key: "k1", Node: "node-a", Gen: 1},
		{Mid: 1, Key: "k2", Node: "node-b", Gen: 1},
		{Mid: 2, Key: "k3", Node: "node-a", Gen: 1},
	}, time.Minute))
	if cfg.Router == nil {
		cfg.Router = e.router
	}
	if cfg.Queue == nil {
		cfg.Queue = e.queue
	}
	p, err := logic.New(cfg)
	require.NoError(t, err)
	e.p = p
	t.Cleanup(func() { _ = p.Close(); _ = e.queue.Close() })
	return e
}

// drain returns every message in the queue.
func (e *env) drain(t *testing.T) []*imcloud.Message {
	t.Helper()
	recs := e.drainRecords(t)
	var out []*imcloud.Message
	for i := range recs {
		out = append(out, &recs[i].msg)
	}
	return out
}

func TestNewRequiresBackends(t *testing.T) {
	_, err := logic.New(logic.Config{})
	require.ErrorIs(t, err, logic.ErrInvalidArgument)
	_, err = logic.New(logic.Config{Router: logic.NewMemoryRouter(logic.MemoryRouterConfig{})})
	require.ErrorIs(t, err, logic.ErrInvalidArgument)
}

func TestPushMidsOneMessagePerNode(t *testing.T) {
	e := newEnv(t, logic.Config{})
	ctx := context.Background()
	res, err := e.p.PushMids(ctx, 1000, []int64{1, 2, 404}, []byte("hi"))
	require.NoError(t, err)
	res.ID = imcloud.MessageID{} // the id: TestPushWithID
	assert.Equal(t, logic.Result{Nodes: 2, Keys: 3, Messages: 2, Offline: []int64{404}}, res)

	msgs := e.drain(t)
	require.Len(t, msgs, 2)
	byNode := map[string][]string{}
	for _, m := range msgs {
		assert.Equal(t, imcloud.KindKeys, m.Kind)
		assert.Equal(t, int32(1000), m.Op)
		assert.Equal(t, "hi", string(m.Body))
		assert.False(t, m.ID.IsZero())
		assert.False(t, m.Accepted.IsZero())
		assert.True(t, m.Expires.IsZero(), "no expiry unless asked")
		keys := append([]string(nil), m.Keys...)
		sort.Strings(keys)
		byNode[m.Node] = keys
	}
	assert.Equal(t, map[string][]string{"node-a": {"k1", "k3"}, "node-b": {"k2"}}, byNode)
	assert.Equal(t, msgs[0].ID, msgs[1].ID, "the messages of one push share its id (each node drops a copy on its own)")
}

func TestPushKeys(t *testing.T) {
	e := newEnv(t, logic.Config{})
	ctx := context.Background()
	res, err := e.p.PushKeys(ctx, 1000, []string{"k2", "gone"}, []byte("x"))
	require.NoError(t, err)
	res.ID = imcloud.MessageID{} // the id: TestPushWithID
	assert.Equal(t, logic.Result{Nodes: 1, Keys: 1, Messages: 1}, res)
	msgs := e.drain(t)
	require.Len(t, msgs, 1)
	assert.Equal(t, "node-b", msgs[0].Node)
	assert.Equal(t, []string{"k2"}, msgs[0].Keys)

	res, err = e.p.PushKeys(ctx, 1000, []string{"nobody"}, []byte("x"))
	require.NoError(t, err, "a push to nobody online succeeds")
	res.ID = imcloud.MessageID{} // the id: TestPushWithID
	assert.Equal(t, logic.Result{}, res)
	assert.Empty(t, e.drain(t))
}

func TestPushRoomAndBroadcast(t *testing.T) {
	e := newEnv(t, logic.Config{PushExpiry: time.Minute})
	ctx := context.Background()
	res, err := e.p.PushRoom(ctx, 1001, "live://1000", []byte("r"))
	require.NoError(t, err)
	res.ID = imcloud.MessageID{} // the id: TestPushWithID
	assert.Equal(t, logic.Result{Messages: 1}, res)
	res, err = e.p.Broadcast(ctx, 1002, []byte("b"), 50, logic.WithExpiry(time.Hour))
	require.NoError(t, err)
	res.ID = imcloud.MessageID{} // the id: TestPushWithID
	assert.Equal(t, logic.Result{Messages: 1}, res)

	msgs := e.drain(t)
	require.Len(t, msgs, 2)
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].Kind < msgs[j].Kind })
	room, bc := msgs[0], msgs[1]
	assert.Equal(t, imcloud.KindRoom, room.Kind)
	assert.Equal(t, "live://1000", room.Room)
	assert.WithinDuration(t, time.Now().Add(time.Minute), room.Expires, 5*time.Second, "Config.PushExpiry applies")
	assert.Equal(t, imcloud.KindBroadcast, bc.Kind)
	assert.Equal(t, int32(50), bc.Speed)
	assert.WithinDuration(t, time.Now().Add(time.Hour), bc.Expires, 5*time.Second, "WithExpiry wins")

	at := time.Now().Add(3 * time.Minute).Truncate(time.Millisecond)
	_, err = e.p.PushRoom(ctx, 1001, "live://1", nil, logic.WithExpiresAt(at))
	require.NoError(t, err)
	msgs = e.drain(t)
	require.Len(t, msgs, 1)
	assert.True(t, at.Equal(msgs[0].Expires))
}

func TestPushBadArguments(t *testing.T) {
	e := newEnv(t, logic.Config{})
	ctx := context.Background()
	cases := []struct {
		name string
		call func() error
	}{
		{"zero op", func() error { _, err := e.p.PushMids(ctx, 0, []int64{1}, nil); return err }},
		{"negative op", func() error { _, err := e.p.PushKeys(ctx, -1, []string{"k"}, nil); return err }},
		{"protocol op 6", func() error { _, err := e.p.PushRoom(ctx, 6, "live://1", nil); return err }},
		{"op 999", func() error { _, err := e.p.Broadcast(ctx, 999, nil, 0); return err }},
		{"no mids", func() error { _, err := e.p.PushMids(ctx, 1000, nil, nil); return err }},
		{"no keys", func() error { _, err := e.p.PushKeys(ctx, 1000, []string{}, nil); return err }},
		{"empty key", func() error { _, err := e.p.PushKeys(ctx, 1000, []string{""}, nil); return err }},
		{"room without type", func() error { _, err := e.p.PushRoom(ctx, 1000, "1000", nil); return err }},
		{"room empty id", func() error { _, err := e.p.PushRoom(ctx, 1000, "live://", nil); return err }},
		{"negative speed", func() error { _, err := e.p.Broadcast(ctx, 1000, nil, -1); return err }},
		{"async no mids", func() error { return e.p.PushAsync(ctx, logic.ToMids(), 1000, nil, nil) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, tc.call(), logic.ErrInvalidArgument)
		})
	}
	assert.Zero(t, e.queue.Len())
}

func TestPushBackendErrors(t *testing.T) {
	mem := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	e := newEnv(t, logic.Config{Router: failingRouter{mem}})
	_, err := e.p.PushMids(context.Background(), 1000, []int64{1}, nil)
	require.ErrorIs(t, err, logic.ErrRouter)
	require.ErrorIs(t, err, errBackend)

	e = newEnv(t, logic.Config{Queue: funcQueue{func(context.Context, []*imcloud.Message) error { return errBackend }}})
	_, err = e.p.PushRoom(context.Background(), 1000, "live://1", nil)
	require.ErrorIs(t, err, logic.ErrQueue)
	require.ErrorIs(t, err, errBackend)
	assert.Equal(t, uint64(1), e.p.Stats().Failed)
}

// TestPushDuration: a push's duration runs from the call to the queue's
// acceptance; failed pushes are not observed.
func TestPushDuration(t *testing.T) {
	fail := false
	e := newEnv(t, logic.Config{Queue: funcQueue{func(context.Context, []*imcloud.Message) error {
		time.Sleep(20 * time.Millisecond)
		if fail {
			return errBackend
		}
		return nil
	}}})
	_, err := e.p.PushRoom(context.Background(), 1000, "live://1", nil)
	require.NoError(t, err)
	fail = true
	_, err = e.p.PushRoom(context.Background(), 1000, "live://1", nil)
	require.ErrorIs(t, err, errBackend)
	d := e.p.Stats().Duration
	require.EqualValues(t, 1, d.Count)
	require.GreaterOrEqual(t, d.Sum, 0.02, "the queue's time is part of it")
	require.NotEmpty(t, d.Bounds)
}

func TestPushAsync(t *testing.T) {
	e := newEnv(t, logic.Config{})
	type outcome struct {
		res logic.Result
		err error
	}
	got := make(chan outcome, 4)
	done := func(r logic.Result, err error) { got <- outcome{r, err} }
	ctx := context.Background()
	require.NoError(t, e.p.PushAsync(ctx, logic.ToMids(1), 1000, []byte("a"), done))
	require.NoError(t, e.p.PushAsync(ctx, logic.ToKeys("k3"), 1000, []byte("a"), done))
	require.NoError(t, e.p.PushAsync(ctx, logic.ToRoom("live://1"), 1000, []byte("a"), done))
	require.NoError(t, e.p.PushAsync(ctx, logic.ToAll(), 1000, []byte("a"), nil), "a nil callback is allowed")
	total := 0
	for i := 0; i < 3; i++ {
		o := <-got
		require.NoError(t, o.err)
		total += o.res.Messages
	}
	assert.Equal(t, 4, total) // 2 for mid 1, 1 for k3, 1 room
	require.NoError(t, e.p.Close())
	assert.Equal(t, 5, e.queue.Len(), "Close waited for the async broadcast")
	st := e.p.Stats()
	assert.Equal(t, uint64(4), st.Pushes)
	assert.Equal(t, uint64(5), st.Messages)
}

func TestPushAsyncFailureCounted(t *testing.T) {
	e := newEnv(t, logic.Config{Queue: funcQueue{func(context.Context, []*imcloud.Message) error { return errBackend }}})
	got := make(chan error, 1)
	require.NoError(t, e.p.PushAsync(context.Background(), logic.ToRoom("live://1"), 1000, nil, func(_ logic.Result, err error) { got <- err }))
	require.ErrorIs(t, <-got, errBackend)
	assert.Equal(t, uint64(1), e.p.Stats().AsyncFailed)
}

// blockingQueue holds every Publish until release is closed.
func blockingQueue(started chan<- struct{}, release <-chan struct{}) funcQueue {
	return funcQueue{func(ctx context.Context, _ []*imcloud.Message) error {
		started <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
}

func TestPoolSaturatedIsOverloaded(t *testing.T) {
	started := make(chan struct{}, 100)
	release := make(chan struct{})
	var wg sync.WaitGroup
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }); wg.Wait() }
	e := newEnv(t, logic.Config{Queue: blockingQueue(started, release), PoolSize: 2, MaxBlockingTasks: 1})
	defer unblock()
	ctx := context.Background()
	for i := 0; i < 2; i++ { // occupy both workers
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = e.p.Broadcast(ctx, 1000, nil, 0) }()
	}
	<-started
	<-started
	wg.Add(1)
	go func() { defer wg.Done(); _, _ = e.p.Broadcast(ctx, 1000, nil, 0) }() // the one allowed waiter
	require.Eventually(t, func() bool { return e.p.Stats().Waiting == 1 }, 5*time.Second, time.Millisecond)
	_, err := e.p.Broadcast(ctx, 1000, nil, 0)
	require.ErrorIs(t, err, logic.ErrOverloaded)

	// Many more callers: every one is refused at once, nothing piles up.
	var refused atomic.Int64
	var cw sync.WaitGroup
	for i := 0; i < 200; i++ {
		cw.Add(1)
		go func() {
			defer cw.Done()
			if err := e.p.PushAsync(ctx, logic.ToRoom("live://1"), 1000, nil, nil); errors.Is(err, logic.ErrOverloaded) {
				refused.Add(1)
			}
		}()
	}
	cw.Wait()
	assert.Equal(t, int64(200), refused.Load())
	st := e.p.Stats()
	assert.Equal(t, uint64(201), st.Overloaded)
	assert.Equal(t, 2, st.Running)
	assert.Equal(t, 1, st.Waiting)

	unblock()
	_, err = e.p.Broadcast(ctx, 1000, nil, 0)
	require.NoError(t, err, "works again once the pool drains")
}

func TestPushContextEnds(t *testing.T) {
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	defer close(release)
	e := newEnv(t, logic.Config{Queue: blockingQueue(started, release)})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := e.p.PushRoom(ctx, 1000, "live://1", nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestShutdown(t *testing.T) {
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	e := newEnv(t, logic.Config{Queue: blockingQueue(started, release)})
	require.NoError(t, e.p.PushAsync(context.Background(), logic.ToRoom("live://1"), 1000, nil, nil))
	<-started

	short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, e.p.Shutdown(short), context.DeadlineExceeded, "a push is still in flight")
	_, err := e.p.PushRoom(context.Background(), 1000, "live://1", nil)
	require.ErrorIs(t, err, logic.ErrClosed, "no new pushes after Shutdown began")
	require.ErrorIs(t, e.p.PushAsync(context.Background(), logic.ToMids(1), 1000, nil, nil), logic.ErrClosed)

	close(release)
	require.NoError(t, e.p.Shutdown(context.Background()))
	require.NoError(t, e.p.Shutdown(context.Background()), "idempotent")
	require.NoError(t, e.p.Close())
}

func TestOnlineQueries(t *testing.T) {
	e := newEnv(t, logic.Config{})
	ctx := context.Background()
	require.NoError(t, e.router.PutNode(ctx, imcloud.Node{ID: "node-a", Conns: 10, IPs: 4}, time.Minute))
	require.NoError(t, e.router.PutNode(ctx, imcloud.Node{ID: "node-b", Conns: 5, IPs: 5}, time.Minute))
	require.NoError(t, e.router.PutRoomCounts(ctx, "node-a", map[string]int32{"live://1": 5, "live://2": 9, "chat://1": 50}, time.Minute))
	require.NoError(t, e.router.PutRoomCounts(ctx, "node-b", map[string]int32{"live://1": 5, "live://3": 1}, time.Minute))

	top, err := e.p.TopRooms(ctx, "live", 2)
	require.NoError(t, err)
	assert.Equal(t, []logic.RoomCount{{Room: "1", Count: 10}, {Room: "2", Count: 9}}, top)
	_, err = e.p.TopRooms(ctx, "live", 0)
	require.ErrorIs(t, err, logic.ErrInvalidArgument)

	counts, err := e.p.RoomCounts(ctx, []string{"live://1", "live://404"})
	require.NoError(t, err)
	assert.Equal(t, map[string]int32{"live://1": 10, "live://404": 0}, counts)

	tot, err := e.p.Totals(ctx)
	require.NoError(t, err)
	assert.Equal(t, logic.Totals{IPs: 9, Conns: 15}, tot)

	nodes, err := e.p.Nodes(ctx)
	require.NoError(t, err)
	assert.Len(t, nodes, 2)
}

// TestPushReservedOps: ops below 1000 are the protocol's; a push of one
// is ErrInvalidOp (an ErrInvalidArgument), and 1000 is the first push op.
func TestPushReservedOps(t *testing.T) {
	e := newEnv(t, logic.Config{})
	ctx := context.Background()
	for _, op := range []int32{0, 1, 3, 4, 6, 7, 8, 9, 999} {
		_, err := e.p.PushRoom(ctx, op, "live://1", []byte("x"))
		require.ErrorIs(t, err, logic.ErrInvalidOp, "op %d", op)
		require.ErrorIs(t, err, logic.ErrInvalidArgument, "op %d", op)
	}
	assert.Zero(t, e.queue.Len())
	_, err := e.p.PushRoom(ctx, 1000, "live://1", []byte("x"))
	require.NoError(t, err)
}
