package cloud_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
)

// lockedBuf is a log destination safe for concurrent writes.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDrainLogsPhases: Shutdown logs one Info line when its drain ends,
// with the connections it closed, the total and every phase's duration.
func TestDrainLogsPhases(t *testing.T) {
	t.Parallel()
	var buf lockedBuf
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := startNode(t, cloud.Config{Store: newFakeStore(), Logger: log, MaxConnsPerIP: -1, AcceptRate: -1})
	for i := range 3 {
		c := dialRaw(t, n.tcpAddr, false)
		c.auth(2, goimAuth(int64(i+1), "", "live://log"))
	}
	waitFor(t, "all authenticated", func() bool { return n.srv.Stats().Sessions == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, n.srv.Shutdown(ctx))

	var line string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, `msg="cloud: drained"`) {
			line = l
		}
	}
	require.NotEmpty(t, line, "the drain's line in %q", buf.String())
	assert.Contains(t, line, "level=INFO")
	assert.Contains(t, line, " conns=3 ")
	for _, phase := range []string{"took", "stop", "background", "deregister", "close", "ended", "writers", "removals", "events"} {
		assert.Contains(t, line, " "+phase+"=", "phase %s", phase)
	}
}
