package redis_test

import (
	"context"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRedisRevokeSchema checks the revocation key's name, value and
// expiry (docs/redis.md's table), and that a value not written by the
// router is an error, not a revocation at time 0.
func TestRedisRevokeSchema(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr, KeyPrefix: "p:"})
	ctx := context.Background()
	require.NoError(t, r.Revoke(ctx, []int64{42}, time.UnixMilli(1700000000123), time.Hour))

	c, err := redigo.Dial("tcp", srv.Addr)
	require.NoError(t, err)
	defer c.Close()
	v, err := redigo.String(c.Do("GET", "p:revoked_42"))
	require.NoError(t, err)
	assert.Equal(t, "1700000000123", v)
	ttl, err := redigo.Int64(c.Do("PTTL", "p:revoked_42"))
	require.NoError(t, err)
	assert.InDelta(t, time.Hour.Milliseconds(), ttl, 5000)

	_, err = c.Do("SET", "p:revoked_7", "garbage")
	require.NoError(t, err)
	_, err = r.RevokedBefore(ctx, []int64{42, 7})
	require.ErrorIs(t, err, logic.ErrRouter)
}
