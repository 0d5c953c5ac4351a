// Package nometrics is a go-metrics Registry that keeps nothing, to turn off
// sarama's internal metrics without touching go-metrics' process-wide
// UseNilMetrics switch.
//
// sarama updates several meters and exponentially decaying histograms per
// request and per message (request rate, sizes, latency, batch sizes,
// compression ratio). On a producer doing tens of thousands of messages a
// second that bookkeeping is a measurable part of its CPU (BENCHMARKS.md,
// logic), and imcloud reports what it needs through its own Stats. Users
// who want sarama's metrics set Config.MetricRegistry to
// metrics.NewRegistry() themselves.
package nometrics

import (
	"reflect"

	"github.com/rcrowley/go-metrics"
)

// Registry registers nothing: GetOrRegister hands out go-metrics' no-op
// metric of the requested kind, and every query finds nothing. The zero
// value is ready to use and safe for concurrent use.
type Registry struct{}

var _ metrics.Registry = Registry{}

// GetOrRegister returns the no-op metric for the constructor m (sarama
// passes constructors such as metrics.NewMeter). A constructor of any
// other kind is called, as go-metrics' own registry would, and its metric
// returned without being kept; a metric passed as a value is returned.
func (Registry) GetOrRegister(_ string, m any) any {
	switch m.(type) {
	case func() metrics.Meter:
		return metrics.NilMeter{}
	case func() metrics.Histogram:
		return metrics.NilHistogram{}
	case func() metrics.Counter:
		return metrics.NilCounter{}
	case func() metrics.Gauge:
		return metrics.NilGauge{}
	case func() metrics.GaugeFloat64:
		return metrics.NilGaugeFloat64{}
	case func() metrics.Timer:
		return metrics.NilTimer{}
	case func() metrics.EWMA:
		return metrics.NilEWMA{}
	}
	if v := reflect.ValueOf(m); v.Kind() == reflect.Func && v.Type().NumIn() == 0 && v.Type().NumOut() == 1 {
		return v.Call(nil)[0].Interface()
	}
	return m
}

// Register keeps nothing and never fails.
func (Registry) Register(string, any) error { return nil }

// Each calls f for nothing.
func (Registry) Each(func(string, any)) {}

// Get finds nothing.
func (Registry) Get(string) any { return nil }

// GetAll returns an empty map.
func (Registry) GetAll() map[string]map[string]any { return map[string]map[string]any{} }

// RunHealthchecks has nothing to run.
func (Registry) RunHealthchecks() {}

// Unregister has nothing to remove.
func (Registry) Unregister(string) {}

// UnregisterAll has nothing to remove.
func (Registry) UnregisterAll() {}
