package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/require"
)

type sampleStats struct {
	Connections      int64
	PushesDelivered  uint64
	SlowConsumerKick uint64
	Uptime           time.Duration
	Lag              map[string]int64
	Inner            struct{ Retries int }
	ignored          int
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, string(body)
}

func TestAdminMetricsExportRoleStats(t *testing.T) {
	a := newAdmin(false)
	a.addStats("cloud", func() any {
		return sampleStats{Connections: 3, PushesDelivered: 7, Uptime: 2 * time.Second, Lag: map[string]int64{"n1": 5}, ignored: 1}
	})
	code, body := get(t, a.handler, "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "imcloud_cloud_connections 3")
	require.Contains(t, body, "imcloud_cloud_pushes_delivered 7")
	require.Contains(t, body, "imcloud_cloud_slow_consumer_kick 0")
	require.Contains(t, body, "imcloud_cloud_uptime 2")
	require.Contains(t, body, `imcloud_cloud_lag{key="n1"} 5`)
	require.Contains(t, body, "imcloud_cloud_inner_retries 0")
	require.Contains(t, body, "go_goroutines")
	require.Contains(t, body, `imcloud_build_info{version="`+imcloud.Version+`"} 1`)
	require.NotContains(t, body, "ignored")
}

func TestAdminHealthAndReady(t *testing.T) {
	a := newAdmin(false)
	code, _ := get(t, a.handler, "/healthz")
	require.Equal(t, http.StatusOK, code)
	code, _ = get(t, a.handler, "/readyz")
	require.Equal(t, http.StatusOK, code)

	a.addCheck("redis", func(context.Context) error { return errors.New("connection refused") })
	code, body := get(t, a.handler, "/readyz")
	require.Equal(t, http.StatusOK, code, "a backend down does not pull the node out of the balancer")
	require.Contains(t, body, "degraded: redis: connection refused")
	_, body = get(t, a.handler, "/metrics")
	require.Contains(t, body, `imcloud_backend_up{backend="redis"} 0`)

	a.setDraining()
	code, body = get(t, a.handler, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "draining")
	code, _ = get(t, a.handler, "/healthz")
	require.Equal(t, http.StatusOK, code, "alive while draining")

	code, _ = get(t, a.handler, "/debug/pprof/")
	require.Equal(t, http.StatusNotFound, code, "pprof is off unless asked for")
	code, _ = get(t, newAdmin(true).handler, "/debug/pprof/")
	require.Equal(t, http.StatusOK, code)
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"Connections": "connections", "SlowConsumerDisconnects": "slow_consumer_disconnects",
		"AuthOK": "auth_ok", "IPCount": "ip_count", "DeliveredTotal": "delivered_total",
	} {
		require.Equal(t, want, snake(in), in)
	}
}
