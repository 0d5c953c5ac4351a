// Package collect builds checked Prometheus collectors over a Stats
// snapshot: each family is declared once (name, type, HELP, labels) with a
// function that reads its value from the snapshot, and every scrape takes
// one snapshot and reads every family from it.
package collect

import (
	"github.com/imcloud/imcloud"
	"github.com/prometheus/client_golang/prometheus"
)

// Family is one metric family read from a snapshot of type S.
type Family[S any] struct {
	desc *prometheus.Desc
	emit func(ch chan<- prometheus.Metric, d *prometheus.Desc, s *S)
}

// Counter is a counter without labels; name must end in _total.
func Counter[S any](name, help string, v func(*S) uint64) Family[S] {
	return value(prometheus.CounterValue, name, help, func(s *S) float64 { return float64(v(s)) })
}

// Gauge is a gauge without labels.
func Gauge[S any](name, help string, v func(*S) float64) Family[S] {
	return value(prometheus.GaugeValue, name, help, v)
}

func value[S any](t prometheus.ValueType, name, help string, v func(*S) float64) Family[S] {
	return Family[S]{
		desc: prometheus.NewDesc(name, help, nil, nil),
		emit: func(ch chan<- prometheus.Metric, d *prometheus.Desc, s *S) {
			ch <- prometheus.MustNewConstMetric(d, t, v(s))
		},
	}
}

// Emit reports one series of a labelled family: its value and its label
// values, in the order the family declared its labels.
type Emit func(v float64, labelValues ...string)

// CounterVec is a counter with labels; each calls emit once per series.
func CounterVec[S any](name, help string, labels []string, each func(*S, Emit)) Family[S] {
	return vec(prometheus.CounterValue, name, help, labels, each)
}

// GaugeVec is a gauge with labels; each calls emit once per series.
func GaugeVec[S any](name, help string, labels []string, each func(*S, Emit)) Family[S] {
	return vec(prometheus.GaugeValue, name, help, labels, each)
}

func vec[S any](t prometheus.ValueType, name, help string, labels []string, each func(*S, Emit)) Family[S] {
	return Family[S]{
		desc: prometheus.NewDesc(name, help, labels, nil),
		emit: func(ch chan<- prometheus.Metric, d *prometheus.Desc, s *S) {
			each(s, func(v float64, lv ...string) { ch <- prometheus.MustNewConstMetric(d, t, v, lv...) })
		},
	}
}

// Histogram is a histogram without labels, from an imcloud.Histogram's
// snapshot.
func Histogram[S any](name, help string, v func(*S) imcloud.HistogramSnapshot) Family[S] {
	return Family[S]{
		desc: prometheus.NewDesc(name, help, nil, nil),
		emit: func(ch chan<- prometheus.Metric, d *prometheus.Desc, s *S) {
			h := v(s)
			buckets := make(map[float64]uint64, len(h.Bounds))
			for i, b := range h.Bounds {
				buckets[b] = h.Cumulative[i]
			}
			ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets)
		},
	}
}

// Collector is a prometheus.Collector over the snapshots a function
// returns. It is checked: Describe sends every family's descriptor.
type Collector[S any] struct {
	stats    func() S
	families []Family[S]
}

// New returns a collector that calls stats once per scrape and reads
// every family from its result.
func New[S any](stats func() S, families ...Family[S]) *Collector[S] {
	return &Collector[S]{stats: stats, families: families}
}

// Describe implements prometheus.Collector.
func (c *Collector[S]) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range c.families {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector.
func (c *Collector[S]) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	for _, f := range c.families {
		f.emit(ch, f.desc, &s)
	}
}
