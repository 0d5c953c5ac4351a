package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/metricstest"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, string(body)
}

func TestAdminMetricsBuildInfo(t *testing.T) {
	fams := metricstest.Scrape(t, newAdmin(false).handler, "/metrics")
	info := fams["imcloud_build_info"]
	require.NotNil(t, info)
	require.Equal(t, dto.MetricType_GAUGE, info.GetType())
	m := info.GetMetric()[0]
	require.Equal(t, "version", m.GetLabel()[0].GetName())
	require.Equal(t, imcloud.Version, m.GetLabel()[0].GetValue())
	require.EqualValues(t, 1, m.GetGauge().GetValue())
	require.Contains(t, fams, "go_goroutines")
	require.Contains(t, fams, "process_resident_memory_bytes")
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
