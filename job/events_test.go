package job

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/eventtest"
	"github.com/imcloud/imcloud/logic"
)

// TestNodeGoneEvents: on the memory router, a node whose registration
// expires gets one node_gone with its epoch; a node that drained
// (RemoveNode) gets none, nor does a live one.
func TestNodeGoneEvents(t *testing.T) {
	ctx := context.Background()
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	var nodes []imcloud.Node
	for _, id := range []string{"crashed", "drained", "live"} {
		n := startTestNode(t, id, secret).node()
		n.Epoch = "epoch-" + id
		nodes = append(nodes, n)
	}
	require.NoError(t, router.PutNode(ctx, nodes[0], 300*time.Millisecond))
	require.NoError(t, router.PutNode(ctx, nodes[1], time.Minute))
	require.NoError(t, router.PutNode(ctx, nodes[2], time.Minute))
	log := &eventtest.Log{}
	cfg := fastConfig(newMemQueue(t, 1), router)
	cfg.Events = log
	j := startJob(t, cfg)
	eventually(t, func() bool { return len(j.Stats().Nodes) == 3 }, 5*time.Second, "the job lists the nodes")
	require.NoError(t, router.RemoveNode(ctx, "drained"))
	eventually(t, func() bool { return len(j.Stats().Nodes) == 1 }, 5*time.Second, "both left")
	eventually(t, func() bool { return len(log.All()) > 0 }, 5*time.Second, "node_gone")
	time.Sleep(5 * cfg.RefreshInterval) // nothing more comes
	evs := log.All()
	require.Len(t, evs, 1, "%+v", evs)
	assert.Equal(t, imcloud.EventNodeGone, evs[0].Type)
	assert.Equal(t, "crashed", evs[0].Node)
	assert.Equal(t, "epoch-crashed", evs[0].Epoch)
	assert.False(t, evs[0].Time.IsZero())
}

// TestNodeGoneWithoutTombstones: a directory that keeps no drain
// tombstones (not a DrainedDirectory) gets node_gone for every node that
// left it: redundant for a drain, never missing for a crash.
func TestNodeGoneWithoutTombstones(t *testing.T) {
	a := startTestNode(t, "a", secret).node()
	b := startTestNode(t, "b", secret).node()
	a.Epoch = "ea"
	dir := newMemDir(a, b)
	log := &eventtest.Log{}
	cfg := fastConfig(newMemQueue(t, 1), dir)
	cfg.Events = log
	j := startJob(t, cfg)
	eventually(t, func() bool { return len(j.Stats().Nodes) == 2 }, 5*time.Second, "the job lists the nodes")
	dir.remove("a")
	eventually(t, func() bool { return len(log.All()) == 1 }, 5*time.Second, "node_gone")
	assert.Equal(t, imcloud.Event{Type: imcloud.EventNodeGone, Node: "a", Epoch: "ea", Time: log.All()[0].Time}, log.All()[0])
}

// TestNodeGoneOnRestart: a node that crashes and registers again under
// the same id before the job sees its registration expire comes back
// with another epoch: the job sends one node_gone for the old epoch, and
// none for the new process, nor for one that drained and restarted.
func TestNodeGoneOnRestart(t *testing.T) {
	ctx := context.Background()
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	n := startTestNode(t, "n1", secret).node()
	n.Epoch = "old"
	require.NoError(t, router.PutNode(ctx, n, time.Minute))
	dir := &countingDir{MemoryRouter: router}
	log := &eventtest.Log{}
	cfg := fastConfig(newMemQueue(t, 1), dir)
	cfg.Events = log
	j := startJob(t, cfg)
	eventually(t, func() bool { return len(j.Stats().Nodes) == 1 }, 5*time.Second, "the job lists the node")
	n.Epoch = "new"
	require.NoError(t, router.PutNode(ctx, n, time.Minute))
	eventually(t, func() bool { return len(log.All()) > 0 }, 5*time.Second, "node_gone for the old epoch")
	// Nothing more comes: two more reads, the events of the first of
	// them reported before the second starts.
	after := dir.reads.Load()
	eventually(t, func() bool { return dir.reads.Load() >= after+2 }, 5*time.Second, "two more directory reads")
	evs := log.All()
	require.Len(t, evs, 1, "%+v", evs)
	assert.Equal(t, imcloud.Event{Type: imcloud.EventNodeGone, Node: "n1", Epoch: "old", Time: evs[0].Time}, evs[0])
	assert.False(t, evs[0].Time.IsZero())
	assert.Len(t, j.Stats().Nodes, 1, "the node is still listed")

	// A drain and a quick restart: the tombstone names the epoch drained.
	require.NoError(t, router.RemoveNode(ctx, "n1"))
	n.Epoch = "newer"
	require.NoError(t, router.PutNode(ctx, n, time.Minute))
	after = dir.reads.Load()
	eventually(t, func() bool { return dir.reads.Load() >= after+2 }, 5*time.Second, "two more directory reads")
	assert.Len(t, log.All(), 1, "no node_gone for a drained epoch")
}

// countingDir is the memory router counting the job's directory reads.
type countingDir struct {
	*logic.MemoryRouter
	reads atomic.Int64
}

func (d *countingDir) NodesRebuilding(ctx context.Context) ([]imcloud.Node, bool, error) {
	d.reads.Add(1)
	return d.MemoryRouter.NodesRebuilding(ctx)
}
