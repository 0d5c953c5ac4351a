package logic

import (
	"context"
	"time"
)

// DrainedTTL is how long the routers remember a node deregistered by a
// drain (RemoveNode): job asks them (Drained) about every node that left
// its directory, to tell a drain, whose connections reported their own
// disconnects, from a crash, which it reports as one node_gone event.
// It covers a job's directory reads (every 2 s by default) with room for
// a job that cannot read the router for minutes.
const DrainedTTL = 10 * time.Minute

// memDrained is a drained node's tombstone.
type memDrained struct {
	epoch   string
	expires time.Time
}

// tombstoneLocked records that node id was drained now, with the epoch
// of its registration (the last one registered if it expired already).
// r.mu is held.
func (r *MemoryRouter) tombstoneLocked(id string, now time.Time) {
	epoch := r.epochs[id]
	if n, ok := r.nodes[id]; ok {
		epoch = n.node.Epoch
	}
	r.drained[id] = memDrained{epoch: epoch, expires: now.Add(DrainedTTL)}
}

// Drained returns, of ids, the nodes deregistered by a drain (RemoveNode)
// within DrainedTTL, each with the epoch of the registration removed ("":
// none). job.DrainedDirectory.
func (r *MemoryRouter) Drained(ctx context.Context, ids []string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := r.now()
	out := make(map[string]string)
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, id := range ids {
		if d, ok := r.drained[id]; ok && now.Before(d.expires) {
			out[id] = d.epoch
		}
	}
	return out, nil
}

// sweepDrained forgets the expired tombstones. r.mu is held.
func (r *MemoryRouter) sweepDrained(now time.Time) {
	for id, d := range r.drained {
		if !now.Before(d.expires) {
			delete(r.drained, id)
		}
	}
}
