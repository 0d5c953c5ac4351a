package node

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/imcloud/imcloud"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyCheck answers whether a backend a role uses answers now.
type readyCheck func(ctx context.Context) error

// admin serves /healthz, /readyz, /metrics and, when enabled, pprof. Each
// role registers its stats snapshot and the checks of its backends.
//
// Liveness and readiness, for every role:
//   - /healthz answers 200 while the process serves HTTP at all (liveness:
//     restart it when this fails).
//   - /readyz answers 200 while the node serves, and 503 once it drains
//     (Shutdown began: take it out of the balancer). A backend that does
//     not answer (Redis, Kafka) does not make a node unready: every node
//     shares the backends, so a probe that failed on them would pull the
//     whole fleet out of the balancer at once, while gateways keep serving
//     their clients and pushes fail with clear errors. The body names the
//     degraded backends, and imcloud_backend_up reports each one.
type admin struct {
	mu       sync.Mutex
	stats    []statsSource
	checks   map[string]readyCheck
	draining bool
	reg      *prometheus.Registry
	handler  http.Handler
}

// statsSource is a role's Stats() method: a struct of numbers (and maps of
// numbers, exported with a "key" label).
type statsSource struct {
	role string
	fn   func() any
}

func newAdmin(enablePprof bool) *admin {
	a := &admin{checks: map[string]readyCheck{}, reg: prometheus.NewRegistry()}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "imcloud_build_info",
		Help:        "Always 1; the version label is the running imcloud.Version.",
		ConstLabels: prometheus.Labels{"version": imcloud.Version},
	})
	buildInfo.Set(1)
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		statsCollector{a}, buildInfo)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", a.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	if enablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	a.handler = mux
	return a
}

func (a *admin) addStats(role string, fn func() any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats = append(a.stats, statsSource{role, fn})
}

// addCheck registers a backend's check, run by /readyz and by every
// scrape of imcloud_backend_up{backend=name}.
func (a *admin) addCheck(name string, c readyCheck) {
	a.mu.Lock()
	a.checks[name] = c
	a.mu.Unlock()
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "imcloud_backend_up",
		Help:        "1 if the backend answered its check at this scrape, 0 if not.",
		ConstLabels: prometheus.Labels{"backend": name},
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		defer cancel()
		if c(ctx) != nil {
			return 0
		}
		return 1
	}))
}

// checkTimeout bounds one backend check.
const checkTimeout = 2 * time.Second

// setDraining makes /readyz answer 503 from now on.
func (a *admin) setDraining() {
	a.mu.Lock()
	a.draining = true
	a.mu.Unlock()
}

// ready answers 503 while draining and 200 otherwise, naming the backends
// that did not answer their check (see admin).
func (a *admin) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
	defer cancel()
	a.mu.Lock()
	draining := a.draining
	names := make([]string, 0, len(a.checks))
	for name := range a.checks {
		names = append(names, name)
	}
	slices.Sort(names)
	checks := make([]readyCheck, len(names))
	for i, name := range names {
		checks[i] = a.checks[name]
	}
	a.mu.Unlock()
	if draining {
		http.Error(w, "not ready: draining", http.StatusServiceUnavailable)
		return
	}
	var degraded []string
	for i, c := range checks {
		if err := c(ctx); err != nil {
			degraded = append(degraded, fmt.Sprintf("%s: %v", names[i], err))
		}
	}
	if len(degraded) > 0 {
		fmt.Fprintln(w, "ready, degraded: "+strings.Join(degraded, "; "))
		return
	}
	fmt.Fprintln(w, "ready")
}

// statsCollector exports every numeric field of every role's Stats as
// imcloud_<role>_<field_in_snake_case>. It is unchecked (no fixed
// descriptions) because the fields come from the roles' own structs.
type statsCollector struct{ a *admin }

func (statsCollector) Describe(chan<- *prometheus.Desc) {}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	c.a.mu.Lock()
	sources := append([]statsSource(nil), c.a.stats...)
	c.a.mu.Unlock()
	for _, s := range sources {
		collectStruct(ch, "imcloud_"+s.role, reflect.ValueOf(s.fn()))
	}
}

func collectStruct(ch chan<- prometheus.Metric, prefix string, v reflect.Value) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := prefix + "_" + snake(f.Name)
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.Map:
			if fv.Type().Key().Kind() != reflect.String {
				continue
			}
			desc := prometheus.NewDesc(name, f.Name+" by key", []string{"key"}, nil)
			iter := fv.MapRange()
			for iter.Next() {
				if n, ok := number(iter.Value()); ok {
					ch <- prometheus.MustNewConstMetric(desc, prometheus.UntypedValue, n, iter.Key().String())
				}
			}
		case reflect.Struct:
			collectStruct(ch, name, fv)
		default:
			if n, ok := number(fv); ok {
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, f.Name, nil, nil), prometheus.UntypedValue, n)
			}
		}
	}
}

func number(v reflect.Value) (float64, bool) {
	if v.Type() == reflect.TypeOf(time.Duration(0)) {
		return time.Duration(v.Int()).Seconds(), true
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return float64(v.Uint()), true
	case reflect.Float32, reflect.Float64:
		return v.Float(), true
	case reflect.Bool:
		if v.Bool() {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// snake turns "SlowConsumerDisconnects" into "slow_consumer_disconnects".
func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
