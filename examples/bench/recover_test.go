package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	cloudclient "github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/protocol"
)

// TestRecoverEndToEnd runs the recover mode over both transports against
// the all-in-one server (history on by default): a few clients, each
// missing a few dozen pushes a round, every one replayed in order.
func TestRecoverEndToEnd(t *testing.T) {
	app := startServer(t)
	out := filepath.Join(t.TempDir(), "r.jsonl")
	for _, tc := range []struct{ proto, room string }{{"tcp", ""}, {"ws", "live://7"}} {
		t.Run(tc.proto, func(t *testing.T) {
			args := []string{"-mode", "recover", "-proto", tc.proto, "-tcp", app.Addr("tcp"), "-ws", app.Addr("ws"),
				"-api", app.Addr("http"), "-conns", "3", "-missed", "40", "-rounds", "2", "-per-push", "2", "-publishers", "2",
				"-body", "100", "-shared-room", tc.room, "-duration", "30s", "-json", out, "-scenario", "recover-" + tc.proto, "-quiet"}
			cfg, err := parseFlags(args, &strings.Builder{})
			require.NoError(t, err)
			var sb strings.Builder
			ok, err := run(context.Background(), cfg, &sb)
			require.NoError(t, err, sb.String())
			require.True(t, ok, sb.String())
			require.Contains(t, sb.String(), "replayed 240 of 240")
		})
	}
	rs, err := readResults(out)
	require.NoError(t, err)
	require.Len(t, rs, 2)
	for _, r := range rs {
		b, _ := json.Marshal(r)
		require.Equal(t, "recover", r.Mode, "%s", b)
		require.EqualValues(t, 3, r.Conns, "%s", b)
		require.Equal(t, 2, r.Rounds, "%s", b)
		require.Equal(t, 40, r.Missed, "%s", b)
		require.EqualValues(t, 240, r.Expected, "%s", b)
		require.Equal(t, r.Expected, r.Received, "%s", b)
		require.Zero(t, r.Failures, "%s", b)
		require.Zero(t, r.Extra["duplicates"], "%s", b)
		require.Positive(t, r.P99, "%s", b)
		require.LessOrEqual(t, r.P50, r.Max, "%s", b)
		require.Equal(t, "bench", r.Procs[len(r.Procs)-1].Name, "the generator's CPU over the reconnects")
	}

	// Another run to the same users waits for its own pushes, not for the
	// last run's still in the history (same round, same index).
	cfg, err := parseFlags([]string{"-mode", "recover", "-api", app.Addr("http"), "-conns", "3", "-missed", "40"}, &strings.Builder{})
	require.NoError(t, err)
	last := rs[len(rs)-1]
	rc := &recoverer{cfg: cfg, run: "another", conns: make([]*cloudclient.Client, 3), http: http.DefaultClient}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, rc.awaitHistory(ctx, rc.tag(last.Rounds)), context.DeadlineExceeded)

	var md strings.Builder
	require.NoError(t, report([]string{"-in", out}, &md))
	require.Contains(t, md.String(), "### recover-ws")
	require.Contains(t, md.String(), "| ws | 3 | 40 | 2 | 240 / 240 | 0 | 0 |")
}

// TestRecoverFlags: recover mode's defaults (one client, every client
// in one push request) and its bad input.
func TestRecoverFlags(t *testing.T) {
	c, err := parseFlags([]string{"-mode", "recover"}, &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, 1, c.conns)
	require.Equal(t, 1, c.perPush)
	require.Equal(t, 1000, c.missed)
	require.Equal(t, 20, c.rounds)
	c, err = parseFlags([]string{"-mode", "recover", "-conns", "100", "-missed", "750"}, &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, 100, c.perPush)
	c, err = parseFlags([]string{"-mode", "recover", "-conns", "100", "-per-push", "10"}, &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, 10, c.perPush)
	c, err = parseFlags(nil, &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, 1000, c.conns, "other modes keep their defaults")
	for _, bad := range [][]string{{"-missed", "0"}, {"-rounds", "-1"}} {
		_, err := parseFlags(append([]string{"-mode", "recover"}, bad...), &strings.Builder{})
		require.Error(t, err, "%v", bad)
	}
}

// TestCheckReplay: a reconnect passes only with exactly its pushes, in
// order, of its stream, before an op 25 that says recovered.
func TestCheckReplay(t *testing.T) {
	const stream = "u:3"
	pushes := func(round int, ks ...int) []cloudclient.Push {
		var ps []cloudclient.Push
		for i, k := range ks {
			ps = append(ps, cloudclient.Push{Op: 1000, Body: appendRecoverBody(nil, "x."+strconv.Itoa(round), k, 100), Stream: stream, Offset: int64(10 + 3*i)})
		}
		return ps
	}
	good := cloudclient.Recovery{Streams: []protocol.RecoveryStream{{Stream: stream, Recovered: true, Replayed: 3},
		{Stream: "r:live://1", Recovered: true}}}
	n, err := checkReplay(good, pushes(2, 0, 1, 2), stream, "x.2", 3)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	tests := []struct {
		name string
		rec  cloudclient.Recovery
		got  []cloudclient.Push
		n    int
	}{
		{"one missing", good, pushes(2, 0, 1), 2},
		{"out of order", good, pushes(2, 0, 2, 1), 1},
		{"duplicate", good, pushes(2, 0, 1, 1, 2), 2},
		{"earlier round", good, pushes(1, 0, 1, 2), 0},
		{"earlier run", good, []cloudclient.Push{{Body: appendRecoverBody(nil, "y.2", 0, 0), Stream: stream, Offset: 1}}, 0},
		{"not recovered", cloudclient.Recovery{Streams: []protocol.RecoveryStream{{Stream: stream, Reason: "trimmed", Replayed: 3}}}, pushes(2, 0, 1, 2), 3},
		{"op 25 counts otherwise", cloudclient.Recovery{Streams: []protocol.RecoveryStream{{Stream: stream, Recovered: true, Replayed: 2}}}, pushes(2, 0, 1, 2), 3},
		{"another stream", good, append(pushes(2, 0, 1), cloudclient.Push{Body: appendRecoverBody(nil, "x.2", 2, 0), Stream: "u:4", Offset: 99}), 2},
		{"offset back", good, append(pushes(2, 0, 1), cloudclient.Push{Body: appendRecoverBody(nil, "x.2", 2, 0), Stream: stream, Offset: 13}), 2},
		{"foreign body", good, append(pushes(2, 0, 1), cloudclient.Push{Body: []byte("hello"), Stream: stream, Offset: 99}), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := checkReplay(tt.rec, tt.got, stream, "x.2", 3)
			require.Error(t, err)
			require.Equal(t, tt.n, n)
		})
	}
}

func TestRecoverBody(t *testing.T) {
	b := appendRecoverBody(nil, "k3x.12", 345, 100)
	require.Len(t, b, 100)
	tag, k, ok := parseRecoverBody(b)
	require.True(t, ok)
	require.Equal(t, "k3x.12", tag)
	require.Equal(t, 345, k)
	require.Equal(t, "ra.1:0;", string(appendRecoverBody(nil, "a.1", 0, 0)))
	for _, bad := range []string{"", "r", "ra.1:2", "xa.1:2;", "r:2;", "ra.1:;", "ra.1:-2;", "ra:b;"} {
		_, _, ok := parseRecoverBody([]byte(bad))
		require.False(t, ok, "%q", bad)
	}
	rc := &recoverer{cfg: &config{conns: 5, perPush: 2}, run: "a"}
	require.Equal(t, []string{"1,2", "3,4", "5"}, rc.groups())
	require.Equal(t, "a.7", rc.tag(7))
}

// TestReportRecoverySection: the recovery report has a block of its own
// in BENCHMARKS.md, next to make bench's, and compares history on and off.
func TestReportRecoverySection(t *testing.T) {
	dir := t.TempDir()
	in, md := filepath.Join(dir, "r.jsonl"), filepath.Join(dir, "BENCHMARKS.md")
	rs := []result{
		{Scenario: "H1. mids", Mode: "mids", Label: "history on 1", PushPerSec: 900, DelivPerSec: 900},
		{Scenario: "H1. mids", Mode: "mids", Label: "history off 1", PushPerSec: 1000, DelivPerSec: 1000},
		{Scenario: "H1. mids", Mode: "mids", Label: "history off 2", PushPerSec: 1200, DelivPerSec: 1200},
		{Scenario: "H1. mids", Mode: "mids", Label: "history on 2", PushPerSec: 1100, DelivPerSec: 1100},
	}
	for i := range rs {
		require.NoError(t, appendJSON(in, &rs[i]))
	}
	e2e := sections["end-to-end"]
	doc := "# Benchmarks\n\n" + e2e.heading + "\n\n" + e2e.begin + "\nold tables\n" + e2e.end + "\n"
	require.NoError(t, os.WriteFile(md, []byte(doc), 0o644))
	require.NoError(t, report([]string{"-in", in, "-md", md, "-section", "recovery"}, nil))
	got, err := os.ReadFile(md)
	require.NoError(t, err)
	s := string(got)
	require.True(t, strings.HasPrefix(s, doc), "make bench's block is kept")
	require.Contains(t, s, sections["recovery"].heading)
	require.Contains(t, s, "**1,000 vs 1,100 pushes/s accepted (91%)**")
	require.Error(t, report([]string{"-in", in, "-section", "sideways"}, nil))
}

// TestRecoverAddr: with -reconnect-tcp or -reconnect-ws, odd rounds dial
// the other node, so that every reconnect changes nodes.
func TestRecoverAddr(t *testing.T) {
	cfg := &config{proto: "tcp", tcpAddr: "127.0.0.1:1", wsAddr: "127.0.0.1:2", wsPath: "/sub"}
	rc := &recoverer{cfg: cfg}
	require.Equal(t, "127.0.0.1:1", rc.addr(1), "one node")
	cfg.reconnectTCP, cfg.reconnectWS = "127.0.0.1:3", "127.0.0.1:4"
	require.Equal(t, []string{"127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:1"}, []string{rc.addr(0), rc.addr(1), rc.addr(2)})
	cfg.proto = "ws"
	require.Equal(t, []string{"ws://127.0.0.1:2/sub", "ws://127.0.0.1:4/sub"}, []string{rc.addr(0), rc.addr(1)})
}
