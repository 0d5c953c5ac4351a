package job

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/require"
)

// manualClock is a clock the test moves by hand (the router's expiries
// and rebuild window).
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestJobKeepsNodesThroughDirectoryWipe: the router lost its data (Redis
// restarted empty): the nodes that vanished with it are not declared
// gone while the router rebuilds, so room messages still reach them; one
// that has not re-registered when the rebuild ends is gone, and so is one
// whose registration simply expired.
func TestJobKeepsNodesThroughDirectoryWipe(t *testing.T) {
	a := startTestNode(t, "a", secret)
	b := startTestNode(t, "b", secret)
	c := startTestNode(t, "c", secret)
	clk := &manualClock{now: time.Unix(1700000000, 0)}
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{Now: clk.Now})
	ctx := context.Background()
	for _, n := range []*testNode{a, b, c} {
		require.NoError(t, router.PutNode(ctx, n.node(), time.Minute))
	}
	src := newMemQueue(t, 1)
	j := startJob(t, fastConfig(src, router))
	eventually(t, func() bool { return len(j.Stats().Nodes) == 3 }, 5*time.Second, "three nodes")

	// c expires: gone, as before.
	clk.advance(30 * time.Second)
	require.NoError(t, router.PutNode(ctx, a.node(), time.Minute))
	require.NoError(t, router.PutNode(ctx, b.node(), time.Minute))
	clk.advance(40 * time.Second)
	eventually(t, func() bool { return len(j.Stats().Nodes) == 2 }, 5*time.Second, "c gone")

	// The router is wiped; a re-registers, b not yet.
	router.Wipe()
	require.NoError(t, router.PutNode(ctx, a.node(), time.Minute))
	for i := 0; i < 10; i++ {
		src.publish(roomMsg("live://1", fmt.Sprint(i)))
		time.Sleep(20 * time.Millisecond) // several directory reads in between
	}
	a.waitCount(t, 10, 5*time.Second)
	b.waitCount(t, 10, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "committed")
	s := j.Stats()
	require.Contains(t, s.Nodes, "b", "b vanished with the data: kept")
	require.Zero(t, s.Abandoned)

	// The rebuild ends without b: now it is gone.
	clk.advance(logic.DefaultRebuildWindow)
	eventually(t, func() bool { _, ok := j.Stats().Nodes["b"]; return !ok }, 5*time.Second, "b gone after the rebuild")
	src.publish(roomMsg("live://1", "after"))
	a.waitCount(t, 11, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "committed")
	require.Len(t, b.messages(), 10)
}
