package main

import (
	"bufio"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/protocol"
)

func TestBodyRoundTrip(t *testing.T) {
	at := time.Unix(1_700_000_000, 123456789)
	b := appendBody(nil, 7, at, 64)
	require.Len(t, b, 64)
	tag, sched, ok := parseBody(b)
	require.True(t, ok)
	require.Equal(t, 7, tag)
	require.Equal(t, at.UnixNano(), sched)

	short := appendBody(nil, 0, at, 0) // never shorter than its header
	tag, sched, ok = parseBody(short)
	require.True(t, ok)
	require.Zero(t, tag)
	require.Equal(t, at.UnixNano(), sched)

	for _, bad := range []string{"", "hello", ":123;", "1:;", "1:12", "x:1;", "1:1x;", "123456:1;", "1:12345678901234567890123;"} {
		_, _, ok := parseBody([]byte(bad))
		assert.False(t, ok, "%q", bad)
	}
}

func TestSlotTime(t *testing.T) {
	start := time.Unix(100, 0)
	require.Equal(t, start, slotTime(start, 300, 0))
	require.Equal(t, start.Add(time.Second), slotTime(start, 300, 300))
	require.Equal(t, start.Add(10*time.Millisecond), slotTime(start, 100, 1))
	// 37,000/s: slot 37,000 is exactly one second later, no drift.
	require.Equal(t, start.Add(time.Second), slotTime(start, 37000, 37000))
	require.Equal(t, start.Add(500*time.Millisecond), slotTime(start, 0.5, 0).Add(500*time.Millisecond))
}

func TestSummarize(t *testing.T) {
	h := newLatencyHist()
	for i := 1; i <= 100; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	tests := []struct {
		name     string
		tally    stepTally
		lost     int64
		dps, pps float64
		pass     bool
	}{
		{"all delivered", stepTally{sent: 300, accepted: 300, expected: 1_500_000, received: 1_500_000, window: 30 * time.Second, hist: h, maxP99: 200 * time.Millisecond}, 0, 50_000, 10, true},
		{"one lost", stepTally{sent: 300, accepted: 300, expected: 1_500_000, received: 1_499_999, window: 30 * time.Second, hist: h}, 1, 49_999.966666666667, 10, false},
		{"duplicate", stepTally{sent: 1, accepted: 1, expected: 10, received: 11, window: time.Second, hist: h}, -1, 11, 1, false},
		{"p99 over", stepTally{sent: 10, accepted: 10, expected: 10, received: 10, window: time.Second, hist: h, maxP99: 50 * time.Millisecond}, 0, 10, 10, false},
		{"request errors", stepTally{sent: 10, accepted: 9, errors: 1, expected: 9, received: 9, window: time.Second, hist: h}, 0, 9, 9, false},
		{"rejections alone pass", stepTally{sent: 10, accepted: 9, rejected: 1, expected: 9, received: 9, window: time.Second, hist: h}, 0, 9, 9, true},
		{"disconnect", stepTally{sent: 1, accepted: 1, expected: 1, received: 1, disconnects: 1, window: time.Second, hist: h}, 0, 1, 1, false},
		{"pace kept", stepTally{sent: 297, accepted: 297, offered: 300, expected: 297, received: 297, window: time.Second, hist: h}, 0, 297, 297, true},
		{"generator fell behind", stepTally{sent: 290, accepted: 290, offered: 300, expected: 290, received: 290, window: time.Second, hist: h}, 0, 290, 290, false},
		{"nothing accepted", stepTally{sent: 5, rejected: 5, window: time.Second, hist: newLatencyHist()}, 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r result
			summarize(&r, tt.tally)
			require.Equal(t, tt.lost, r.Lost)
			require.InDelta(t, tt.dps, r.DelivPerSec, 1e-6)
			require.InDelta(t, tt.pps, r.PushPerSec, 1e-6)
			require.Equal(t, tt.pass, r.Pass)
		})
	}
	var r result
	summarize(&r, stepTally{accepted: 1, expected: 1, received: 1, window: time.Second, hist: h})
	require.InEpsilon(t, 50, r.P50, 0.03)
	require.InEpsilon(t, 99, r.P99, 0.03)
	require.Equal(t, 100.0, r.Max)

	require.Equal(t, 4608.0, rssSlope(5000, 36_000_000, 15000, 82_080_000))
	require.Zero(t, rssSlope(5000, 1, 5000, 2))
}

func TestCheckLoopback(t *testing.T) {
	lookup := func(_ context.Context, host string) ([]net.IPAddr, error) {
		switch host {
		case "localhost":
			return []net.IPAddr{{IP: net.ParseIP("127.0.0.1")}, {IP: net.ParseIP("::1")}}, nil
		case "mixed":
			return []net.IPAddr{{IP: net.ParseIP("127.0.0.1")}, {IP: net.ParseIP("10.0.0.1")}}, nil
		case "nowhere":
			return nil, errors.New("no such host")
		}
		return []net.IPAddr{{IP: net.ParseIP("93.184.216.34")}}, nil
	}
	ctx := context.Background()
	for _, ok := range [][]string{{"127.0.0.1:3111"}, {"127.0.0.9:1", "[::1]:2"}, {":3101"}, {"localhost:3111"}, {""}} {
		require.NoError(t, checkLoopback(ctx, ok, false, lookup), "%v", ok)
	}
	for _, bad := range [][]string{{"10.0.0.1:3111"}, {"127.0.0.1:1", "192.168.1.2:2"}, {"example.com:80"}, {"mixed:1"}, {"[2001:db8::1]:1"}} {
		require.ErrorIs(t, checkLoopback(ctx, bad, false, lookup), errRemote, "%v", bad)
		require.NoError(t, checkLoopback(ctx, bad, true, lookup), "-allow-remote: %v", bad)
	}
	require.Error(t, checkLoopback(ctx, []string{"nowhere:1"}, false, lookup))
	require.Error(t, checkLoopback(ctx, []string{"no-port"}, false, lookup))
}

func TestParseLists(t *testing.T) {
	rates, err := parseRates("100, 300,max,0,12.5")
	require.NoError(t, err)
	require.Equal(t, []float64{100, 300, 0, 0, 12.5}, rates)
	for _, bad := range []string{"", "-1", "fast", ","} {
		_, err := parseRates(bad)
		require.Error(t, err, "%q", bad)
	}
	_, err = parseRates(strings.Repeat("1,", maxTags))
	require.Error(t, err)

	pids, err := parsePids("server=12, redis=34")
	require.NoError(t, err)
	require.Equal(t, []namedPid{{"server", 12}, {"redis", 34}}, pids)
	for _, bad := range []string{"server", "=1", "a=b", "a=-1"} {
		_, err := parsePids(bad)
		require.Error(t, err, "%q", bad)
	}
	n, err := parseInts("5000,15000")
	require.NoError(t, err)
	require.Equal(t, []int{5000, 15000}, n)
	_, err = parseInts("0")
	require.Error(t, err)
}

func TestFlagsRefuseBadInput(t *testing.T) {
	for _, args := range [][]string{{"-proto", "udp"}, {"-mode", "sideways"}, {"-conns", "0"}, {"-rate", "x"}, {"-pids", "x"}, {"-window", "0s"}, {"-pollers", "0"}} {
		_, err := parseFlags(args, &strings.Builder{})
		require.Error(t, err, "%v", args)
	}
	c, err := parseFlags([]string{"-pids", "server=1"}, &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, "bench", c.pids[len(c.pids)-1].name, "the generator accounts for itself")
	require.Equal(t, "server", c.rssProc)
	require.False(t, c.pin, "readers are not pinned by default")
	c, err = parseFlags([]string{"-pin"}, &strings.Builder{})
	require.NoError(t, err)
	require.True(t, c.pin)
}

func TestSourceIP(t *testing.T) {
	require.Equal(t, "127.0.0.1", sourceIP(0, 900).String())
	require.Equal(t, "127.0.0.1", sourceIP(899, 900).String())
	require.Equal(t, "127.0.0.2", sourceIP(900, 900).String())
	require.Equal(t, "127.0.1.1", sourceIP(256*900, 900).String())
}

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		status int
		keep   bool
		err    bool
	}{
		{"content length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, true, false},
		{"503", "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}", 503, true, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", 200, true, false},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 200, false, false},
		{"http/1.0 until EOF", "HTTP/1.0 200 OK\r\n\r\nbody", 200, false, false},
		{"garbage", "SSH-2.0-OpenSSH\r\n", 0, false, true},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", 200, false, true},
		{"bad header", "HTTP/1.1 200 OK\r\nnocolon\r\n\r\n", 200, false, true},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 200, false, true},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 200, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.raw
			if !tt.err {
				raw += "HTTP/1.1 204 No Content\r\n\r\n"
			}
			br := bufio.NewReader(strings.NewReader(raw))
			status, keep, err := readResponse(br)
			if tt.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.status, status)
			require.Equal(t, tt.keep, keep)
			if keep { // the next response starts right after this one
				status, _, err := readResponse(br)
				require.NoError(t, err)
				require.Equal(t, 204, status)
			}
		})
	}
}

func TestConsume(t *testing.T) {
	now := time.Unix(1000, 0)
	push := func(tag int, ago time.Duration) *protocol.Frame {
		return &protocol.Frame{Ver: 1, Op: 1000, Body: appendBody(nil, tag, now.Add(-ago), 40)}
	}
	var b []byte
	b = protocol.AppendFrame(b, push(1, time.Millisecond))
	b = protocol.AppendFrame(b, &protocol.Frame{Ver: 1, Op: protocol.OpHeartbeatReply, Body: []byte{0, 0, 0, 1}})
	var batch protocol.Batch
	batch.Append(push(2, 2*time.Millisecond))
	batch.Append(push(2, 3*time.Millisecond))
	batch.Append(&protocol.Frame{Ver: 1, Op: 1001, Body: []byte("not ours")})
	b = append(b, batch.Bytes()...)
	whole := len(b)
	b = append(b, protocol.AppendFrame(nil, push(3, 0))[:20]...) // half a frame

	bad := 0
	used, ds, err := consume(b, rxTime{read: now.UnixNano()}, nil, &bad)
	require.NoError(t, err)
	require.Equal(t, whole, used, "the half frame waits for more bytes")
	require.Equal(t, 1, bad)
	require.Equal(t, []delivery{{1, time.Millisecond, -1}, {2, 2 * time.Millisecond, -1}, {2, 3 * time.Millisecond, -1}}, ds,
		"no kernel timestamp: arrival unknown")

	_, _, err = consume([]byte{0, 0, 0, 20, 0, 15, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0, 1, 2, 3, 4}, rxTime{}, nil, &bad)
	require.Error(t, err, "a bad header length is an error, not a wait")
}

func TestRecorder(t *testing.T) {
	rec := newRecorder(4)
	rec.shards[0].add([]delivery{{1, time.Millisecond, time.Millisecond / 2}, {0, time.Second, -1}, {2, -time.Millisecond, -1}}, 2)
	rec.shards[3].add([]delivery{{1, 3 * time.Millisecond, -1}, {maxTags + 5, time.Millisecond, -1}}, 0)
	n, h, arrived := rec.window(1)
	require.EqualValues(t, 2, n)
	require.Equal(t, 3*time.Millisecond, h.maximum())
	require.EqualValues(t, 1, arrived.count(), "only the delivery with a kernel timestamp")
	require.Equal(t, time.Millisecond/2, arrived.maximum())
	_, _, arrived = rec.window(2)
	require.Zero(t, arrived.count())
	require.EqualValues(t, 2, rec.received(0), "warm-up and out-of-range tags")
	require.EqualValues(t, 1, rec.received(2))
	require.EqualValues(t, 2, rec.badBodies())
	tick := rec.takeTick()
	require.EqualValues(t, 5, tick.count())
	require.Equal(t, time.Second, tick.maximum())
	require.Zero(t, rec.takeTick().count())
}

func TestReportSplice(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "r.jsonl")
	md := filepath.Join(dir, "BENCHMARKS.md")
	rs := []result{
		{Scenario: "1: room", Command: "go run ./examples/bench -rate 100", Load: "0.5 0.4 0.3", Mode: "room", Conns: 5000, Rate: 100, Label: "100/s",
			WindowSec: 30, Accepted: 3000, PushPerSec: 100, Expected: 15_000_000, Received: 15_000_000, DelivPerSec: 500_000, P99: 3, SocketP50: 1.25, SocketP99: 2.5, MaxP99: 50, Pass: true,
			Procs: []procResult{{Name: "server", Cores: 1.2, RSSBytes: 100 << 20}}},
		{Scenario: "1: room", Command: "go run ./examples/bench -rate 100", Load: "0.5 0.4 0.3", Mode: "room", Conns: 5000, Rate: 0, Label: "flat"},
		{Scenario: "4: idle", Command: "go run ./examples/bench -mode idle", Mode: "idle", Conns: 15000, WindowSec: 60, Pass: true,
			Extra: map[string]float64{"rss_bytes_per_conn": 4600, "rss_kb_at_5000": 36000, "rss_kb_at_15000": 81000}},
	}
	for i := range rs {
		require.NoError(t, appendJSON(in, &rs[i]))
	}
	require.NoError(t, os.WriteFile(md, []byte("# Benchmarks\n\n## cloud\n\nkept\n"), 0o644))
	require.NoError(t, report([]string{"-in", in, "-md", md}, nil))
	first, err := os.ReadFile(md)
	require.NoError(t, err)
	s := string(first)
	require.True(t, strings.HasPrefix(s, "# Benchmarks\n\n## cloud\n\nkept\n"))
	require.Contains(t, s, reportHeading)
	require.Contains(t, s, "| 100/s | 5000 | 100 |")
	require.Contains(t, s, "**500,000 deliveries/s**")
	require.Contains(t, s, "4,600 B")
	require.Contains(t, s, "server 1.20 / 100 MB")
	require.Contains(t, s, "| 1.25 / 2.50 |", "arrival in the client sockets")
	require.Contains(t, s, "| - |", "a step without kernel timestamps")

	// Text after the generated block survives a second run unchanged.
	require.NoError(t, os.WriteFile(md, append(first, []byte("\nanalysis by hand\n")...), 0o644))
	require.NoError(t, report([]string{"-in", in, "-md", md}, nil))
	second, err := os.ReadFile(md)
	require.NoError(t, err)
	require.Equal(t, string(first)+"\nanalysis by hand\n", string(second))
	require.Equal(t, 1, strings.Count(string(second), markBegin))

	require.Error(t, report([]string{"-in", filepath.Join(dir, "missing")}, nil))
	require.Equal(t, "1,234,567", commas(1234567.4))
	require.Equal(t, "-1,000", commas(-1000))
	require.Equal(t, "12", commas(12))
}

func TestRenderSVG(t *testing.T) {
	svg := string(renderSVG("s1 <5000>", []plotPoint{{T: 1, Dps: 1.5e6, P99: 3}, {T: 2, Dps: 2e6, P99: 12}}))
	require.True(t, strings.HasPrefix(svg, "<svg"))
	require.Contains(t, svg, "s1 &lt;5000&gt;")
	require.Equal(t, 2, strings.Count(svg, "<polyline"))
	require.Equal(t, 2.0e6, niceCeil(1.5e6))
	require.Equal(t, 5.0, niceCeil(3))
	require.Equal(t, 1.0, niceCeil(0))
}

func TestShellJoin(t *testing.T) {
	require.Equal(t, `-scenario '1. room (p99 < 50 ms)' -rate 1,10 '' 'it'\''s'`,
		shellJoin([]string{"-scenario", "1. room (p99 < 50 ms)", "-rate", "1,10", "", "it's"}))
}

// TestBucketOf: the table lookup files every duration where the binary
// search over the bucket bounds does, and within a bucket of the
// logarithm's answer (they differ only where float rounding sits on a
// bound); quantiles report a bound at or above the sample.
func TestBucketOf(t *testing.T) {
	logBucket := func(d time.Duration) int {
		if d <= histMin {
			return 0
		}
		return min(histBuckets-1, int(math.Log(float64(d)/float64(histMin))/math.Log(histGrowth)))
	}
	check := func(d time.Duration) {
		t.Helper()
		b := bucketOf(d)
		require.Equal(t, buckets.slow(max(d, 0)), b, "%d ns", d)
		require.InDelta(t, logBucket(d), b, 1, "%d ns", d)
		if b < histBuckets-1 {
			require.GreaterOrEqual(t, upperBound(b), d, "%d ns", d)
		}
	}
	for _, d := range []time.Duration{-1, 0, 1, 999, 1000, 1001, 1019, 1020, 1021, time.Millisecond, 50 * time.Millisecond,
		time.Second, 100 * time.Second, time.Hour, 1<<62 + 5} {
		check(d)
	}
	for b := 1; b < histBuckets; b++ {
		s := buckets.starts[b]
		require.Equal(t, b, bucketOf(s), "the first duration of bucket %d", b)
		require.Equal(t, b-1, bucketOf(s-1), "the last duration of bucket %d", b-1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		check(time.Duration(rng.Int64N(int64(10 * time.Second))))
	}
}
