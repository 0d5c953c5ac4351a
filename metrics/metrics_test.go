package metrics

import (
	"context"
	"testing"

	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/internal/metricstest"
	"github.com/imcloud/imcloud/job"
	"github.com/imcloud/imcloud/logic"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

const doc = "../docs/metrics.md"

// TestCollectorsExportEveryStatsField fills every field of each role's
// Stats with a value of its own and scrapes: each value shows up, so a
// field added to a Stats without a metric fails here. The families follow
// the conventions and docs/metrics.md lists each.
func TestCollectorsExportEveryStatsField(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		fill   func() (prometheus.Collector, map[float64]string)
	}{
		{"imcloud_logic_", func() (prometheus.Collector, map[float64]string) {
			s, fields := metricstest.Filled[logic.Stats]()
			return logicCollector(func() logic.Stats { return s }), fields
		}},
		{"imcloud_job_", func() (prometheus.Collector, map[float64]string) {
			s, fields := metricstest.Filled[job.Stats]()
			return jobCollector(func() job.Stats { return s }), fields
		}},
		{"imcloud_cloud_", func() (prometheus.Collector, map[float64]string) {
			s, fields := metricstest.Filled[cloud.Stats]()
			return cloudCollector(func() cloud.Stats { return s }), fields
		}},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			c, fields := tc.fill()
			fams := metricstest.Gather(t, c)
			metricstest.CheckValues(t, fams, fields)
			metricstest.CheckConventions(t, fams, tc.prefix)
			metricstest.CheckDocumented(t, fams, doc, tc.prefix)
		})
	}
}

// TestLogicPushDurationAfterAPush scrapes a live Pusher: a push puts one
// observation in the duration histogram, with its buckets.
func TestLogicPushDurationAfterAPush(t *testing.T) {
	q := logic.NewMemoryQueue(logic.MemoryQueueConfig{})
	defer q.Close()
	p, err := logic.New(logic.Config{Router: logic.NewMemoryRouter(logic.MemoryRouterConfig{}), Queue: q})
	require.NoError(t, err)
	defer p.Close()
	_, err = p.PushRoom(context.Background(), 1000, "live://1", []byte("hi"))
	require.NoError(t, err)

	fams := metricstest.Gather(t, Logic(p))
	f := fams["imcloud_logic_push_duration_seconds"]
	require.NotNil(t, f)
	require.Equal(t, dto.MetricType_HISTOGRAM, f.GetType())
	h := f.GetMetric()[0].GetHistogram()
	require.EqualValues(t, 1, h.GetSampleCount())
	require.Len(t, h.GetBucket(), 17, "16 bounds and +Inf")
	require.EqualValues(t, 1, h.GetBucket()[15].GetCumulativeCount(), "within 10 s")
	require.EqualValues(t, 1, fams["imcloud_logic_pushes_total"].GetMetric()[0].GetCounter().GetValue())
}
