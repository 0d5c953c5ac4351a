package logic_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
)

// TestMemoryRouterDrainedExpires: a drain's tombstone lasts DrainedTTL,
// and the sweep reclaims it.
func TestMemoryRouterDrainedExpires(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(1700000000, 0)}
	r := logic.NewMemoryRouter(logic.MemoryRouterConfig{Now: clk.Now})
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "a", Epoch: "e1"}, time.Minute))
	require.NoError(t, r.RemoveNode(ctx, "a"))
	clk.Advance(logic.DrainedTTL - time.Second)
	got, err := r.Drained(ctx, []string{"a"})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a": "e1"}, got)
	clk.Advance(2 * time.Second)
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "b"}, time.Minute)) // sweeps
	got, err = r.Drained(ctx, []string{"a"})
	require.NoError(t, err)
	require.Empty(t, got)
}
