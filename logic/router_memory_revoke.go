package logic

import (
	"context"
	"fmt"
	"time"
)

// Revocations (Pusher.Kick with WithRevoke): per user, the time before
// which the user's credentials are revoked, kept for a ttl (the longest
// credential lifetime). logic writes them (Revoker), cloud reads them at
// auth (cloud.RevocationStore). Times are kept to the millisecond, as the
// Redis router keeps them. Like everything else, Wipe drops them.

var _ Revoker = (*MemoryRouter)(nil)

type memRevocation struct {
	before  time.Time
	expires time.Time
}

// Revoke records that the credentials of mids issued before before are
// revoked, for ttl. A user's later revocation replaces an earlier one
// (with its ttl); an earlier one leaves a later one as it is. Mids below 1
// name nobody and are skipped; a ttl below 1 ms is ErrInvalidArgument.
func (r *MemoryRouter) Revoke(ctx context.Context, mids []int64, before time.Time, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("%w: revocation ttl %v", ErrInvalidArgument, ttl)
	}
	before = time.UnixMilli(before.UnixMilli())
	now := r.now()
	rev := memRevocation{before: before, expires: now.Add(ttl)}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, mid := range mids {
		if mid <= 0 {
			continue
		}
		if old, ok := r.revoked[mid]; ok && now.Before(old.expires) && !old.before.Before(before) {
			continue
		}
		r.revoked[mid] = rev
	}
	r.maybeSweep(now)
	return nil
}

// RevokedBefore returns the revocation time of each of mids that has an
// unexpired one.
func (r *MemoryRouter) RevokedBefore(ctx context.Context, mids []int64) (map[int64]time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := r.now()
	out := make(map[int64]time.Time)
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, mid := range mids {
		if rev, ok := r.revoked[mid]; ok && now.Before(rev.expires) {
			out[mid] = rev.before
		}
	}
	return out, nil
}

// sweepRevoked drops expired revocations. r.mu is held for writing.
func (r *MemoryRouter) sweepRevoked(now time.Time) {
	for mid, rev := range r.revoked {
		if !now.Before(rev.expires) {
			delete(r.revoked, mid)
		}
	}
}
