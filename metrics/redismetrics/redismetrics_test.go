package redismetrics

import (
	"context"
	"testing"

	"github.com/imcloud/imcloud/internal/metricstest"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/redis"
	"github.com/stretchr/testify/require"
)

func TestRouterExportsEveryStatsField(t *testing.T) {
	s, fields := metricstest.Filled[redis.Stats]()
	fams := metricstest.Gather(t, routerCollector(func() redis.Stats { return s }))
	metricstest.CheckValues(t, fams, fields)
	metricstest.CheckConventions(t, fams, "imcloud_redis_")
	metricstest.CheckDocumented(t, fams, "../../docs/metrics.md", "imcloud_redis_")
}

func TestRouterLookupsAfterALookup(t *testing.T) {
	srv := testenv.StartRedis(t)
	r, err := redis.NewRouter(redis.Config{Addr: srv.Addr})
	require.NoError(t, err)
	defer r.Close()
	_, err = r.NodesByKeys(context.Background(), []string{"k"})
	require.NoError(t, err)
	fams := metricstest.Gather(t, Router(r))
	require.EqualValues(t, 1, fams["imcloud_redis_lookups_total"].GetMetric()[0].GetCounter().GetValue())
}
