package job

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud"
)

// entry is one received record on its way to its target nodes. It is done
// when every target acknowledged it, was declared gone, or the record needs
// no delivery (poison, expired, nobody to deliver to).
type entry struct {
	p         *partition
	offset    int64
	received  int64 // Unix nanoseconds
	remaining atomic.Int32
	done      bool // guarded by p.mu
}

// partition tracks the records of one source partition in the order they
// were received, so that offsets are committed by a contiguous watermark:
// the committable offset is that of the last record in an unbroken run of
// done records from the oldest one. Acknowledgements arriving out of order
// (a fast node before a slow one) never move it past an unfinished record.
type partition struct {
	id int32

	mu        sync.Mutex
	entries   []*entry // received, not yet behind the watermark
	head      int
	lastSeen  int64 // offset of the last record received
	watermark int64 // highest offset that may be committed, -1 none
	committed int64 // highest offset committed, -1 none
	// settled counts the records behind the watermark and not yet
	// committed; settledSince is when the oldest of them was received.
	settled      int
	settledSince int64
}

func newPartition(id int32) *partition {
	return &partition{id: id, lastSeen: -1, watermark: -1, committed: -1}
}

// add registers a received record. The caller has checked that offsets
// grow (a rewind replaces the partition).
func (p *partition) add(e *entry) {
	p.mu.Lock()
	p.entries = append(p.entries, e)
	p.lastSeen = e.offset
	p.mu.Unlock()
}

// markDone marks e done and advances the watermark past every done record
// at the front. It reports whether the watermark moved.
func (p *partition) markDone(e *entry) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.done = true
	if p.head >= len(p.entries) || p.entries[p.head] != e {
		return false
	}
	for p.head < len(p.entries) && p.entries[p.head].done {
		p.watermark = p.entries[p.head].offset
		if p.settled == 0 {
			p.settledSince = p.entries[p.head].received
		}
		p.settled++
		p.entries[p.head] = nil
		p.head++
	}
	switch {
	case p.head == len(p.entries):
		p.entries = p.entries[:0]
		p.head = 0
	case p.head >= 1024 && p.head*2 >= len(p.entries):
		n := copy(p.entries, p.entries[p.head:])
		clear(p.entries[n:])
		p.entries = p.entries[:n]
		p.head = 0
	}
	return true
}

// toCommit returns the watermark if it is past what was committed.
func (p *partition) toCommit() (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.watermark, p.watermark > p.committed
}

// setCommitted records a successful commit of offset. When the watermark
// moved on during the commit, the records settled meanwhile cannot be told
// from those the commit covered: all stay counted until the next commit,
// which the move already signalled.
func (p *partition) setCommitted(offset int64) {
	p.mu.Lock()
	if offset > p.committed {
		p.committed = offset
	}
	if p.committed >= p.watermark {
		p.settled, p.settledSince = 0, 0
	}
	p.mu.Unlock()
}

// pending is the number of records received and not yet behind the
// watermark.
func (p *partition) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries) - p.head
}

// stats reports the records received and not yet committed, and how long
// the oldest of them has been held.
func (p *partition) stats(now int64) PartitionStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PartitionStats{Uncommitted: p.settled + len(p.entries) - p.head}
	switch {
	case p.settled > 0:
		s.Oldest = time.Duration(now - p.settledSince)
	case p.head < len(p.entries):
		s.Oldest = time.Duration(now - p.entries[p.head].received)
	}
	return s
}

// partitionStats reports every partition the job tracks.
func (j *Job) partitionStats() map[int32]PartitionStats {
	now := time.Now().UnixNano()
	j.partsMu.Lock()
	defer j.partsMu.Unlock()
	out := make(map[int32]PartitionStats, len(j.parts))
	for id, p := range j.parts {
		out[id] = p.stats(now)
	}
	return out
}

// finish records that one target of e is done; the last one releases the
// record toward the watermark. A catch-up (e is j.catchUp, of no
// partition) releases nothing.
func (j *Job) finish(e *entry) {
	if e.p == nil || e.remaining.Add(-1) != 0 {
		return
	}
	moved := e.p.markDone(e)
	<-j.pendingSem
	if moved {
		select {
		case j.commitSignal <- struct{}{}:
		default:
		}
	}
}

// commitLoop commits watermarks as they move. Commits coalesce: while one
// round runs, further moves wait for the next round.
func (j *Job) commitLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-j.commitSignal:
			j.commitNow(ctx)
		}
	}
}

// commitNow commits every partition whose watermark moved.
func (j *Job) commitNow(ctx context.Context) {
	j.partsMu.Lock()
	parts := make([]*partition, 0, len(j.parts))
	for _, p := range j.parts {
		parts = append(parts, p)
	}
	j.partsMu.Unlock()
	for _, p := range parts {
		off, ok := p.toCommit()
		if !ok {
			continue
		}
		if err := j.cfg.Source.Commit(ctx, p.id, off); err != nil {
			j.c.commitErrors.Add(1)
			if ctx.Err() == nil {
				j.log.Warn("job: commit failed", "partition", p.id, "offset", off, "err", err)
			}
			continue
		}
		j.c.commits.Add(1)
		p.setCommitted(off)
	}
}

// partitionFor returns the tracker for rec's partition, replacing it when
// the source went back (a rebalance handed the partition back from its
// committed offset): the old tracker's records finish on their own but are
// no longer committed from.
func (j *Job) partitionFor(rec imcloud.Record) *partition {
	j.partsMu.Lock()
	defer j.partsMu.Unlock()
	p := j.parts[rec.Partition]
	if p != nil && rec.Offset <= p.lastSeenLocked() {
		j.log.Info("job: partition rewound, tracking again", "partition", rec.Partition,
			"offset", rec.Offset)
		p = nil
	}
	if p == nil {
		p = newPartition(rec.Partition)
		j.parts[rec.Partition] = p
	}
	return p
}

func (p *partition) lastSeenLocked() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastSeen
}
