package job

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imcloud/imcloud"
)

// directory is the job's view of the live nodes, with one worker per node.
type directory struct {
	j *Job

	refreshMu   sync.Mutex // one read of the directory at a time
	lastRefresh time.Time

	mu          sync.Mutex
	workers     map[string]*nodeWorker
	liveWorkers []*nodeWorker // sorted by id
	limbo       []limboItem   // messages for nodes not known yet
	refreshNow  chan struct{}
	totalConns  int
	loaded      chan struct{}
	isLoaded    bool
	stopped     bool
	rebuilding  bool // the last read kept nodes it did not list
	recent      recent
	gone        []imcloud.Node // dropped, not yet reported (events.go)
	wg          sync.WaitGroup
}

func (d *directory) init(j *Job) {
	d.j = j
	d.workers = make(map[string]*nodeWorker)
	d.loaded = make(chan struct{})
	d.refreshNow = make(chan struct{}, 1)
	d.recent.init(j.cfg)
}

// limboItem is a message waiting for a directory read: a keys message,
// or a room message for a member node (see route).
type limboItem struct {
	node     string
	it       item
	received time.Time
}

// waitLoaded blocks until the directory was read once: routing room
// messages against an empty list would commit them undelivered.
func (d *directory) waitLoaded(ctx context.Context) error {
	select {
	case <-d.loaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refreshLoop reads the directory every RefreshInterval, at once when a
// keys message names an unknown node (at most every 50ms), and retries
// with backoff until the first read succeeds.
func (d *directory) refreshLoop(ctx context.Context) {
	const minGap = 50 * time.Millisecond
	backoff := d.j.cfg.RetryMin
	for ctx.Err() == nil {
		err := d.refresh(ctx)
		d.reportGone(ctx)
		wait := d.j.cfg.RefreshInterval
		if err != nil && !d.loadedOnce() {
			wait = backoff
			backoff = min(backoff*2, d.j.cfg.RetryMax)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-d.refreshNow:
			t.Stop()
			d.refreshMu.Lock()
			gap := minGap - time.Since(d.lastRefresh)
			d.refreshMu.Unlock()
			if gap > 0 && !sleepCtx(ctx, gap) {
				return
			}
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

func (d *directory) loadedOnce() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.isLoaded
}

// refresh reads the directory: new nodes get a worker, a node listed
// with another epoch than the job knew restarted (its old process is
// reported gone: restartedLocked), nodes no longer listed (their
// registration expired) are declared gone, except while the
// directory rebuilds after losing its data (RebuildingDirectory): then
// they are kept, and declared gone only if still missing at a read after
// the rebuild. On error the last list stands.
func (d *directory) refresh(ctx context.Context) error {
	d.refreshMu.Lock()
	defer d.refreshMu.Unlock()
	started := time.Now()
	d.lastRefresh = started
	nodes, rebuilding, err := d.read(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.j.c.directoryErrors.Add(1)
			d.j.log.Warn("job: reading the node directory failed", "err", err)
		}
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return nil
	}
	seen := make(map[string]bool, len(nodes))
	total := 0
	var joined []*nodeWorker
	for _, n := range nodes {
		if n.ID == "" || seen[n.ID] {
			continue
		}
		seen[n.ID] = true
		total += max(n.Conns, 0)
		if w := d.workers[n.ID]; w != nil {
			d.restartedLocked(w.setNode(n), n)
			continue
		}
		w := newNodeWorker(d.j, n)
		d.workers[n.ID] = w
		joined = append(joined, w)
		d.wg.Add(1)
		go func() { defer d.wg.Done(); w.run() }()
		d.j.log.Info("job: node joined", "node", n.ID, "link", n.LinkAddr)
	}
	kept := 0
	for id, w := range d.workers {
		switch {
		case seen[id]:
		case rebuilding:
			// It vanished with the directory's data: it is re-registering.
			kept++
			total += max(w.conns(), 0)
		default:
			delete(d.workers, id)
			d.goneLocked(w)
			w.markGone()
			d.j.log.Info("job: node gone (registration expired)", "node", id)
		}
	}
	if kept > 0 && !d.rebuilding {
		d.j.log.Warn("job: the node directory lost its data; keeping the nodes it no longer lists while they re-register", "nodes", kept)
	}
	d.rebuilding = kept > 0
	d.liveWorkers = d.liveWorkers[:0]
	for _, w := range d.workers {
		d.liveWorkers = append(d.liveWorkers, w)
	}
	d.totalConns = total
	if d.isLoaded {
		// Before the keys messages of the limbo: catch-ups are older.
		for _, w := range joined {
			d.catchUpLocked(w)
		}
	}
	d.resolveLimboLocked(started)
	slices.SortFunc(d.liveWorkers, func(a, b *nodeWorker) int { return strings.Compare(a.id, b.id) })
	if !d.isLoaded {
		d.isLoaded = true
		close(d.loaded)
	}
	return nil
}

// read reads the directory, and whether it is rebuilding if it can tell
// (RebuildingDirectory).
func (d *directory) read(ctx context.Context) ([]imcloud.Node, bool, error) {
	if rd, ok := d.j.cfg.Directory.(RebuildingDirectory); ok {
		return rd.NodesRebuilding(ctx)
	}
	nodes, err := d.j.cfg.Directory.Nodes(ctx)
	return nodes, false, err
}

// fanOutTargets records m, a room or broadcast message fanned out at
// at (Unix ns), among the recent fan-outs, and appends the live nodes'
// workers to dst, returning their total connection count (for broadcast
// pacing). Both under one lock: a node that joins later either is in
// dst or finds m recorded (see recent).
func (d *directory) fanOutTargets(m *imcloud.Message, at int64, dst []*nodeWorker) ([]*nodeWorker, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recent.add(m, at)
	return append(dst, d.liveWorkers...), d.totalConns
}

// catchUpLocked hands w, a node that just joined, the recorded fan-outs
// it may need (see recent), oldest first, ahead of anything else for it:
// w is not in the live list yet, and d.mu is held. They are best effort
// and take no part in commits (their records may be committed already):
// the node drops by message id any it had.
func (d *directory) catchUpLocked(w *nodeWorker) {
	now := time.Now()
	w.mu.Lock()
	since := w.node.Since
	w.mu.Unlock()
	msgs, gap := d.recent.since(since, now, nil)
	if gap {
		d.j.c.catchUpGaps.Add(1)
		d.j.log.Warn("job: a node joined after fan-outs it may need left the record of recent ones; its clients may miss room pushes or broadcasts",
			"node", w.id, "since", since)
	}
	if len(msgs) == 0 {
		return
	}
	nodes := len(d.workers)
	for _, m := range msgs {
		if m.Kind == imcloud.KindBroadcast && m.Speed > 0 && nodes > 1 {
			c := *m
			c.Speed = splitSpeed(m.Speed, w.conns(), d.totalConns, nodes)
			m = &c
		}
		w.add(item{m: m, e: &d.j.catchUp, at: now.UnixNano()})
	}
	d.j.c.caughtUp.Add(uint64(len(msgs)))
	d.j.log.Info("job: node joined after fan-outs: caught up", "node", w.id, "messages", len(msgs))
}

// route queues it for node: a keys message for the node it names, or a
// room message for a node the room's members are on. A node the job
// does not know yet (registered since the last read) is not taken for
// gone: the message waits, in order with any other for that node, until
// a read of the directory that started after the message was received,
// which is asked for at once. Only if that read does not list the node
// either is the message unroutable. The caller counted the delivery in
// it.e.remaining; route finishes it when it does not queue it.
func (d *directory) route(ctx context.Context, node string, it item, received time.Time) {
	for {
		d.mu.Lock()
		if w := d.workers[node]; w != nil {
			d.mu.Unlock()
			if !w.enqueue(ctx, it) {
				d.j.c.abandoned.Add(1)
				d.j.finish(it.e)
			}
			return
		}
		if d.stopped {
			d.mu.Unlock()
			return
		}
		if len(d.limbo) < d.j.cfg.NodeQueue {
			d.limbo = append(d.limbo, limboItem{node: node, it: it, received: received})
			d.mu.Unlock()
			signal(d.refreshNow)
			return
		}
		d.mu.Unlock()
		// Too many waiting: read the directory now.
		if err := d.refresh(ctx); err != nil && !sleepCtx(ctx, d.j.cfg.RetryMin) {
			return
		}
	}
}

// resolveLimboLocked routes the waiting messages whose node the
// directory now lists, and drops as unroutable those received before a
// read that started at started and did not list their node. A message
// whose node is listed goes now even if received after started: a later
// message for that node finds its worker and must not overtake it.
func (d *directory) resolveLimboLocked(started time.Time) {
	keep := d.limbo[:0]
	for _, l := range d.limbo {
		if w := d.workers[l.node]; w != nil {
			if !w.add(l.it) {
				d.j.c.abandoned.Add(1)
				d.j.finish(l.it.e)
			}
			continue
		}
		if !l.received.Before(started) {
			keep = append(keep, l)
			continue
		}
		d.j.c.unroutable.Add(1)
		d.j.log.Debug("job: message for a node not in the directory", "id", l.it.m.ID,
			"kind", l.it.m.Kind, "node", l.node)
		d.j.finish(l.it.e)
	}
	clear(d.limbo[len(keep):])
	d.limbo = keep
}

// stopWorkers stops every worker (without declaring the nodes gone) and
// waits for them; their own link clients are closed.
func (d *directory) stopWorkers() {
	d.mu.Lock()
	d.stopped = true
	for _, w := range d.workers {
		w.stop()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

func (d *directory) nodeStats() map[string]NodeStats {
	d.mu.Lock()
	ws := make([]*nodeWorker, 0, len(d.workers))
	for _, w := range d.workers {
		ws = append(ws, w)
	}
	d.mu.Unlock()
	out := make(map[string]NodeStats, len(ws))
	now := time.Now()
	for _, w := range ws {
		out[w.id] = w.stats(now)
	}
	return out
}
