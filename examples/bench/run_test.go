package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/examples/server/node"
)

// startServer runs the all-in-one reference server in process on loopback
// ports.
func startServer(t *testing.T) *node.App {
	t.Helper()
	cfg, err := node.Parse([]string{"-tcp-addr", "127.0.0.1:0", "-ws-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0",
		"-link-addr", "127.0.0.1:0", "-auth", "dev"}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	app, err := node.New(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		sctx, c2 := context.WithTimeout(context.Background(), 10*time.Second)
		defer c2()
		_ = app.Shutdown(sctx)
	})
	return app
}

// TestRunEndToEnd drives every push mode and the idle mode over both
// transports against a real server, with a small fleet and short windows:
// what is pushed is what is counted.
func TestRunEndToEnd(t *testing.T) {
	app := startServer(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "r.jsonl")
	for _, tc := range []struct{ proto, mode, rates string }{
		{"ws", "room", "50,max"}, {"tcp", "room", "50"}, {"tcp", "mids", "200"}, {"ws", "keys", "200"}, {"tcp", "all", "20"}, {"ws", "idle", "1"},
	} {
		t.Run(tc.proto+"-"+tc.mode, func(t *testing.T) {
			args := []string{"-proto", tc.proto, "-tcp", app.Addr("tcp"), "-ws", app.Addr("ws"), "-api", app.Addr("http"),
				"-conns", "40", "-rooms", "2", "-per-ip", "15", "-mode", tc.mode, "-rate", tc.rates, "-publishers", "2",
				"-warmup", "200ms", "-window", "700ms", "-drain", "3s", "-duration", "30s", "-heartbeat", "300ms",
				"-idle-steps", "20,40", "-hold", "700ms", "-settle", "10ms", "-json", out, "-scenario", tc.proto + "-" + tc.mode,
				"-svg", filepath.Join(dir, tc.mode+".svg"), "-quiet"}
			if tc.proto == "tcp" && tc.mode == "room" {
				args = append(args, "-pin") // readers pinned to CPUs
			}
			cfg, err := parseFlags(args, &strings.Builder{})
			require.NoError(t, err)
			var sb strings.Builder
			ok, err := run(context.Background(), cfg, &sb)
			require.NoError(t, err, sb.String())
			if tc.rates != "50,max" { // flat out may be refused under -race
				require.True(t, ok, sb.String())
			}
		})
	}
	rs, err := readResults(out)
	require.NoError(t, err)
	require.Len(t, rs, 7)
	for _, r := range rs {
		b, _ := json.Marshal(r)
		require.EqualValues(t, 40, r.Conns, "%s", b)
		require.Zero(t, r.Disconnects, "%s", b)
		if r.Mode == "idle" {
			require.Contains(t, r.Extra, "rss_bytes_per_conn")
			continue
		}
		require.Positive(t, r.Accepted, "%s", b)
		require.Equal(t, r.Expected, r.Received, "%s", b)
		require.Positive(t, r.P99, "%s", b)
		if runtime.GOOS == "linux" { // the epoll reader reads with kernel timestamps
			require.Positive(t, r.SocketP99, "%s", b)
			require.LessOrEqual(t, r.SocketP99, r.Max, "%s", b)
		}
		per := map[string]uint64{"room": 20, "all": 40, "mids": 1, "keys": 1}[r.Mode]
		require.Equal(t, r.Accepted*per, r.Expected, "%s", b)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "room.svg"))
	require.NoError(t, err)
	require.Contains(t, string(svg), "<polyline")
}
