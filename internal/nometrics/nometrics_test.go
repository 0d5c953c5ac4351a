package nometrics_test

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/internal/nometrics"
	"github.com/imcloud/imcloud/internal/testenv"
)

func TestRegistryHandsOutNoOpMetrics(t *testing.T) {
	r := nometrics.Registry{}
	assert.IsType(t, metrics.NilMeter{}, metrics.GetOrRegisterMeter("m", r))
	assert.IsType(t, metrics.NilCounter{}, metrics.GetOrRegisterCounter("c", r))
	assert.IsType(t, metrics.NilGauge{}, metrics.GetOrRegisterGauge("g", r))
	assert.NotNil(t, metrics.GetOrRegisterGaugeFloat64("f", r)) // go-metrics passes this one as a value
	assert.IsType(t, metrics.NilTimer{}, metrics.GetOrRegisterTimer("t", r))
	assert.IsType(t, metrics.NilHistogram{}, r.GetOrRegister("h", func() metrics.Histogram {
		return metrics.NewHistogram(metrics.NewUniformSample(10))
	}))

	// Another constructor is called, as go-metrics' own registry does; a
	// value is handed back as it is. Nothing is kept either way.
	hc := r.GetOrRegister("hc", func() metrics.Healthcheck { return metrics.NilHealthcheck{} })
	assert.IsType(t, metrics.NilHealthcheck{}, hc)
	ewma := metrics.NewEWMA1()
	assert.Same(t, ewma, r.GetOrRegister("e", ewma))
	require.NoError(t, r.Register("x", metrics.NewCounter()))
	assert.Nil(t, r.Get("x"))
	assert.Empty(t, r.GetAll())
	r.Each(func(name string, _ any) { t.Errorf("Each found %q", name) })
	r.Unregister("x")
	r.UnregisterAll()
	r.RunHealthchecks()
}

// TestSaramaWithoutMetrics produces and consumes through a real
// Kafka-protocol broker with the registry in place of sarama's own, so
// every metric sarama registers on that path is one the registry serves.
func TestSaramaWithoutMetrics(t *testing.T) {
	k := testenv.StartKafka(t, "nometrics")
	cfg := sarama.NewConfig()
	cfg.MetricRegistry = nometrics.Registry{}
	cfg.Producer.Return.Successes = true
	cfg.Producer.Compression = sarama.CompressionLZ4
	cfg.Version = sarama.V2_1_0_0

	p, err := sarama.NewSyncProducer(k.Brokers, cfg)
	require.NoError(t, err)
	defer p.Close()
	var partition int32
	for i := 0; i < 10; i++ {
		var err error
		partition, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "nometrics", Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder("v")})
		require.NoError(t, err)
	}

	c, err := sarama.NewConsumer(k.Brokers, cfg)
	require.NoError(t, err)
	defer c.Close()
	pc, err := c.ConsumePartition("nometrics", partition, sarama.OffsetOldest)
	require.NoError(t, err)
	defer pc.Close()
	for i := 0; i < 10; i++ {
		select {
		case m := <-pc.Messages():
			assert.Equal(t, "v", string(m.Value))
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not consumed", i)
		}
	}
}
