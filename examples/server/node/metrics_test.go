package node

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/internal/metricstest"
	dto "github.com/prometheus/client_model/go"
)

// TestAllInOneMetrics scrapes the reference server's /metrics after a push,
// as Prometheus would, and parses it with the text parser: every imcloud
// family is typed, named and described by the conventions, docs/metrics.md
// lists it, and the push shows in the histograms.
func TestAllInOneMetrics(t *testing.T) {
	app := startAllInOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Network: "tcp", Addr: app.Addr("tcp"), Mid: 1, Room: "live://1"})
	require.NoError(t, err)
	defer c.Close()
	post(t, app, "/goim/push/room?operation=1000&type=live&room=1", "hello")
	receive(t, c, 1000, "hello")

	// The node records the fan-out after it queued the push, which the
	// client may already have read: scrape until it shows.
	fams := scrapeMetrics(t, app)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		f := fams["imcloud_cloud_fanout_connections"]
		if f != nil && len(f.GetMetric()) > 0 && f.GetMetric()[0].GetHistogram().GetSampleCount() > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
		fams = scrapeMetrics(t, app)
	}

	metricstest.CheckConventions(t, fams, "imcloud_")
	for _, prefix := range []string{"imcloud_build_info", "imcloud_backend_up", "imcloud_app_", "imcloud_logic_", "imcloud_job_", "imcloud_cloud_"} {
		metricstest.CheckDocumented(t, fams, "../../../docs/metrics.md", prefix)
	}
	for name, typ := range map[string]dto.MetricType{
		"imcloud_logic_pushes_total":             dto.MetricType_COUNTER,
		"imcloud_logic_push_duration_seconds":    dto.MetricType_HISTOGRAM,
		"imcloud_job_commit_lag_seconds":         dto.MetricType_GAUGE,
		"imcloud_cloud_sessions":                 dto.MetricType_GAUGE,
		"imcloud_cloud_auths_total":              dto.MetricType_COUNTER,
		"imcloud_cloud_fanout_connections":       dto.MetricType_HISTOGRAM,
		"imcloud_cloud_delivery_latency_seconds": dto.MetricType_HISTOGRAM,
		"imcloud_backend_up":                     dto.MetricType_GAUGE,
	} {
		require.Contains(t, fams, name)
		require.Equal(t, typ, fams[name].GetType(), name)
	}
	h := fams["imcloud_logic_push_duration_seconds"].GetMetric()[0].GetHistogram()
	require.EqualValues(t, 1, h.GetSampleCount())
	require.NotEmpty(t, h.GetBucket())
	require.EqualValues(t, 1, fams["imcloud_cloud_sessions"].GetMetric()[0].GetGauge().GetValue())
	fanout := fams["imcloud_cloud_fanout_connections"].GetMetric()[0].GetHistogram()
	require.EqualValues(t, 1, fanout.GetSampleCount(), "the room push, on the node")
	require.EqualValues(t, 1, fanout.GetSampleSum(), "reached one connection")
	lag := fams["imcloud_job_commit_lag_records"].GetMetric()
	require.NotEmpty(t, lag, "one series per partition received from")
	require.Equal(t, "partition", lag[0].GetLabel()[0].GetName())
}

// scrapeMetrics GETs the server's /metrics and parses it.
func scrapeMetrics(t *testing.T, app *App) metricstest.Families {
	t.Helper()
	resp, err := http.Get("http://" + app.Addr("http") + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return metricstest.Parse(t, resp.Body)
}
