package logic_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/kafka"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Fault tests: a backend goes away mid-test; pushes fail with an error
// within a deadline, nothing panics or leaks, and pushes work again once
// the backend is back. Not parallel: they count goroutines.

// settledGoroutines waits for the goroutine count to come down to at most
// want, returning the last count seen.
func settledGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for i := 0; i < 200 && n > want; i++ {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

func TestFaultRedisStopped(t *testing.T) {
	srv := testenv.StartRedis(t)
	router, err := redis.NewRouter(redis.Config{Addr: srv.Addr, ReadTimeout: time.Second, PoolWait: time.Second})
	require.NoError(t, err)
	defer router.Close()
	queue := logic.NewMemoryQueue(logic.MemoryQueueConfig{})
	p, err := logic.New(logic.Config{Router: router, Queue: queue, Timeout: 3 * time.Second})
	require.NoError(t, err)
	defer p.Close()
	ctx := context.Background()
	online := func() {
		require.NoError(t, router.PutSessions(ctx, []imcloud.Session{{Mid: 7, Key: "k7", Node: "node-a", Gen: 1}}, time.Minute))
	}
	online()
	res, err := p.PushMids(ctx, 1000, []int64{7}, []byte("x"))
	require.NoError(t, err)
	require.Equal(t, 1, res.Keys)
	before := runtime.NumGoroutine()

	srv.Stop()
	for i := 0; i < 20; i++ { // repeated failures must not pile anything up
		start := time.Now()
		_, err = p.PushMids(ctx, 1000, []int64{7}, []byte("x"))
		require.ErrorIs(t, err, logic.ErrRouter)
		require.Less(t, time.Since(start), 5*time.Second, "the error comes within the deadline")
	}
	_, err = router.RoomCounts(ctx)
	require.Error(t, err)
	assert.LessOrEqual(t, settledGoroutines(before), before, "no goroutine leak while Redis is down")

	srv.Start() // back, empty: the node re-registers its sessions
	online()
	require.Eventually(t, func() bool {
		res, err := p.PushMids(ctx, 1000, []int64{7}, []byte("x"))
		return err == nil && res.Keys == 1
	}, 10*time.Second, 50*time.Millisecond)
}

func TestFaultKafkaStopped(t *testing.T) {
	k := testenv.StartKafka(t, "fault")
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	queue, err := kafka.NewQueue(kafka.QueueConfig{Brokers: k.Brokers, Topic: "fault"})
	require.NoError(t, err)
	defer queue.Close()
	p, err := logic.New(logic.Config{Router: router, Queue: queue, Timeout: 3 * time.Second})
	require.NoError(t, err)
	defer p.Close()
	ctx := context.Background()
	_, err = p.PushRoom(ctx, 1000, "live://1", []byte("x"))
	require.NoError(t, err)
	before := runtime.NumGoroutine()

	k.Stop()
	start := time.Now()
	_, err = p.PushRoom(ctx, 1000, "live://1", []byte("x"))
	require.ErrorIs(t, err, logic.ErrQueue)
	require.Less(t, time.Since(start), 5*time.Second, "the error comes within the deadline")
	// An HTTP caller's own deadline is honoured too.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start = time.Now()
	_, err = p.PushRoom(short, 1000, "live://1", []byte("x"))
	cancel()
	require.Error(t, err)
	require.Less(t, time.Since(start), 2*time.Second)

	k.Start()
	require.Eventually(t, func() bool {
		_, err := p.PushRoom(ctx, 1000, "live://1", []byte("x"))
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "pushes work again once the broker is back")
	// The producer's reconnects settle; nothing grew without bound.
	assert.LessOrEqual(t, settledGoroutines(before+20), before+20)
}

// TestCloseLeavesNoGoroutines checks that a Pusher over the Redis router
// and the Kafka queue gives back every goroutine it started once all three
// are closed.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	srv := testenv.StartRedis(t)
	k := testenv.StartKafka(t, "leak")
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()

	router, err := redis.NewRouter(redis.Config{Addr: srv.Addr})
	require.NoError(t, err)
	queue, err := kafka.NewQueue(kafka.QueueConfig{Brokers: k.Brokers, Topic: "leak"})
	require.NoError(t, err)
	p, err := logic.New(logic.Config{Router: router, Queue: queue})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, router.PutSessions(ctx, []imcloud.Session{{Mid: 1, Key: "k", Node: "n", Gen: 1}}, time.Minute))
	for i := 0; i < 50; i++ {
		_, err := p.PushMids(ctx, 1000, []int64{1}, []byte("x"))
		require.NoError(t, err)
	}
	require.NoError(t, p.Close())
	require.NoError(t, queue.Close())
	require.NoError(t, router.Close())
	assert.LessOrEqual(t, settledGoroutines(before), before)
}
