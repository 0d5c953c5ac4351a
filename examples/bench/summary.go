package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// result is one measured step, as printed and as written (one JSON object
// per line) to -json for the report.
type result struct {
	Scenario string `json:"scenario"`
	Label    string `json:"label"`
	Command  string `json:"command"`
	Time     string `json:"time"`
	Load     string `json:"load"` // /proc/loadavg when the run started

	Proto      string  `json:"proto"`
	Mode       string  `json:"mode"`
	Conns      int64   `json:"conns"`
	Rooms      int     `json:"rooms"`
	Rate       float64 `json:"rate"` // offered pushes/s, 0: flat out
	Publishers int     `json:"publishers"`
	WindowSec  float64 `json:"window_s"`

	Sent        uint64  `json:"sent"`
	Accepted    uint64  `json:"accepted"`
	Rejected    uint64  `json:"rejected"` // 503/429: backpressure
	Errors      uint64  `json:"errors"`
	Expected    uint64  `json:"expected"`
	Received    uint64  `json:"received"`
	Lost        int64   `json:"lost"` // expected - received (negative: duplicates)
	Disconnects int64   `json:"disconnects"`
	PushPerSec  float64 `json:"push_per_s"`       // accepted pushes per second
	DelivPerSec float64 `json:"deliveries_per_s"` // received per second
	P50         float64 `json:"p50_ms"`
	P90         float64 `json:"p90_ms"`
	P99         float64 `json:"p99_ms"`
	Max         float64 `json:"max_ms"`
	MaxP99      float64 `json:"max_p99_ms"` // pass criterion, 0: none
	// The API's answers to accepted pushes, from their scheduled send.
	AnswerP50 float64 `json:"answer_p50_ms"`
	AnswerP99 float64 `json:"answer_p99_ms"`
	// Arrival in the clients' sockets (kernel receive timestamps), from the
	// scheduled send: the latency without the generator's own delay in
	// reading. 0 when the reads carried no timestamps.
	SocketP50 float64 `json:"socket_p50_ms,omitempty"`
	SocketP99 float64 `json:"socket_p99_ms,omitempty"`

	// Recover mode: clients x rounds reconnects, each missing Missed
	// pushes; latencies are from starting the dial to op 25, Expected
	// and Received count the missed and the replayed pushes, Failures
	// the reconnects that did not get exactly theirs.
	Rounds   int `json:"rounds,omitempty"`
	Missed   int `json:"missed,omitempty"`
	Failures int `json:"failures,omitempty"`

	Procs []procResult       `json:"procs"`
	Extra map[string]float64 `json:"extra,omitempty"`
	Pass  bool               `json:"pass"`
}

// procResult is one local process over the window.
type procResult struct {
	Name       string  `json:"name"`
	Pid        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_s"` // during the window
	Cores      float64 `json:"cores"` // CPU seconds per second of window
	RSSBytes   int64   `json:"rss_bytes"`
}

// stepTally is what summarize needs from one step.
type stepTally struct {
	sent, accepted, rejected, errors, expected, received uint64
	disconnects                                          int64
	offered                                              float64 // paced pushes due in the window, 0: flat out
	window                                               time.Duration
	hist                                                 *latencyHist
	arrived                                              *latencyHist // in the clients' sockets, may be empty
	answered                                             *latencyHist
	maxP99                                               time.Duration
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summarize fills r's figures from t and decides whether the step passed:
// every accepted push delivered to every target exactly once, the offered
// rate actually sent (99%), no request failed, no connection lost, and p99
// within the criterion.
func summarize(r *result, t stepTally) {
	r.Sent, r.Accepted, r.Rejected, r.Errors = t.sent, t.accepted, t.rejected, t.errors
	r.Expected, r.Received = t.expected, t.received
	r.Lost = int64(t.expected) - int64(t.received)
	r.Disconnects = t.disconnects
	r.WindowSec = t.window.Seconds()
	if r.WindowSec > 0 {
		r.PushPerSec = float64(t.accepted) / r.WindowSec
		r.DelivPerSec = float64(t.received) / r.WindowSec
	}
	if t.hist != nil {
		r.P50, r.P90, r.P99, r.Max = ms(t.hist.quantile(0.5)), ms(t.hist.quantile(0.9)), ms(t.hist.quantile(0.99)), ms(t.hist.maximum())
	}
	if t.arrived != nil && t.arrived.count() > 0 {
		r.SocketP50, r.SocketP99 = ms(t.arrived.quantile(0.5)), ms(t.arrived.quantile(0.99))
	}
	if t.answered != nil {
		r.AnswerP50, r.AnswerP99 = ms(t.answered.quantile(0.5)), ms(t.answered.quantile(0.99))
	}
	r.MaxP99 = ms(t.maxP99)
	r.Pass = r.Lost == 0 && t.errors == 0 && t.disconnects == 0 && t.accepted > 0 &&
		float64(t.accepted) >= 0.99*t.offered && // the generator kept the pace
		(t.maxP99 <= 0 || r.P99 <= ms(t.maxP99))
}

// rssSlope is the memory per connection between two readings.
func rssSlope(conns1 int, rss1 int64, conns2 int, rss2 int64) float64 {
	if conns2 == conns1 {
		return 0
	}
	return float64(rss2-rss1) / float64(conns2-conns1)
}

// printResult writes the human summary of one step.
func printResult(w io.Writer, r *result) {
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	rate := "flat out"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%g/s", r.Rate)
	}
	fmt.Fprintf(w, "== %s %s: %s %s, %d conns, %d room(s), rate %s, %d publishers, %.0f s window: %s\n",
		r.Scenario, r.Label, r.Proto, r.Mode, r.Conns, r.Rooms, rate, r.Publishers, r.WindowSec, verdict)
	if r.Mode == "recover" {
		fmt.Fprintf(w, "   %d clients x %d rounds, each missing %d pushes a round (pushed at %.0f/s)\n",
			r.Conns, r.Rounds, r.Missed, r.PushPerSec)
		fmt.Fprintf(w, "   replayed %d of %d (lost %d), failed reconnects %d\n", r.Received, r.Expected, r.Lost, r.Failures)
		fmt.Fprintf(w, "   dial to op 25 (recovery result): p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			r.P50, r.P90, r.P99, r.Max)
	} else if r.Mode != "idle" {
		fmt.Fprintf(w, "   pushes: sent %d, accepted %d (%.0f/s), rejected %d, errors %d\n",
			r.Sent, r.Accepted, r.PushPerSec, r.Rejected, r.Errors)
		fmt.Fprintf(w, "   deliveries: expected %d, received %d, lost %d, %.0f/s; disconnects %d\n",
			r.Expected, r.Received, r.Lost, r.DelivPerSec, r.Disconnects)
		fmt.Fprintf(w, "   latency from scheduled send: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			r.P50, r.P90, r.P99, r.Max)
		if r.SocketP99 > 0 {
			fmt.Fprintf(w, "   arrived in the client sockets (kernel timestamp, from scheduled send): p50 %.2f ms, p99 %.2f ms\n",
				r.SocketP50, r.SocketP99)
		}
		fmt.Fprintf(w, "   push API answered (from scheduled send): p50 %.2f ms, p99 %.2f ms\n", r.AnswerP50, r.AnswerP99)
	}
	for k, v := range r.Extra {
		fmt.Fprintf(w, "   %s: %.0f\n", k, v)
	}
	for _, p := range r.Procs {
		fmt.Fprintf(w, "   %-8s pid %-7d cpu %6.2f s (%.2f cores)  rss %7.1f MB\n",
			p.Name, p.Pid, p.CPUSeconds, p.Cores, float64(p.RSSBytes)/(1<<20))
	}
}

// appendJSON appends r as one line to path.
func appendJSON(path string, r *result) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	return errors.Join(err, f.Close())
}

// namedPid is a local process to account for.
type namedPid struct {
	name string
	pid  int
}

// parsePids reads "server=123,redis=456".
func parsePids(s string) ([]namedPid, error) {
	var out []namedPid
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, v, ok := strings.Cut(part, "=")
		pid, err := strconv.Atoi(v)
		if !ok || name == "" || err != nil || pid <= 0 {
			return nil, fmt.Errorf("bench: -pids: %q is not name=pid", part)
		}
		out = append(out, namedPid{name, pid})
	}
	return out, nil
}

// sampleProcs reads every process; unreadable ones are left zero.
func sampleProcs(ps []namedPid) []procUsage {
	out := make([]procUsage, len(ps))
	for i, p := range ps {
		var err error
		if out[i], err = readProc(p.pid); err != nil {
			fmt.Fprintf(stderr, "bench: %s: %v\n", p.name, err)
		}
	}
	return out
}

// procDelta turns two samples into per-process results over window.
func procDelta(ps []namedPid, before, after []procUsage, window time.Duration) []procResult {
	out := make([]procResult, len(ps))
	for i, p := range ps {
		cpu := after[i].CPUSeconds - before[i].CPUSeconds
		out[i] = procResult{Name: p.name, Pid: p.pid, CPUSeconds: cpu, RSSBytes: after[i].RSSBytes}
		if window > 0 {
			out[i].Cores = cpu / window.Seconds()
		}
	}
	return out
}

// parseRates reads "100,300,max": pushes per second, 0 ("max", "flat")
// for flat out.
func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		switch part {
		case "":
			continue
		case "max", "flat", "0":
			out = append(out, 0)
			continue
		}
		v, err := strconv.ParseFloat(part, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("bench: -rate: %q is not a rate per second or max", part)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("bench: -rate: no rate given")
	}
	if len(out) >= maxTags {
		return nil, fmt.Errorf("bench: -rate: at most %d steps", maxTags-1)
	}
	return out, nil
}

// parseInts reads "5000,15000".
func parseInts(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		v, err := strconv.Atoi(part)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bench: %q is not a positive count", part)
		}
		out = append(out, v)
	}
	return out, nil
}

// errRemote refuses a target that is not this machine.
var errRemote = errors.New("bench: target is not a loopback address (pass -allow-remote to load a remote server)")

// checkLoopback refuses any address whose host is not loopback, unless
// allowRemote. An empty host (":3101") means this machine. Names are
// resolved with lookup and every address they give must be loopback.
func checkLoopback(ctx context.Context, addrs []string, allowRemote bool,
	lookup func(ctx context.Context, host string) ([]net.IPAddr, error)) error {
	if allowRemote {
		return nil
	}
	for _, a := range addrs {
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("bench: %q is not host:port: %w", a, err)
		}
		if host == "" {
			continue
		}
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsLoopback() {
				return fmt.Errorf("%w: %s", errRemote, a)
			}
			continue
		}
		ips, err := lookup(ctx, host)
		if err != nil {
			return fmt.Errorf("bench: resolve %s: %w", host, err)
		}
		if len(ips) == 0 {
			return fmt.Errorf("bench: %s resolves to nothing", host)
		}
		for _, ip := range ips {
			if !ip.IP.IsLoopback() {
				return fmt.Errorf("%w: %s is %s", errRemote, a, ip.IP)
			}
		}
	}
	return nil
}
