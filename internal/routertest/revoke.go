package routertest

import (
	"context"
	"testing"
	"time"

	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Revocations (a kick with revoke): logic writes, per user, the time
// before which the user's credentials are revoked; cloud reads it at auth.

// revokedAt reads mids' revocations as Unix milliseconds.
func revokedAt(t *testing.T, s Store, mids ...int64) map[int64]int64 {
	t.Helper()
	got, err := s.RevokedBefore(ctxT(t), mids)
	require.NoError(t, err)
	out := make(map[int64]int64, len(got))
	for mid, at := range got {
		out[mid] = at.UnixMilli()
	}
	return out
}

// testRevokeLaterWins: a revocation is read back to the millisecond; a
// later one replaces it, an earlier one does not; mids below 1 and empty
// calls are no-ops; a ttl under 1 ms and an ended ctx are errors.
func testRevokeLaterWins(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	t0 := time.UnixMilli(1700000000123).Add(456 * time.Microsecond)
	assert.Empty(t, revokedAt(t, s, 1, 2))
	require.NoError(t, s.Revoke(ctx, []int64{1, 2, 2, 0, -3}, t0, ttl))
	assert.Equal(t, map[int64]int64{1: 1700000000123, 2: 1700000000123}, revokedAt(t, s, 1, 2, 3, 0, -3),
		"to the millisecond; mids below 1 name nobody")

	require.NoError(t, s.Revoke(ctx, []int64{2, 3}, t0.Add(time.Second), ttl))
	require.NoError(t, s.Revoke(ctx, []int64{1, 3}, t0.Add(-time.Second), ttl))
	assert.Equal(t, map[int64]int64{1: 1700000000123, 2: 1700000001123, 3: 1700000001123}, revokedAt(t, s, 1, 2, 3),
		"a later revocation replaces an earlier one, never the reverse")

	require.NoError(t, s.Revoke(ctx, nil, t0, ttl))
	got, err := s.RevokedBefore(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, got)
	require.ErrorIs(t, s.Revoke(ctx, []int64{4}, t0, 0), logic.ErrInvalidArgument)
	assert.Empty(t, revokedAt(t, s, 4))

	ended, cancel := context.WithCancel(ctx)
	cancel()
	assert.Error(t, s.Revoke(ended, []int64{5}, t0, ttl))
	_, err = s.RevokedBefore(ended, []int64{1})
	assert.Error(t, err)
}

// testRevokeExpiry: a revocation lasts its ttl; a later one after it
// expired is kept with its own.
func testRevokeExpiry(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	short := 300 * time.Millisecond
	t0 := time.UnixMilli(1700000000000)
	require.NoError(t, s.Revoke(ctx, []int64{1, 2}, t0, short))
	require.NoError(t, s.Revoke(ctx, []int64{3}, t0, ttl))
	assert.Len(t, revokedAt(t, s, 1, 2, 3), 3)
	h.Advance(2 * short)
	assert.Equal(t, map[int64]int64{3: t0.UnixMilli()}, revokedAt(t, s, 1, 2, 3))

	require.NoError(t, s.Revoke(ctx, []int64{1}, t0.Add(-time.Second), ttl))
	assert.Equal(t, map[int64]int64{1: t0.UnixMilli() - 1000}, revokedAt(t, s, 1, 2),
		"an expired revocation no longer counts as later")
}

// testRevokeMany: thousands of users in one call each way.
func testRevokeMany(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	const n = 3000
	mids := make([]int64, n)
	for i := range mids {
		mids[i] = int64(i + 1)
	}
	t0 := time.UnixMilli(1700000000000)
	require.NoError(t, s.Revoke(ctx, mids, t0, ttl))
	got, err := s.RevokedBefore(ctx, append(mids, n+1))
	require.NoError(t, err)
	require.Len(t, got, n)
	for _, mid := range mids {
		assert.Equal(t, t0.UnixMilli(), got[mid].UnixMilli())
	}
}
