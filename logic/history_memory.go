package logic

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/imcloud/imcloud"
)

var _ History = (*MemoryHistory)(nil)

// Defaults of a history store's bounds beyond imcloud.DefaultHistoryLen
// and imcloud.DefaultHistoryAge.
const (
	// DefaultHistoryBytes bounds a MemoryHistory's total size: 256 MiB
	// holds the default window of about 1,000 busy streams (1,000 pushes
	// of 100 bytes each, some 230 bytes a push with its bookkeeping) or
	// 100,000 streams of 10 such pushes, and is a modest share of the
	// all-in-one server's machine. Deployments with more streams or larger
	// bodies raise it, or use the Redis history.
	DefaultHistoryBytes = 256 << 20
	// DefaultHistoryMetaTTL is how long a stream's metadata (epoch, last
	// offset, what was trimmed) outlives its last append: long past its
	// entries (MaxAge), so a client that comes back after a quiet stream's
	// pushes aged out still learns "nothing missed since your position"
	// or "trimmed", rather than a new epoch. After it the stream starts
	// over under a new epoch.
	DefaultHistoryMetaTTL = 24 * time.Hour
)

// MemoryHistoryConfig configures a MemoryHistory. The zero value is ready.
type MemoryHistoryConfig struct {
	// MaxLen is how many pushes a stream keeps; older ones are dropped
	// (trimmed) as new ones come. Default imcloud.DefaultHistoryLen (1,000).
	MaxLen int
	// MaxAge is how long a push is kept, counted from its Accepted time.
	// Default imcloud.DefaultHistoryAge (10 minutes).
	MaxAge time.Duration
	// MaxBytes bounds the store's total size (bodies and bookkeeping, both
	// of the entries and of the streams' metadata). Over it, whole
	// streams are evicted, the least recently appended first: a client of
	// an evicted stream sees a new epoch (recovered false, epoch_changed).
	// Default DefaultHistoryBytes (256 MiB).
	MaxBytes int64
	// MetaTTL is how long a stream's metadata outlives its last append
	// (or its creation by a read: a recovering client's first connect
	// gives its streams an epoch to come back with). Every stream read or
	// appended within MetaTTL keeps its metadata, a few hundred bytes,
	// counted against MaxBytes. Default DefaultHistoryMetaTTL (24 h).
	MetaTTL time.Duration
	// Now is the clock; nil means time.Now. Tests move it to age entries
	// without sleeping.
	Now func() time.Time
}

// Bookkeeping sizes counted against MaxBytes besides the bodies and the
// names: an entry's struct and its share of its stream's slice, and a
// stream's struct, map entry and list element. Estimates, so that many
// small pushes or many quiet streams are bounded too.
const (
	histEntryOverhead  = 128
	histStreamOverhead = 256
)

// histSweepEvery is how often an Append reclaims the entries of streams
// idle past MaxAge and the metadata of streams idle past MetaTTL.
const histSweepEvery = time.Second

// MemoryHistory is the in-process history store, the all-in-one default:
// the last pushes of every stream (docs/design.md, recovery), bounded per
// stream by count (MaxLen) and age (MaxAge) and in total by MaxBytes.
//
// Contract (the one internal/historytest checks, shared with the Redis
// history):
//
//   - Append is idempotent per (stream, offset): an offset at or below
//     the stream's last, whose entry is held with the same ID, or is not
//     held and was accepted no later than the newest push appended in the
//     epoch, is a redelivery and changes nothing. Another ID at a held offset, an
//     unheld offset newer than everything held (a queue reset), or a
//     push from another partition than the stream's (the partition count
//     changed) restarts the stream under a new epoch with only the new
//     push. Appends to one stream come in offset order.
//   - A stream remembers its epoch, partition, last offset and the
//     largest offset dropped by a bound (trimmed). The metadata outlives
//     the entries by MetaTTL, so an idle stream keeps its epoch.
//   - Read(since) returns what follows the position (see Read); Last the
//     newest pushes. A stream without metadata gets a new epoch at its
//     first read or append, so a client holding an older one sees
//     epoch_changed, never "nothing missed".
//   - Pushes past their Expires are never returned, and are not counted
//     as missing.
//
// Expired entries are invisible at once; their memory is reclaimed by
// reads and appends of their stream and by a sweep, run at most once a
// second by Append, of the streams idle past MaxAge (whose entries have
// all aged) and past MetaTTL. The store has no goroutine. All methods are
// safe for concurrent use and never block on I/O; ctx is checked once on
// entry.
type MemoryHistory struct {
	maxLen   int
	maxAge   time.Duration
	maxBytes int64
	metaTTL  time.Duration
	now      func() time.Time

	mu      sync.Mutex
	streams map[imcloud.Stream]*memStream
	// active holds the streams not yet swept since their last append,
	// idle the swept ones (no entries), both ordered by last append or
	// creation, most recent at the front. The sweep moves streams from
	// active's back to idle's front, so both stay in order.
	active, idle *list.List
	bytes        int64
	entries      int
	evicted      uint64
	lastSweep    time.Time
	epochPrefix  string
	epochSeq     uint64
}

// memStream is one stream's metadata and retained entries.
type memStream struct {
	name    imcloud.Stream
	epoch   string
	part    int32
	hasPart bool
	last    int64 // offset of the last push appended in epoch, -1 if none
	trimmed int64 // largest offset dropped by a bound, -1 if none
	newest  time.Time
	// entries[head:] are retained, in offset order; the slice is
	// compacted when half of it is dropped.
	entries []imcloud.HistoryEntry
	head    int
	bytes   int64
	touched time.Time // last append, or creation
	elem    *list.Element
	inIdle  bool
}

func (st *memStream) held() []imcloud.HistoryEntry { return st.entries[st.head:] }

// MemoryHistoryStats are a MemoryHistory's sizes and its evictions.
type MemoryHistoryStats struct {
	// Streams and Entries are how many streams (with or without entries)
	// and pushes the store holds.
	Streams, Entries int
	// Bytes is the size counted against MaxBytes.
	Bytes int64
	// Evicted is how many streams MaxBytes evicted since the store was
	// created.
	Evicted uint64
}

// NewMemoryHistory returns an empty MemoryHistory.
func NewMemoryHistory(cfg MemoryHistoryConfig) *MemoryHistory {
	h := &MemoryHistory{
		maxLen:   cfg.MaxLen,
		maxAge:   cfg.MaxAge,
		maxBytes: cfg.MaxBytes,
		metaTTL:  cfg.MetaTTL,
		now:      cfg.Now,
		streams:  make(map[imcloud.Stream]*memStream),
		active:   list.New(),
		idle:     list.New(),
	}
	if h.maxLen <= 0 {
		h.maxLen = imcloud.DefaultHistoryLen
	}
	if h.maxAge <= 0 {
		h.maxAge = imcloud.DefaultHistoryAge
	}
	if h.maxBytes <= 0 {
		h.maxBytes = DefaultHistoryBytes
	}
	if h.metaTTL <= 0 {
		h.metaTTL = DefaultHistoryMetaTTL
	}
	if h.now == nil {
		h.now = time.Now
	}
	// Epochs are a random prefix, drawn once, and a counter: unique
	// across restarts of the process without a random draw per stream.
	var b [5]byte
	_, _ = rand.Read(b[:])
	h.epochPrefix = hex.EncodeToString(b[:]) + "."
	return h
}

// Stats returns the store's sizes and evictions.
func (h *MemoryHistory) Stats() MemoryHistoryStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return MemoryHistoryStats{Streams: len(h.streams), Entries: h.entries, Bytes: h.bytes, Evicted: h.evicted}
}

// validHistoryAppend checks what an Append is given, before anything is
// stored.
func validHistoryAppend(items []imcloud.HistoryAppend) error {
	for i := range items {
		if err := items[i].Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
	}
	return nil
}

// Append appends items, in order, and sets each item's Epoch to its
// stream's epoch with the push included (a redelivery: the epoch it is
// held under). Bodies are copied. A zero Accepted is taken as now. An
// invalid stream or a negative offset fails the call (ErrInvalidArgument)
// before anything is stored.
func (h *MemoryHistory) Append(ctx context.Context, items []imcloud.HistoryAppend) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validHistoryAppend(items); err != nil {
		return err
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range items {
		it := &items[i]
		st := h.stream(it.Stream, now)
		h.trimAge(st, now)
		h.appendOne(st, it, now)
		it.Epoch = st.epoch
		h.evict(st)
	}
	if now.Sub(h.lastSweep) >= histSweepEvery {
		h.lastSweep = now
		h.sweep(now)
	}
	return nil
}

// appendOne appends it to st, or finds it a redelivery. h.mu is held.
func (h *MemoryHistory) appendOne(st *memStream, it *imcloud.HistoryAppend, now time.Time) {
	e := it.Entry
	if e.Accepted.IsZero() {
		e.Accepted = now
	}
	switch {
	case st.hasPart && st.part != it.Partition:
		h.restart(st)
	case e.Offset <= st.last:
		held := st.held()
		if j, found := slices.BinarySearchFunc(held, e.Offset, cmpHistOffset); found {
			if held[j].ID == e.ID {
				return
			}
		} else if !e.Accepted.After(st.newest) {
			return // dropped since, or never this stream's: not newer than what it holds
		}
		h.restart(st)
	}
	e.Body = slices.Clone(e.Body)
	st.entries = append(st.entries, e)
	st.last, st.part, st.hasPart = e.Offset, it.Partition, true
	if e.Accepted.After(st.newest) {
		st.newest = e.Accepted
	}
	h.grow(st, histEntryOverhead+int64(len(e.Body)))
	h.entries++
	if len(st.held()) > h.maxLen {
		h.dropHead(st, 1)
	}
	st.touched = now
	h.toFront(st)
}

// restart gives st a new epoch with nothing in it. h.mu is held.
func (h *MemoryHistory) restart(st *memStream) {
	h.dropHead(st, len(st.held()))
	h.grow(st, -int64(len(st.epoch)))
	st.epoch = h.newEpoch()
	h.grow(st, int64(len(st.epoch)))
	st.last, st.trimmed, st.hasPart, st.newest = -1, -1, false, time.Time{}
}

func (h *MemoryHistory) newEpoch() string {
	h.epochSeq++
	return h.epochPrefix + strconv.FormatUint(h.epochSeq, 36)
}

// stream returns s's metadata, created under a new epoch if it has none
// (or its MetaTTL passed). h.mu is held.
func (h *MemoryHistory) stream(s imcloud.Stream, now time.Time) *memStream {
	st := h.streams[s]
	if st != nil && now.Sub(st.touched) >= h.metaTTL {
		h.remove(st)
		st = nil
	}
	if st == nil {
		st = &memStream{name: s, epoch: h.newEpoch(), last: -1, trimmed: -1, touched: now}
		st.elem = h.active.PushFront(st)
		h.streams[s] = st
		h.grow(st, histStreamOverhead+int64(len(s)+len(st.epoch)))
	}
	return st
}

// toFront makes st the most recently appended stream. h.mu is held.
func (h *MemoryHistory) toFront(st *memStream) {
	if st.inIdle {
		h.idle.Remove(st.elem)
		st.elem, st.inIdle = h.active.PushFront(st), false
		return
	}
	h.active.MoveToFront(st.elem)
}

func (h *MemoryHistory) grow(st *memStream, n int64) {
	st.bytes += n
	h.bytes += n
}

// remove forgets st. h.mu is held.
func (h *MemoryHistory) remove(st *memStream) {
	if st.inIdle {
		h.idle.Remove(st.elem)
	} else {
		h.active.Remove(st.elem)
	}
	delete(h.streams, st.name)
	h.bytes -= st.bytes
	h.entries -= len(st.held())
}

// dropHead drops st's k oldest entries. Dropped by a bound (count, age),
// they are trimmed: a position before them is no longer complete; a
// restart resets trimmed after. h.mu is held.
func (h *MemoryHistory) dropHead(st *memStream, k int) {
	if k <= 0 {
		return
	}
	held := st.held()
	st.trimmed = max(st.trimmed, held[k-1].Offset)
	var size int64
	for i := range held[:k] {
		size += histEntryOverhead + int64(len(held[i].Body))
	}
	clear(held[:k])
	st.head += k
	h.entries -= k
	h.grow(st, -size)
	switch n := len(st.entries) - st.head; {
	case n == 0:
		st.entries, st.head = nil, 0
	case st.head >= n:
		copy(st.entries, st.entries[st.head:])
		clear(st.entries[n:])
		st.entries, st.head = st.entries[:n], 0
	}
}

// trimAge drops st's entries older than MaxAge, oldest first, up to the
// first younger one. h.mu is held.
func (h *MemoryHistory) trimAge(st *memStream, now time.Time) {
	cutoff := now.Add(-h.maxAge)
	held := st.held()
	k := 0
	for k < len(held) && !held[k].Accepted.After(cutoff) {
		k++
	}
	h.dropHead(st, k)
}

// evict removes whole streams, least recently appended first, while the
// store is over MaxBytes. keep (the stream just appended to) is never
// evicted: if it alone is over, its oldest entries are dropped instead.
// h.mu is held.
func (h *MemoryHistory) evict(keep *memStream) {
	for h.bytes > h.maxBytes {
		var victim *memStream
		for _, l := range []*list.List{h.idle, h.active} {
			if e := l.Back(); e != nil && e.Value != keep {
				if st := e.Value.(*memStream); victim == nil || st.touched.Before(victim.touched) {
					victim = st
				}
			}
		}
		if victim == nil {
			if len(keep.held()) <= 1 {
				return
			}
			h.dropHead(keep, 1)
			continue
		}
		h.remove(victim)
		h.evicted++
	}
}

// sweep drops the entries of streams not appended to for MaxAge (every
// one was accepted before its append, so every one has aged) and forgets
// the streams not appended to for MetaTTL. h.mu is held.
func (h *MemoryHistory) sweep(now time.Time) {
	for e := h.active.Back(); e != nil; e = h.active.Back() {
		st := e.Value.(*memStream)
		if now.Sub(st.touched) < h.maxAge {
			break
		}
		h.dropHead(st, len(st.held()))
		h.active.Remove(e)
		st.elem, st.inIdle = h.idle.PushFront(st), true
	}
	for e := h.idle.Back(); e != nil; e = h.idle.Back() {
		st := e.Value.(*memStream)
		if now.Sub(st.touched) < h.metaTTL {
			break
		}
		h.remove(st)
	}
}

func cmpHistOffset(e imcloud.HistoryEntry, off int64) int {
	switch {
	case e.Offset < off:
		return -1
	case e.Offset > off:
		return 1
	}
	return 0
}

// Read returns the pushes of s after since, oldest first, at most limit
// (limit <= 0: no limit but MaxLen), with the stream's Epoch and Top:
//
//   - since.Epoch "" (a first connect): no entries, Complete;
//   - another epoch than the stream's: no entries, ReasonEpochChanged;
//   - since.Offset past Top or below -1 (-1 is the position before a
//     stream's first push, the Top of an empty one):
//     ReasonUnknownPosition;
//   - otherwise the held, unexpired pushes after since.Offset; Complete
//     when nothing after it was trimmed and limit cut nothing. Trimmed:
//     ReasonTrimmed, with what is still held. Cut by limit only: Complete
//     false with no Reason; read on from the last entry returned.
//
// Entries share their Body with the store: callers must not modify it.
// An invalid stream name fails with ErrInvalidArgument.
func (h *MemoryHistory) Read(ctx context.Context, s imcloud.Stream, since imcloud.Position, limit int) (imcloud.HistoryRead, error) {
	return h.view(ctx, s, func(st *memStream, now time.Time, r *imcloud.HistoryRead) {
		switch {
		case since.Epoch == "":
			r.Complete = true
			return
		case since.Epoch != st.epoch:
			r.Reason = imcloud.ReasonEpochChanged
			return
		case since.Offset < -1 || since.Offset > st.last:
			r.Reason = imcloud.ReasonUnknownPosition
			return
		}
		held := st.held()
		j, _ := slices.BinarySearchFunc(held, since.Offset+1, cmpHistOffset)
		var cut bool
		r.Entries, cut = unexpired(held[j:], limit, now)
		r.Complete = since.Offset >= st.trimmed && !cut
		if since.Offset < st.trimmed {
			r.Reason = imcloud.ReasonTrimmed
		}
	})
}

// view runs fn on s's stream (created if it has none, its aged entries
// dropped) under h.mu, with r holding its Epoch and Top.
func (h *MemoryHistory) view(ctx context.Context, s imcloud.Stream, fn func(st *memStream, now time.Time, r *imcloud.HistoryRead)) (imcloud.HistoryRead, error) {
	if err := ctx.Err(); err != nil {
		return imcloud.HistoryRead{}, err
	}
	if err := s.Validate(); err != nil {
		return imcloud.HistoryRead{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.stream(s, now)
	h.evict(st)
	h.trimAge(st, now)
	r := imcloud.HistoryRead{Epoch: st.epoch, Top: st.last}
	fn(st, now, &r)
	return r, nil
}

// unexpired copies the first limit (<= 0: all) unexpired entries of held
// and tells whether an unexpired one was left out.
func unexpired(held []imcloud.HistoryEntry, limit int, now time.Time) ([]imcloud.HistoryEntry, bool) {
	n := len(held)
	if limit > 0 {
		n = min(n, limit)
	}
	var out []imcloud.HistoryEntry
	if n > 0 {
		out = make([]imcloud.HistoryEntry, 0, n)
	}
	for i := range held {
		if held[i].Expired(now) {
			continue
		}
		if limit > 0 && len(out) == limit {
			return out, true
		}
		out = append(out, held[i])
	}
	return out, false
}

// Last returns the newest n (n <= 0: all) held, unexpired pushes of s,
// oldest first, with the stream's Epoch and Top. Complete reports that
// they are every unexpired push of the epoch: nothing was trimmed and n
// left nothing out. Entries share their Body with the store.
func (h *MemoryHistory) Last(ctx context.Context, s imcloud.Stream, n int) (imcloud.HistoryRead, error) {
	return h.view(ctx, s, func(st *memStream, now time.Time, r *imcloud.HistoryRead) {
		held := st.held()
		cut := false
		for i := len(held) - 1; i >= 0; i-- {
			if held[i].Expired(now) {
				continue
			}
			if n > 0 && len(r.Entries) == n {
				cut = true
				break
			}
			r.Entries = append(r.Entries, held[i])
		}
		slices.Reverse(r.Entries)
		r.Complete = st.trimmed < 0 && !cut
	})
}
