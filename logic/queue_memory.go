package logic

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/imcloud/imcloud"
)

var _ Queue = (*MemoryQueue)(nil)

// MemoryQueueConfig configures a MemoryQueue. Every zero field means the
// documented default.
type MemoryQueueConfig struct {
	// Partitions is the number of partitions; messages are spread over
	// them by PartitionKey, like the Kafka queue. Default 4.
	Partitions int
	// Capacity bounds the records held (published and not yet committed)
	// over all partitions. Publish waits for room until its ctx ends.
	// Default 65536.
	Capacity int
	// MaxDelay, if set, bounds how far behind the consumer may fall
	// before Publish refuses new messages: while the oldest record held
	// was published more than MaxDelay ago, Publish returns ErrOverloaded
	// at once and queues nothing. Capacity counts records, whatever they
	// cost to deliver (a push to one user, or to a room of thousands);
	// MaxDelay bounds the wait itself, so an overloaded node answers 503
	// instead of accepting pushes it will deliver seconds later. Zero:
	// no bound.
	MaxDelay time.Duration
}

// MemoryQueue is the in-process queue, the embedded default for a
// single-process deployment. It is logic's Queue (Publish) and, by its
// method set, job's Source (Receive, Commit) for one consumer group.
//
// Records are kept until committed, so memory is bounded by Capacity: a
// Publish that finds the queue full waits for the consumer to commit, or
// for its ctx to end (an error; nothing of that call was queued). With
// MaxDelay, a Publish that finds the consumer that far behind is refused
// at once (ErrOverloaded).
//
// Receive hands out records partition by partition in offset order,
// visiting the partitions round-robin. Rewind models a consumer restart:
// the read position goes back to just after the committed offsets, so
// everything received but not committed is delivered again, in order.
//
// All methods are safe for concurrent use.
type MemoryQueue struct {
	capacity int
	maxDelay time.Duration
	epoch    time.Time // publish times are kept as time.Since(epoch)

	mu     sync.Mutex
	parts  []memPartition
	held   int           // records not yet committed, over all partitions
	wake   chan struct{} // closed and replaced when records arrive
	space  chan struct{} // closed and replaced when records are committed
	rr     int           // next partition Receive looks at
	closed bool
}

type memPartition struct {
	base      int64            // offset of recs[0]
	recs      []imcloud.Record // uncommitted records from base on
	at        []time.Duration  // when each of recs was published (since epoch)
	next      int64            // next offset Receive hands out
	committed int64            // last committed offset, -1 for none
}

// NewMemoryQueue returns an empty MemoryQueue.
func NewMemoryQueue(cfg MemoryQueueConfig) *MemoryQueue {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 4
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 65536
	}
	q := &MemoryQueue{
		capacity: cfg.Capacity,
		maxDelay: cfg.MaxDelay,
		epoch:    time.Now(),
		parts:    make([]memPartition, cfg.Partitions),
		wake:     make(chan struct{}),
		space:    make(chan struct{}),
	}
	for i := range q.parts {
		q.parts[i].committed = -1
	}
	return q
}

// Publish appends msgs, encoded, to their partitions. It returns once every
// message is held by the queue; if the queue lacks room for all of them it
// waits until the consumer commits, or returns ctx's error having queued
// none. A batch larger than Capacity is refused with ErrInvalidArgument.
func (q *MemoryQueue) Publish(ctx context.Context, msgs []*imcloud.Message) error {
	if len(msgs) > q.capacity {
		return fmt.Errorf("%w: batch of %d exceeds queue capacity %d", ErrInvalidArgument, len(msgs), q.capacity)
	}
	recs := make([]imcloud.Record, len(msgs))
	for i, m := range msgs {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
		key := PartitionKey(m)
		v, _ := m.MarshalBinary()
		recs[i] = imcloud.Record{Partition: partitionOf(key, len(q.parts)), Key: []byte(key), Value: v}
	}
	q.mu.Lock()
	for {
		if q.closed {
			q.mu.Unlock()
			return ErrClosed
		}
		if late := q.lagLocked(); q.maxDelay > 0 && late > q.maxDelay {
			q.mu.Unlock()
			return fmt.Errorf("%w: memory queue: the oldest message waits for %v (MaxDelay %v)",
				ErrOverloaded, late.Round(time.Millisecond), q.maxDelay)
		}
		if q.held+len(recs) <= q.capacity {
			break
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return fmt.Errorf("%w: memory queue full: %w", ErrQueue, ctx.Err())
		}
		q.mu.Lock()
	}
	now := time.Since(q.epoch)
	for _, r := range recs {
		p := &q.parts[r.Partition]
		r.Offset = p.base + int64(len(p.recs))
		p.recs = append(p.recs, r)
		p.at = append(p.at, now)
	}
	q.held += len(recs)
	close(q.wake)
	q.wake = make(chan struct{})
	q.mu.Unlock()
	return nil
}

// Receive returns the next record, blocking until one is available, ctx
// ends or the queue is closed (ErrClosed).
func (q *MemoryQueue) Receive(ctx context.Context) (imcloud.Record, error) {
	q.mu.Lock()
	for {
		if q.closed {
			q.mu.Unlock()
			return imcloud.Record{}, ErrClosed
		}
		for i := 0; i < len(q.parts); i++ {
			pi := (q.rr + i) % len(q.parts)
			p := &q.parts[pi]
			idx := p.next - p.base
			if idx < int64(len(p.recs)) {
				rec := p.recs[idx]
				p.next++
				q.rr = (pi + 1) % len(q.parts)
				q.mu.Unlock()
				return rec, nil
			}
		}
		wake := q.wake
		q.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return imcloud.Record{}, ctx.Err()
		}
		q.mu.Lock()
	}
}

// Commit records that every record of partition up to and including offset
// was handled, and frees them. Committing an offset at or below the last
// commit is a no-op; an unknown partition or an offset never handed out is
// ErrInvalidArgument.
func (q *MemoryQueue) Commit(ctx context.Context, partition int32, offset int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if partition < 0 || int(partition) >= len(q.parts) {
		return fmt.Errorf("%w: partition %d out of range", ErrInvalidArgument, partition)
	}
	p := &q.parts[partition]
	if offset <= p.committed {
		return nil
	}
	if offset >= p.base+int64(len(p.recs)) {
		return fmt.Errorf("%w: offset %d beyond partition %d's end", ErrInvalidArgument, offset, partition)
	}
	n := int(offset - p.base + 1)
	clear(p.recs[:n])
	p.recs, p.at = p.recs[n:], p.at[n:]
	if len(p.recs) == 0 {
		p.recs, p.at = nil, nil // let the backing arrays go
	}
	p.base = offset + 1
	p.committed = offset
	if p.next < p.base {
		p.next = p.base
	}
	q.held -= n
	close(q.space)
	q.space = make(chan struct{})
	return nil
}

// lagLocked is how long the oldest record held has waited since it was
// published (0 when none is held). Called with q.mu held.
func (q *MemoryQueue) lagLocked() time.Duration {
	oldest := time.Duration(-1)
	for i := range q.parts {
		if at := q.parts[i].at; len(at) > 0 && (oldest < 0 || at[0] < oldest) {
			oldest = at[0]
		}
	}
	if oldest < 0 {
		return 0
	}
	return time.Since(q.epoch) - oldest
}

// Rewind models a consumer restart: every partition's read position goes
// back to just after its committed offset, so records received but not
// committed are delivered again, in order. The conformance suite calls it
// when it "reopens" the consumer; job may call it after a crash of its
// dispatch loop.
func (q *MemoryQueue) Rewind() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range q.parts {
		q.parts[i].next = q.parts[i].base
	}
	q.rr = 0
}

// Len returns the number of records held (published, not committed).
func (q *MemoryQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held
}

// Close makes Publish and Receive return ErrClosed, waking any waiter.
// Idempotent.
func (q *MemoryQueue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.wake)
		close(q.space)
	}
	return nil
}
