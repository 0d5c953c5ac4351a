package cloud

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// logLines receives each log line (a slog text handler writes one per
// call).
type logLines chan string

func (l logLines) Write(p []byte) (int, error) {
	l <- string(p)
	return len(p), nil
}

// TestRefusalsLogged: refusals are summed up in the log, naming the limit,
// its value and how to change it, once per interval.
func TestRefusalsLogged(t *testing.T) {
	logs := make(logLines, 16)
	s, err := New(Config{Authenticator: DevAuthenticator(), MaxConnsPerIP: -1, MaxConns: 1,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), refusalLogEvery: 100 * time.Millisecond})
	require.NoError(t, err)
	addr := serveTCPForTest(t, s)
	held, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer held.Close()
	for range 3 {
		nc, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = nc.Read(make([]byte, 1))
		require.Error(t, err, "closed by the node")
		_ = nc.Close()
	}
	select {
	case line := <-logs:
		require.Contains(t, line, "refused 3 connections in the last 100ms: connection cap 1 (MaxConns, -max-conns): 3")
	case <-time.After(5 * time.Second):
		t.Fatal("no refusal logged")
	}
	require.Equal(t, uint64(3), s.Stats().Refused["node_cap"])
	select {
	case line := <-logs:
		t.Fatalf("nothing more to say, logged %s", line)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestIPRatesBounded: the per-source table never outgrows its size and
// keys an IPv6 source by its /64.
func TestIPRatesBounded(t *testing.T) {
	r := newIPRates(1, 64)
	busy := netip.MustParseAddr("10.0.0.1")
	require.True(t, r.allow(busy))
	require.False(t, r.allow(busy), "one per second")
	for i := range 10_000 {
		ip := netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)})
		require.True(t, r.allow(ip))
	}
	require.LessOrEqual(t, r.len(), 64)

	v6 := newIPRates(1, 64)
	require.True(t, v6.allow(netip.MustParseAddr("2001:db8::1")))
	require.False(t, v6.allow(netip.MustParseAddr("2001:db8::2")), "same /64")
	require.True(t, v6.allow(netip.MustParseAddr("2001:db8:0:1::1")))

}
