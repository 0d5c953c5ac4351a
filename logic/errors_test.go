package logic_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/redis"
)

// TestWrappedErrorsReadOnce: a router or queue failure is wrapped in
// ErrRouter or ErrQueue, reachable with errors.Is, and its message names
// each layer once ("logic: router: redis: ...", not "logic: router:
// logic: ...").
func TestWrappedErrorsReadOnce(t *testing.T) {
	ctx := context.Background()

	queue := logic.NewMemoryQueue(logic.MemoryQueueConfig{})
	p, err := logic.New(logic.Config{Router: logic.NewMemoryRouter(logic.MemoryRouterConfig{}), Queue: queue})
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, queue.Close())
	_, err = p.PushRoom(ctx, 1000, "live://1", []byte("x"))
	require.ErrorIs(t, err, logic.ErrQueue)
	require.ErrorIs(t, err, logic.ErrClosed)
	assert.Equal(t, "logic: queue: closed", err.Error())

	srv := testenv.StartRedis(t)
	router, err := redis.NewRouter(redis.Config{Addr: srv.Addr, ReadTimeout: time.Second, PoolWait: time.Second})
	require.NoError(t, err)
	defer router.Close()
	rp, err := logic.New(logic.Config{Router: router, Queue: logic.NewMemoryQueue(logic.MemoryQueueConfig{}), Timeout: 3 * time.Second})
	require.NoError(t, err)
	defer rp.Close()
	require.NoError(t, router.PutSessions(ctx, []imcloud.Session{{Mid: 7, Key: "k7", Node: "node-a", Gen: 1}}, time.Minute))
	srv.Stop()
	_, err = rp.PushMids(ctx, 1000, []int64{7}, []byte("x"))
	require.ErrorIs(t, err, logic.ErrRouter)
	msg := err.Error()
	assert.True(t, strings.HasPrefix(msg, "logic: router: redis: "), msg)
	assert.Equal(t, 1, strings.Count(msg, "logic:"), msg)
	assert.Equal(t, 1, strings.Count(msg, "redis:"), msg)
}
