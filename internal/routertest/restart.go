package routertest

import (
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testRestartEpoch: a node id registered again with another epoch is a
// restarted process, whose predecessor's routes must go at once (it died
// without removing them); a renewal with the same epoch keeps them, and
// routes of other nodes, or that moved to another node, are untouched.
func testRestartEpoch(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	short := 300 * time.Millisecond
	a := imcloud.Node{ID: "node-a", LinkAddr: "127.0.0.1:7000", Epoch: "e1"}
	b := imcloud.Node{ID: "node-b", LinkAddr: "127.0.0.1:7001", Epoch: "b1"}
	require.NoError(t, s.PutNode(ctx, a, short))
	require.NoError(t, s.PutNode(ctx, b, ttl))
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{
		sess(1, "k1", "node-a", 1),
		sess(1, "k2", "node-b", 1),
		sess(2, "k3", "node-a", 2),
		sess(3, "k4", "node-a", 3),
		sess(0, "anon", "node-a", 4),
	}, ttl))
	// k4 reconnected to node-b: no longer node-a's.
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{sess(3, "k4", "node-b", 2)}, ttl))

	all := []string{"k1", "k2", "k3", "k4", "anon"}
	before := map[string]string{"k1": "node-a", "k2": "node-b", "k3": "node-a", "k4": "node-b", "anon": "node-a"}
	require.NoError(t, s.PutNode(ctx, a, short), "a renewal, same epoch")
	got, err := s.NodesByKeys(ctx, all)
	require.NoError(t, err)
	assert.Equal(t, before, got, "a renewal keeps the node's routes")

	// node-a crashes; its registration lapses, then it comes back under
	// the same id with a new epoch.
	h.Advance(2 * short)
	a.Epoch = "e2"
	require.NoError(t, s.PutNode(ctx, a, ttl))
	got, err = s.NodesByKeys(ctx, all)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k2": "node-b", "k4": "node-b"}, got, "the dead process's routes are gone")
	got, err = s.NodesByMids(ctx, []int64{1, 2, 3})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k2": "node-b", "k4": "node-b"}, got)

	// The new process's own sessions stay across its renewals.
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{sess(1, "k1", "node-a", 1)}, ttl))
	require.NoError(t, s.PutNode(ctx, a, ttl))
	require.NoError(t, s.PutNode(ctx, b, ttl))
	got, err = s.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k1": "node-a", "k2": "node-b"}, got)

	nodes, err := s.Nodes(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 2)
	assert.Equal(t, "e2", nodes[0].Epoch)
	assert.Equal(t, "b1", nodes[1].Epoch)
}
