package logic

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMemoryRevocationsSwept: expired revocations are reclaimed by the
// router's sweep, not only hidden.
func TestMemoryRevocationsSwept(t *testing.T) {
	now := time.Unix(1700000000, 0)
	r := NewMemoryRouter(MemoryRouterConfig{Now: func() time.Time { return now }})
	ctx := context.Background()
	require.NoError(t, r.Revoke(ctx, []int64{1, 2}, now, time.Minute))
	require.NoError(t, r.Revoke(ctx, []int64{3}, now, time.Hour))
	now = now.Add(2 * time.Minute)
	require.NoError(t, r.PutRoomCounts(ctx, "node-a", nil, time.Minute)) // a write: the sweep runs
	r.mu.RLock()
	defer r.mu.RUnlock()
	require.Len(t, r.revoked, 1)
	require.Contains(t, r.revoked, int64(3))
}
