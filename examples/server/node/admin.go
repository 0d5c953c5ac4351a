package node

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyCheck answers whether a backend a role uses answers now.
type readyCheck func(ctx context.Context) error

// admin serves /healthz, /readyz, /metrics and, when enabled, pprof. Each
// role registers its collector (package metrics) and the checks of its
// backends.
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
	checks   map[string]readyCheck
	draining bool
	reg      *prometheus.Registry
	handler  http.Handler
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
		buildInfo)
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

// register adds a role's or a backend's collector to /metrics.
func (a *admin) register(c prometheus.Collector) { a.reg.MustRegister(c) }

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
