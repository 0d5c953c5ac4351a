package job

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const secret = "link-secret"

func fastConfig(src Source, dir NodeDirectory) Config {
	return Config{
		Source: src, Directory: dir, LinkSecret: secret,
		RefreshInterval: 50 * time.Millisecond,
		RetryMin:        10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		LinkOptions: LinkOptions{ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond},
	}
}

func TestNewChecksConfig(t *testing.T) {
	_, err := New(Config{Directory: newMemDir()})
	require.ErrorIs(t, err, ErrNoSource)
	_, err = New(Config{Source: newMemQueue(t, 1)})
	require.ErrorIs(t, err, ErrNoDirectory)
	_, err = New(Config{Source: newMemQueue(t, 1), Directory: newMemDir()})
	require.ErrorIs(t, err, ErrNoLinkSecret, "the default Connect without a secret")
	j, err := New(Config{Source: newMemQueue(t, 1), Directory: newMemDir(),
		Connect: func(context.Context, imcloud.Node) (Link, error) { return nil, errors.New("unused") }})
	require.NoError(t, err, "a Connect of the caller's needs no secret")
	require.NoError(t, j.Shutdown(context.Background()))
}

func TestJobDispatchesKeysRoomsBroadcasts(t *testing.T) {
	a := startTestNode(t, "a", secret)
	b := startTestNode(t, "b", secret)
	na, nb := a.node(), b.node()
	na.Conns, nb.Conns = 30, 10
	src := newMemQueue(t, 4)
	j := startJob(t, fastConfig(src, newMemDir(na, nb)))

	const n = 200
	for i := 0; i < n; i++ {
		src.publish(keysMsg("a", fmt.Sprint("a", i)), keysMsg("b", fmt.Sprint("b", i)),
			roomMsg("live://1", fmt.Sprint("r1-", i)), roomMsg("live://2", fmt.Sprint("r2-", i)))
	}
	src.publish(&imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1002,
		Speed: 400, Body: []byte("bc")})

	gotA := a.waitCount(t, 3*n+1, 10*time.Second)
	gotB := b.waitCount(t, 3*n+1, 10*time.Second)
	for _, tc := range []struct {
		node, other string
		got         []*imcloud.Message
		speed       int32
	}{{"a", "b", gotA, 300}, {"b", "a", gotB, 100}} {
		t.Run(tc.node, func(t *testing.T) {
			require.Len(t, tc.got, 3*n+1, "nothing extra, no duplicates")
			var keys, r1, r2 []string
			for i := 0; i < n; i++ {
				keys = append(keys, fmt.Sprint(tc.node, i))
				r1 = append(r1, fmt.Sprint("r1-", i))
				r2 = append(r2, fmt.Sprint("r2-", i))
			}
			require.Equal(t, keys, bodies(tc.got, func(m *imcloud.Message) bool { return m.Kind == imcloud.KindKeys }),
				"only this node's keys messages, in order")
			require.Equal(t, r1, bodies(tc.got, func(m *imcloud.Message) bool { return m.Room == "live://1" }))
			require.Equal(t, r2, bodies(tc.got, func(m *imcloud.Message) bool { return m.Room == "live://2" }))
			var bc []*imcloud.Message
			for _, m := range tc.got {
				if m.Kind == imcloud.KindBroadcast {
					bc = append(bc, m)
				}
			}
			require.Len(t, bc, 1)
			require.Equal(t, tc.speed, bc[0].Speed, "broadcast pace split by connections")
		})
	}
	eventually(t, src.allCommitted, 5*time.Second, "every offset committed")
	s := j.Stats()
	require.EqualValues(t, 4*n+1, s.Consumed)
	require.EqualValues(t, 6*n+2, s.Delivered)
	require.Zero(t, s.Skipped)
	eventually(t, func() bool { return j.Stats().Pending == 0 }, time.Second, "nothing pending")
	require.Len(t, s.Nodes, 2)
	require.Positive(t, s.LinkRoundTrip.Count, "the default Connect's link clients observe round trips")
	eventually(t, func() bool {
		parts := j.Stats().Partitions
		for _, p := range parts {
			if p.Uncommitted != 0 || p.Oldest != 0 {
				return false
			}
		}
		return len(parts) > 0
	}, 5*time.Second, "every partition committed: no lag")
}

func TestSplitSpeed(t *testing.T) {
	for _, tc := range []struct {
		speed           int32
		conns, total, n int
		want            int32
	}{
		{1000, 0, 0, 4, 250},
		{1000, 1, 4, 2, 250},
		{1000, 3, 4, 2, 750},
		{3, 0, 0, 4, 1}, // never 0: that would mean unpaced
		{1000, 0, 10, 2, 1},
	} {
		require.Equal(t, tc.want, splitSpeed(tc.speed, tc.conns, tc.total, tc.n), "%+v", tc)
	}
}

func TestJobRoomBatching(t *testing.T) {
	a := startTestNode(t, "a", secret)
	// A slow node: while one request is in flight, room messages queue up
	// and go together in the next.
	a.set(func(n *testNode) { n.ackDelay = 20 * time.Millisecond })
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, newMemDir(a.node()))
	cfg.MaxDelivery = 50
	j := startJob(t, cfg)
	const n = 300
	for i := 0; i < n; i++ {
		src.publish(roomMsg("live://1", fmt.Sprint(i)))
	}
	got := a.waitCount(t, n, 10*time.Second)
	var want []string
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprint(i))
	}
	require.Equal(t, want, bodies(got, nil))
	a.mu.Lock()
	requests := a.requests
	a.mu.Unlock()
	require.Less(t, requests, n/5, "messages were merged")
	require.GreaterOrEqual(t, requests, n/50, "no batch over MaxDelivery")
	_ = j
}

func TestJobLowRateGoesAtOnce(t *testing.T) {
	a := startTestNode(t, "a", secret)
	src := newMemQueue(t, 1)
	startJob(t, fastConfig(src, newMemDir(a.node())))
	// Each message goes alone: nothing waits for a batch to fill.
	for i := 0; i < 5; i++ {
		src.publish(roomMsg("live://1", fmt.Sprint(i)))
		a.waitCount(t, i+1, 5*time.Second)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	require.Equal(t, 5, a.requests)
}

func TestJobPoisonExpiredAndNewerVersion(t *testing.T) {
	a := startTestNode(t, "a", secret)
	src := newRawRecords(newMemQueue(t, 1))
	var mu sync.Mutex
	var dead []imcloud.Record
	failFirst := atomic.Bool{}
	failFirst.Store(true)
	cfg := fastConfig(src, newMemDir(a.node()))
	cfg.DeadLetter = func(ctx context.Context, rec imcloud.Record) error {
		if failFirst.Swap(false) {
			return errors.New("dlq briefly down")
		}
		mu.Lock()
		dead = append(dead, rec)
		mu.Unlock()
		return nil
	}
	j := startJob(t, cfg)

	newer, _ := keysMsg("a", "from the future").MarshalBinary()
	newer[0] = imcloud.MessageMajor + 1 // a major no reader knows
	unknownKind, _ := (&imcloud.Message{ID: imcloud.NewMessageID(), Kind: 9, Op: 1000}).MarshalBinary()
	expired := keysMsg("a", "stale")
	expired.Expires = time.Now().Add(-time.Second)
	fresh := keysMsg("a", "fresh")
	fresh.Expires = time.Now().Add(time.Hour)

	src.publish(keysMsg("a", "first"))
	src.publishRaw([]byte{1, 0, 0xff}) // a field that does not parse
	src.publishRaw(nil)
	src.publishRaw(unknownKind)
	src.publishRaw(newer)
	src.publish(expired, fresh, keysMsg("nobody", "unroutable"), keysMsg("a", "last"))

	got := a.waitCount(t, 3, 5*time.Second)
	require.Equal(t, []string{"first", "fresh", "last"}, bodies(got, nil))
	eventually(t, src.allCommitted, 5*time.Second, "poison is committed past")
	s := j.Stats()
	assert.EqualValues(t, 9, s.Consumed)
	assert.EqualValues(t, 3, s.Skipped)
	assert.EqualValues(t, 1, s.Expired)
	assert.EqualValues(t, 1, s.DeadLettered)
	assert.EqualValues(t, 0, s.DeadLetterFailed)
	assert.EqualValues(t, 1, s.Unroutable)
	mu.Lock()
	require.Len(t, dead, 1)
	require.Equal(t, newer, dead[0].Value)
	require.EqualValues(t, 4, dead[0].Offset)
	mu.Unlock()
}

func TestJobDeadLetterMissingOrFailing(t *testing.T) {
	for _, tc := range []struct {
		name string
		dl   func(context.Context, imcloud.Record) error
	}{
		{"none configured", nil},
		{"always failing", func(context.Context, imcloud.Record) error { return errors.New("down") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newRawRecords(newMemQueue(t, 1))
			cfg := fastConfig(src, newMemDir())
			cfg.DeadLetter = tc.dl
			cfg.DeadLetterAttempts = 3
			j := startJob(t, cfg)
			newer, _ := keysMsg("a", "x").MarshalBinary()
			newer[0] = 200
			src.publishRaw(newer)
			eventually(t, src.allCommitted, 5*time.Second, "consumption goes on")
			require.EqualValues(t, 1, j.Stats().DeadLetterFailed)
		})
	}
}

func TestJobUnreachableNodeDoesNotDelayOthers(t *testing.T) {
	a := startTestNode(t, "a", secret)
	b := startTestNode(t, "b", secret)
	b.stop()                 // down, but still registered
	src := newMemQueue(t, 1) // one partition: a's and b's records interleave
	dir := newMemDir(a.node(), b.node())
	j := startJob(t, fastConfig(src, dir))

	const n = 100
	for i := 0; i < n; i++ {
		src.publish(keysMsg("a", fmt.Sprint(i)), keysMsg("b", fmt.Sprint(i)))
	}
	src.publish(roomMsg("live://1", "room"))
	a.waitCount(t, n+1, 5*time.Second)
	// Commits wait for b: only a's first record is before b's first.
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, 2*n, src.Len(), "watermark stops at b's first message: a's first record alone is committed")
	s := j.Stats()
	require.Greater(t, s.Retried, uint64(0))
	require.Equal(t, n+1, s.Nodes["b"].Lag)
	require.NotEmpty(t, s.Nodes["b"].LastError)
	eventually(t, func() bool { return j.Stats().Partitions[0].Uncommitted == 2*n }, time.Second,
		"the partition's commit lag is every record from b's first on")
	require.GreaterOrEqual(t, j.Stats().Partitions[0].Oldest, 100*time.Millisecond, "held since before the sleep")

	// b comes back and gets everything, in order.
	b.restart(t)
	got := b.waitCount(t, n+1, 10*time.Second)
	var want []string
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprint(i))
	}
	want = append(want, "room")
	require.Equal(t, want, bodies(got, nil))
	eventually(t, src.allCommitted, 5*time.Second, "all committed once b acknowledged")
	require.Zero(t, j.Stats().Nodes["b"].Lag)
}

func TestJobGoneNodeStopsBlocking(t *testing.T) {
	a := startTestNode(t, "a", secret)
	b := startTestNode(t, "b", secret)
	b.stop()
	src := newMemQueue(t, 1)
	dir := newMemDir(a.node(), b.node())
	j := startJob(t, fastConfig(src, dir))
	for i := 0; i < 20; i++ {
		src.publish(keysMsg("b", fmt.Sprint(i)), roomMsg("live://1", fmt.Sprint(i)))
	}
	a.waitCount(t, 20, 5*time.Second)
	require.False(t, src.allCommitted())

	dir.remove("b") // its registration expired
	eventually(t, src.allCommitted, 5*time.Second, "commits pass the gone node")
	s := j.Stats()
	require.EqualValues(t, 40, s.Abandoned)
	require.NotContains(t, s.Nodes, "b")

	// New messages for b are unroutable, room messages go to a alone.
	src.publish(keysMsg("b", "late"), roomMsg("live://1", "after"))
	a.waitCount(t, 21, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "committed")
	require.EqualValues(t, 1, j.Stats().Unroutable)
}

func TestJobNewNodeFoundOnDemand(t *testing.T) {
	a := startTestNode(t, "a", secret)
	src := newMemQueue(t, 1)
	dir := newMemDir()
	cfg := fastConfig(src, dir)
	cfg.RefreshInterval = time.Hour // only the on-demand read can find it
	startJob(t, cfg)
	// Wait until the job read the (empty) directory, then register a.
	eventually(t, func() bool { dir.mu.Lock(); defer dir.mu.Unlock(); return dir.calls > 0 }, 5*time.Second, "first read")
	dir.put(a.node())
	src.publish(keysMsg("a", "hello"))
	require.Equal(t, []string{"hello"}, bodies(a.waitCount(t, 1, 5*time.Second), nil))
}

func TestJobWaitsForDirectory(t *testing.T) {
	a := startTestNode(t, "a", secret)
	src := newMemQueue(t, 1)
	dir := newMemDir(a.node())
	dir.err = errors.New("redis down")
	j := startJob(t, fastConfig(src, dir))
	src.publish(roomMsg("live://1", "r"))
	time.Sleep(100 * time.Millisecond)
	require.Zero(t, j.Stats().Consumed, "no routing without a node list")
	eventually(t, func() bool { return j.Stats().DirectoryErrors > 0 }, 5*time.Second, "the failed reads counted")
	dir.mu.Lock()
	dir.err = nil
	dir.mu.Unlock()
	a.waitCount(t, 1, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "committed")
}

func TestJobRejectingNodeIsRetried(t *testing.T) {
	a := startTestNode(t, "a", secret)
	a.set(func(n *testNode) { n.reject = "overloaded" })
	src := newMemQueue(t, 1)
	j := startJob(t, fastConfig(src, newMemDir(a.node())))
	src.publish(keysMsg("a", "1"), keysMsg("a", "2"))
	eventually(t, func() bool { return j.Stats().Retried >= 2 }, 5*time.Second, "retried")
	require.Empty(t, a.messages())
	a.set(func(n *testNode) { n.reject = "" })
	require.Equal(t, []string{"1", "2"}, bodies(a.waitCount(t, 2, 5*time.Second), nil))
	eventually(t, src.allCommitted, 5*time.Second, "committed")
}

func TestJobCustomConnect(t *testing.T) {
	a := startTestNode(t, "a", secret)
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, newMemDir(a.node()))
	var calls atomic.Int32
	cfg.Connect = func(ctx context.Context, n imcloud.Node) (Link, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("not yet")
		}
		return DialLink(ctx, n.LinkAddr, secret, LinkOptions{})
	}
	startJob(t, cfg)
	src.publish(keysMsg("a", "1"))
	a.waitCount(t, 1, 5*time.Second)
	require.EqualValues(t, 2, calls.Load(), "Connect is asked again after failing")
}

func TestJobShutdownDrainsAndRestartRedelivers(t *testing.T) {
	a := startTestNode(t, "a", secret)
	src := newMemQueue(t, 2)
	dir := newMemDir(a.node())

	j, err := New(fastConfig(src, dir))
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- j.Run(context.Background()) }()
	const n = 500
	for i := 0; i < n; i++ {
		src.publish(roomMsg("live://1", fmt.Sprint(i)))
	}
	a.waitCount(t, 10, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, j.Shutdown(ctx))
	require.NoError(t, <-runErr)
	require.NoError(t, j.Shutdown(ctx), "idempotent")
	require.ErrorIs(t, j.Run(ctx), ErrClosed)

	// Whatever was received was delivered and committed; the next job
	// consumes the rest.
	delivered := len(a.messages())
	require.Equal(t, delivered, n-src.Len(), "drained: what was delivered was committed")

	src.Rewind() // a new consumer: from the committed offsets
	startJob(t, fastConfig(src, dir))
	got := a.waitCount(t, n, 10*time.Second)
	var want []string
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprint(i))
	}
	require.Equal(t, want, bodies(got, nil), "nothing lost, nothing twice")
}

func TestJobShutdownTimesOutWithUnreachableNode(t *testing.T) {
	a := startTestNode(t, "a", secret)
	a.stop()
	src := newMemQueue(t, 1)
	j, err := New(fastConfig(src, newMemDir(a.node())))
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- j.Run(context.Background()) }()
	src.publish(keysMsg("a", "1"))
	eventually(t, func() bool { return j.Stats().Consumed == 1 }, 5*time.Second, "consumed")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, j.Shutdown(ctx), context.DeadlineExceeded)
	select {
	case err := <-runErr:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	require.Equal(t, 1, src.Len(), "undelivered is not committed")
}

func TestJobRunErrors(t *testing.T) {
	src := newMemQueue(t, 1)
	j, err := New(fastConfig(src, newMemDir()))
	require.NoError(t, err)
	runErr := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { runErr <- j.Run(ctx) }()
	eventually(t, func() bool { j.lifeMu.Lock(); defer j.lifeMu.Unlock(); return j.running }, time.Second, "running")
	require.ErrorIs(t, j.Run(ctx), ErrRunning)
	// A closed source ends Run with its error.
	require.NoError(t, src.Close())
	err = <-runErr
	require.ErrorIs(t, err, logic.ErrClosed)
	cancel()

	// Cancelling Run's context stops it cleanly.
	j2, err := New(fastConfig(newMemQueue(t, 1), newMemDir()))
	require.NoError(t, err)
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { runErr <- j2.Run(ctx2) }()
	time.Sleep(20 * time.Millisecond)
	cancel2()
	require.NoError(t, <-runErr)
	require.NoError(t, j2.Shutdown(context.Background()))
}
