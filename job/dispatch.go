package job

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/imcloud/imcloud"
)

// receiveLoop takes records from the source and routes each to the queues
// of its target nodes. It is the only goroutine that enqueues.
func (j *Job) receiveLoop(ctx context.Context) error {
	if err := j.dir.waitLoaded(ctx); err != nil {
		return nil
	}
	var scratch []*nodeWorker
	for {
		rec, err := j.cfg.Source.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			j.log.Error("job: source failed", "err", err)
			return wrapReceive(err)
		}
		j.c.consumed.Add(1)
		select {
		case j.pendingSem <- struct{}{}:
		case <-ctx.Done():
			return nil // not handled, not committed: the next consumer has it
		}
		scratch = j.dispatch(ctx, rec, scratch[:0])
	}
}

// dispatch routes one record. Every record ends in finish: at once when
// there is nothing to deliver, or when its last target is done.
func (j *Job) dispatch(ctx context.Context, rec imcloud.Record, targets []*nodeWorker) []*nodeWorker {
	now := time.Now()
	p := j.partitionFor(rec)
	e := &entry{p: p, offset: rec.Offset, received: now.UnixNano()}
	e.remaining.Store(1) // held while routing
	p.add(e)
	defer j.finish(e)

	m := new(imcloud.Message)
	if err := m.UnmarshalBinary(rec.Value); err != nil {
		if errors.Is(err, imcloud.ErrNewerVersion) {
			j.deadLetter(rec, err)
			return targets
		}
		j.c.skipped.Add(1)
		j.log.Warn("job: skipping poison record", "partition", rec.Partition, "offset", rec.Offset,
			"bytes", len(rec.Value), "err", err)
		return targets
	}
	if toUsers(m) && j.cfg.Users == nil {
		// Not routable by this job: set aside, never delivered to the
		// wrong audience.
		j.deadLetter(rec, fmt.Errorf("job: %s message to users and no Config.Users", m.Kind))
		return targets
	}
	if toUsers(m) {
		if m.Mids = userMids(m.Mids); len(m.Mids) == 0 {
			j.c.skipped.Add(1)
			j.log.Warn("job: skipping a record to users without a valid user", "kind", m.Kind,
				"partition", rec.Partition, "offset", rec.Offset)
			return targets
		}
	}
	if m.Expired(now) {
		j.c.expired.Add(1)
		j.log.Debug("job: dropping expired message", "id", m.ID, "expired", m.Expires)
		return targets
	}
	if j.staged(m) {
		// Appended to its stream and/or resolved to its users'
		// connections first, in offset order with the partition's other
		// such records.
		e.remaining.Add(1)
		j.stages.add(rec.Partition, staged{m: m, e: e, offset: rec.Offset})
		return targets
	}
	if m.Kind == imcloud.KindKeys || m.Kind == imcloud.KindKick {
		if m.Kind == imcloud.KindKick {
			j.c.kicks.Add(1) // by keys: to its node, as a keys message
		}
		e.remaining.Add(1)
		j.dir.route(ctx, m.Node, item{m: m, e: e, at: now.UnixNano()}, now)
		return targets
	}
	return j.fanOut(ctx, m, e, now.UnixNano(), targets)
}

// staged reports whether m goes through its partition's stage: a mids
// message or a kick by mids always (its users' connections are looked
// up), a room message when its member nodes are looked up (Config.Rooms)
// or it is appended to its stream's history.
func (j *Job) staged(m *imcloud.Message) bool {
	switch m.Kind {
	case imcloud.KindMids, imcloud.KindKick:
		return toUsers(m)
	case imcloud.KindRoom:
		return j.cfg.Rooms != nil || j.cfg.History != nil
	}
	return false
}

// fanOut queues a room or broadcast message of e for every live node,
// and records it among the recent fan-outs (see recent).
// targets is scratch space, returned for reuse.
func (j *Job) fanOut(ctx context.Context, m *imcloud.Message, e *entry, at int64, targets []*nodeWorker) []*nodeWorker {
	targets, totalConns := j.dir.fanOutTargets(m, at, targets[:0])
	if len(targets) == 0 {
		j.c.unroutable.Add(1)
		j.log.Debug("job: no node to deliver to", "id", m.ID, "kind", m.Kind)
		return targets
	}
	e.remaining.Add(int32(len(targets)))
	for _, w := range targets {
		msg := m
		if m.Kind == imcloud.KindBroadcast && m.Speed > 0 && len(targets) > 1 {
			c := *m
			c.Speed = splitSpeed(m.Speed, w.conns(), totalConns, len(targets))
			msg = &c
		}
		if !w.enqueue(ctx, item{m: msg, e: e, at: at}) {
			// The node left the directory while we routed.
			j.c.abandoned.Add(1)
			j.finish(e)
		}
	}
	return targets
}

// userMids returns mids without duplicates and without ids that name no
// user (0 or negative), reusing mids.
func userMids(mids []int64) []int64 {
	if len(mids) == 1 && mids[0] > 0 {
		return mids
	}
	mids = slices.DeleteFunc(mids, func(mid int64) bool { return mid <= 0 })
	slices.Sort(mids)
	return slices.Compact(mids)
}

// splitSpeed is one node's share of a broadcast's pace: in proportion to
// its connections when the directory reports them, evenly otherwise, and
// never 0 (which would mean unpaced).
func splitSpeed(speed int32, conns, total, nodes int) int32 {
	var s int64
	if total > 0 {
		s = int64(speed) * int64(conns) / int64(total)
	} else {
		s = int64(speed) / int64(nodes)
	}
	return int32(max(s, 1))
}

// deadLetter sets aside a record of a newer major version.
func (j *Job) deadLetter(rec imcloud.Record, cause error) {
	if j.cfg.DeadLetter == nil {
		j.c.deadLetterFailed.Add(1)
		j.log.Error("job: record of a newer version and no dead letter configured; skipped",
			"partition", rec.Partition, "offset", rec.Offset, "err", cause)
		return
	}
	ctx := j.workCtx()
	backoff := j.cfg.RetryMin
	var err error
	for attempt := 0; attempt < j.cfg.DeadLetterAttempts; attempt++ {
		if attempt > 0 && !sleepCtx(ctx, backoff) {
			break
		}
		if err = j.cfg.DeadLetter(ctx, rec); err == nil {
			j.c.deadLettered.Add(1)
			j.log.Warn("job: record of a newer version set aside", "partition", rec.Partition,
				"offset", rec.Offset)
			return
		}
		backoff = min(backoff*2, j.cfg.RetryMax)
	}
	j.c.deadLetterFailed.Add(1)
	j.log.Error("job: could not set aside a record of a newer version; skipped",
		"partition", rec.Partition, "offset", rec.Offset, "err", err)
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// workCtx is the context of the running job's workers.
func (j *Job) workCtx() context.Context {
	j.lifeMu.Lock()
	defer j.lifeMu.Unlock()
	return j.runCtx
}
