package routertest

import (
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testDrained: RemoveNode (a drain) leaves a tombstone with the epoch of
// the registration it removed, which Drained reports for the ids asked;
// a node whose registration merely expired has none, and a node that
// registers again after its drain keeps the old epoch's tombstone (job
// compares epochs).
func testDrained(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	short := 300 * time.Millisecond
	require.NoError(t, s.PutNode(ctx, imcloud.Node{ID: "drained", Epoch: "e1"}, ttl))
	require.NoError(t, s.PutNode(ctx, imcloud.Node{ID: "crashed", Epoch: "e2"}, short))
	require.NoError(t, s.PutNode(ctx, imcloud.Node{ID: "no-epoch"}, ttl))
	require.NoError(t, s.PutNode(ctx, imcloud.Node{ID: "live", Epoch: "e3"}, ttl))
	require.NoError(t, s.RemoveNode(ctx, "drained"))
	require.NoError(t, s.RemoveNode(ctx, "no-epoch"))
	h.Advance(2 * short)

	ids := []string{"drained", "crashed", "no-epoch", "live", "unknown"}
	got, err := s.Drained(ctx, ids)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"drained": "e1", "no-epoch": ""}, got)

	require.NoError(t, s.PutNode(ctx, imcloud.Node{ID: "drained", Epoch: "e4"}, ttl))
	got, err = s.Drained(ctx, ids)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"drained": "e1", "no-epoch": ""}, got, "the restarted process is not the drained one")

	got, err = s.Drained(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, got)
}
