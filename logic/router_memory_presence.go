package logic

import (
	"context"

	"github.com/imcloud/imcloud"
)

var (
	_ PresenceRouter = (*MemoryRouter)(nil)
	_ OfflineRouter  = (*MemoryRouter)(nil)
)

// Presence returns the live connections of each of mids that has any,
// their key, node, platform, primary room and since as put, on nodes whose
// registration is live (a node that expired or was removed hides its
// sessions at once). Within the rebuild window after a Wipe it fails with
// ErrRouterRebuilding, as NodesByMids does.
func (r *MemoryRouter) Presence(ctx context.Context, mids []int64) (map[int64][]imcloud.Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := r.now()
	out := make(map[int64][]imcloud.Session)
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(mids) > 0 && r.rebuilding(now) {
		return nil, ErrRouterRebuilding
	}
	for _, mid := range mids {
		if _, done := out[mid]; done {
			continue // asked twice
		}
		var sessions []imcloud.Session
		for k := range r.mids[mid] {
			rt, ok := r.keys[k]
			if !ok || rt.mid != mid || !now.Before(rt.expires) {
				continue
			}
			if n, ok := r.nodes[rt.node]; !ok || !now.Before(n.expires) {
				continue
			}
			sessions = append(sessions, imcloud.Session{Mid: mid, Key: k, Node: rt.node, Gen: rt.gen,
				Platform: rt.platform, Room: rt.room, Since: rt.since})
		}
		if sessions != nil {
			out[mid] = sessions
		}
	}
	return out, nil
}

// NodesByMidsOffline is NodesByMids that also returns each positive mid
// of mids it found no connection for, in their order in mids (repeated
// as asked); nil when it found one for each.
func (r *MemoryRouter) NodesByMidsOffline(ctx context.Context, mids []int64) (map[string]string, []int64, error) {
	return r.nodesByMids(ctx, mids, true)
}

// nodesByMids is NodesByMids, and NodesByMidsOffline with offline set.
func (r *MemoryRouter) nodesByMids(ctx context.Context, mids []int64, offline bool) (map[string]string, []int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	now := r.now()
	out := make(map[string]string, len(mids))
	var off []int64
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(mids) > 0 && r.rebuilding(now) {
		return nil, nil, ErrRouterRebuilding
	}
	for _, mid := range mids {
		found := false
		for k := range r.mids[mid] {
			if rt, ok := r.keys[k]; ok && rt.mid == mid && now.Before(rt.expires) {
				out[k] = rt.node
				found = true
			}
		}
		if offline && !found && mid > 0 {
			off = append(off, mid)
		}
	}
	return out, off, nil
}
