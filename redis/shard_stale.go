package redis

import (
	"context"
	"errors"
	"sync"

	"github.com/imcloud/imcloud"
)

// maxStale bounds the removals a sharded router keeps to retry.
const maxStale = 4096

// staleRoutes are the previous users' copies of routes whose key became
// another user's, whose removal failed (the previous user's shard did not
// answer). The key's shard reports a move once, when the put moves the
// key, so a put retried after the failure reports nothing: the router
// keeps the removals and tries them again at its next PutSessions. At
// most maxStale are kept, the oldest dropped first; a dropped one, or one
// kept by a process that stops, lasts until SessionTTL, with NodesByMids
// of the previous user still naming the key's node.
type staleRoutes struct {
	mu   sync.Mutex
	list []imcloud.Session
}

// take returns the kept removals and forgets them.
func (p *staleRoutes) take() []imcloud.Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.list
	p.list = nil
	return list
}

// keep adds removals to retry, dropping the oldest beyond maxStale.
func (p *staleRoutes) keep(ss []imcloud.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, ss...)
	if over := len(p.list) - maxStale; over > 0 {
		p.list = append(p.list[:0], p.list[over:]...)
	}
}

// movedAway returns, of the previous routes moved reports (sessions of
// keys that were another user's, rare: keys are per connection), those
// whose previous user's shard is neither of the key's current shards: its
// copy of the route is left there.
func (r *Router) movedAway(sessions, moved []imcloud.Session) []imcloud.Session {
	if len(moved) == 0 {
		return nil
	}
	now := make(map[string]imcloud.Session, len(sessions))
	for _, s := range sessions {
		now[s.Key] = s
	}
	var out []imcloud.Session
	for _, old := range moved {
		cur := now[old.Key]
		o := r.midShard(old.Mid)
		if o == r.keyShard(old.Key) || (cur.Mid != 0 && o == r.midShard(cur.Mid)) {
			continue
		}
		out = append(out, old)
	}
	return out
}

// removeStale removes each previous route from its previous user's
// shard, conditionally on the previous (node, gen) as any removal, and
// keeps those of the shards that failed for the next call.
func (r *Router) removeStale(ctx context.Context, stale []imcloud.Session) error {
	if len(stale) == 0 {
		return nil
	}
	groups := make([][]imcloud.Session, len(r.shards))
	for _, old := range stale {
		o := r.midShard(old.Mid)
		groups[o] = append(groups[o], old)
	}
	has := func(i int) bool { return len(groups[i]) > 0 }
	errs := r.onShards(has, func(i int, s *Router) error { return s.RemoveSessions(ctx, groups[i]) })
	for i, err := range errs {
		if err != nil {
			r.stale.keep(groups[i])
		}
	}
	return errors.Join(errs...)
}
