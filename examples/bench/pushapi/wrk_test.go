package pushapi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/logic"
)

// wrkScript makes every wrk request a push to the next of benchMids
// online users (one mid per request, a 12-byte body, goim's route).
const wrkScript = `
local n = 0
request = function()
  n = n + 1
  local mid = (n * 7919) % 100000 + 1
  return wrk.format("POST", "/goim/push/mids?operation=1000&mids=" .. mid, {["Content-Type"] = "text/plain"}, "hello, world")
end
`

// BenchmarkHTTPPushMidsWrk drives the HTTP handler over real Redis and
// kfake with wrk (Debian's wrk package) in its own process: 100 keep-alive
// connections on one wrk thread (IMCLOUD_WRK_THREADS), for
// IMCLOUD_WRK_DURATION (default 10s). The load client then costs the
// server process nothing and is as light as a client gets, so the figure
// is the handler's own. One thread, because wrk shares the machine's two
// cores with the server and redis-server: two threads cost about 2.4 µs
// more CPU per request (BENCHMARKS.md) and one drives the 100 connections
// with most of a core to spare. One iteration is one wrk run; req/s and
// the latency quantiles are wrk's.
//
//	go test ./examples/bench/pushapi -run '^$' -bench HTTPPushMidsWrk -benchtime 1x -count 3
func BenchmarkHTTPPushMidsWrk(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk not installed (apt-get install -y wrk)")
	}
	dur := 10 * time.Second
	if v := os.Getenv("IMCLOUD_WRK_DURATION"); v != "" {
		dur, err = time.ParseDuration(v)
		require.NoError(b, err)
	}
	threads := "1"
	if v := os.Getenv("IMCLOUD_WRK_THREADS"); v != "" {
		threads = v
	}
	env := benchBackends(b)
	p, err := logic.New(logic.Config{Router: env.router, Queue: env.queue})
	require.NoError(b, err)
	defer p.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	srv := &http.Server{Handler: logic.NewHandler(p, logic.HandlerConfig{})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Shutdown(context.Background())
	script := filepath.Join(b.TempDir(), "push.lua")
	require.NoError(b, os.WriteFile(script, []byte(wrkScript), 0o644))

	for i := 0; i < b.N; i++ {
		cpu0, rcpu0 := processCPU(), env.redisCPU()
		cmd := exec.Command(wrk, "-t", threads, "-c", "100", "-d", dur.String(), "--latency", "-s", script,
			"http://"+ln.Addr().String())
		out, err := cmd.CombinedOutput()
		require.NoError(b, err, "%s", out)
		res, err := parseWrk(string(out))
		require.NoError(b, err, "%s", out)
		require.Zero(b, res.non2xx, "non-2xx responses:\n%s", out)
		require.Zero(b, res.errors, "socket errors:\n%s", out)
		b.ReportMetric(res.rps, "req/s")
		b.ReportMetric(res.p50.Seconds()*1000, "p50-ms")
		b.ReportMetric(res.p99.Seconds()*1000, "p99-ms")
		b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(res.requests), "cpu-µs/req")
		b.ReportMetric(float64((env.redisCPU()-rcpu0).Microseconds())/float64(res.requests), "redis-cpu-µs/req")
		wrkCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		b.ReportMetric(float64(wrkCPU.Microseconds())/float64(res.requests), "wrk-cpu-µs/req")
	}
	env.reportBatching(b)
}

// wrkResult is what parseWrk reads from wrk's --latency report.
type wrkResult struct {
	requests       int64
	rps            float64
	p50, p99       time.Duration
	non2xx, errors int64
}

var (
	wrkReqs    = regexp.MustCompile(`(\d+) requests in`)
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkErrors  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkLatency = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
)

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkReqs.FindStringSubmatch(out)
	if m == nil {
		return r, errWrkOutput
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	if m = wrkRPS.FindStringSubmatch(out); m == nil {
		return r, errWrkOutput
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	if m = wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m = wrkErrors.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.errors += n
		}
	}
	for _, m := range wrkLatency.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, errWrkOutput
	}
	return r, nil
}

var errWrkOutput = errors.New("unexpected wrk output")
