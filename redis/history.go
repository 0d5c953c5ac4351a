package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
)

var _ logic.History = (*History)(nil)

// HistoryConfig configures a History. Every zero field means the
// documented default.
type HistoryConfig struct {
	// MaxLen is how many pushes a stream keeps (exactly: Redis trims with
	// an exact MAXLEN, so the store knows what it dropped). Default
	// imcloud.DefaultHistoryLen (1,000).
	MaxLen int
	// MaxAge is how long a push is kept, counted from its Accepted time;
	// a stream's key expires MaxAge after its last append. Default
	// imcloud.DefaultHistoryAge (10 minutes).
	MaxAge time.Duration
	// MetaTTL is how long a stream's metadata (epoch, last offset, what
	// was trimmed) outlives its last append, so an idle stream keeps its
	// epoch; a stream first read (a recovering client's first connect)
	// gets its metadata for MetaTTL too. Every stream read or appended
	// within MetaTTL costs Redis its metadata hash, a few hundred bytes:
	// size Redis for the users and rooms seen in a MetaTTL. Default
	// logic.DefaultHistoryMetaTTL (24 h).
	MetaTTL time.Duration
	// MaxAppendsPerCall bounds the appends one script call carries: Redis
	// runs a script alone, so this bounds how long an append holds it. An
	// Append with more pipelines several calls in its one round trip,
	// each carrying whole streams; a stream with more items than this is
	// sent in chunks, one round trip each, in order. Default 256.
	MaxAppendsPerCall int
	// Now is the clock the age bound and expiries are judged by (the
	// clock Accepted times come from, not Redis's); nil means time.Now.
	Now func() time.Time
}

// History is the stream history over Redis Streams (see
// history_scripts.go for the schema), for clustered deployments: job
// appends, cloud nodes and logic read, and a stream's history survives
// any of them. It implements the contract internal/historytest checks,
// the same as logic.MemoryHistory's: idempotent appends per (stream,
// offset), a new epoch on a queue reset or partition change, bounds by
// count and age with what was trimmed known exactly, metadata that
// outlives the entries (MetaTTL), and expired pushes never returned.
//
// A Redis that lost its data (restarted empty, flushed, failed over to an
// empty replica) lost the metadata too: every stream then gets a new
// epoch at its next read or append, so a client holding an older one is
// told epoch_changed, never "nothing missed". Only that total loss is
// seen: a Redis that lost only its latest writes (a replica promoted
// before it had received them) keeps the epochs, and a client positioned
// before the lost pushes reads Complete without them. The same holds for
// a stream moved to another shard and back: the layout stamp
// (history_layout.go) starts it over.
//
// It runs over a Router's connections (the same Redis, key prefix, pool
// and timeouts): every call is one round trip per Redis it needs (an
// Append with a stream of more than MaxAppendsPerCall items, one per
// chunk of that stream; the first call also reads each shard's layout
// stamp), its scripts atomic on the server and idempotent, so a call
// retried after a lost connection does no harm. Over a sharded Router (several addresses
// or a Redis Cluster) each stream lives on one shard: a user's on the
// user's shard, a room's on the shard of its name (history_shard.go).
// Safe for concurrent use; it has no goroutine and nothing to close
// (close the Router).
type History struct {
	r       *Router // the Router NewHistory was given: one instance or sharded
	maxLen  int
	maxAge  time.Duration
	metaTTL time.Duration
	perCall int
	now     func() time.Time
	// epochs: a random prefix drawn once and a counter make each call's
	// epoch base unique (across processes and Redis losing its data)
	// without reading crypto/rand per call.
	epochPrefix string
	epochSeq    atomic.Uint64
	// shards are the single-instance routers the streams live on (r
	// alone, or r's shards), and layout their layout stamps
	// (history_layout.go).
	shards []*Router
	layout *histLayout
}

// NewHistory returns a History over r's Redis, or over r's shards when r
// is sharded (each stream on its shard).
func NewHistory(r *Router, cfg HistoryConfig) *History {
	h := &History{r: r, maxLen: cfg.MaxLen, maxAge: cfg.MaxAge, metaTTL: cfg.MetaTTL,
		perCall: cfg.MaxAppendsPerCall, now: cfg.Now}
	if h.maxLen <= 0 {
		h.maxLen = imcloud.DefaultHistoryLen
	}
	if h.maxAge <= 0 {
		h.maxAge = imcloud.DefaultHistoryAge
	}
	if h.metaTTL <= 0 {
		h.metaTTL = logic.DefaultHistoryMetaTTL
	}
	if h.perCall <= 0 {
		h.perCall = 256
	}
	if h.now == nil {
		h.now = time.Now
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	h.epochPrefix = hex.EncodeToString(b[:])
	h.shards = r.shards
	if h.shards == nil {
		h.shards = []*Router{r}
	}
	h.layout = newHistLayout(r, h.epochPrefix)
	return h
}

// common returns the scripts' five common arguments on single-instance
// router s: s's prefix (their KEYS[1]), MaxAge, MetaTTL, now and a fresh
// epoch base.
func (h *History) common(s *Router, now time.Time) []any {
	base := h.epochPrefix + strconv.FormatUint(h.epochSeq.Add(1), 36) + "."
	return []any{s.prefix, ttlMillis(h.maxAge), ttlMillis(h.metaTTL), now.UnixMilli(), base}
}

// Append appends items, in order, and sets each item's Epoch to its
// stream's epoch with the push included (see logic.MemoryHistory.Append
// for the contract). Times are kept to the millisecond; a zero Accepted
// is taken as now. An invalid stream or a negative offset fails the call
// (logic.ErrInvalidArgument) before anything is sent. On an error some
// items may be stored: appending them again is harmless. Over a sharded
// Router, the items are grouped by their stream's shard and each group
// sent to its shard, all at once; the call fails if any shard failed
// (naming each), and the groups of the shards that answered are stored.
func (h *History) Append(ctx context.Context, items []imcloud.HistoryAppend) error {
	for i := range items {
		if err := items[i].Validate(); err != nil {
			return fmt.Errorf("%w: %w", logic.ErrInvalidArgument, err)
		}
	}
	if len(items) == 0 {
		return ctx.Err()
	}
	if h.r.shards != nil {
		return h.shardedAppend(ctx, items)
	}
	return h.appendOn(ctx, 0, items)
}

// Read returns the pushes of s after since, oldest first, at most limit
// (limit <= 0: no limit but MaxLen), with the same answers as
// logic.MemoryHistory.Read: ReasonEpochChanged, ReasonUnknownPosition
// (an offset past the top or below -1), ReasonTrimmed, or Complete. A
// stream without metadata (never appended to, expired, or Redis lost it)
// gets a new epoch.
func (h *History) Read(ctx context.Context, s imcloud.Stream, since imcloud.Position, limit int) (imcloud.HistoryRead, error) {
	want := 0
	if limit > 0 {
		want = limit + 1 // one more tells whether the limit cut
	}
	r, trimmed, err := h.read(ctx, s, "read", since, want)
	if err != nil {
		return r, err
	}
	switch {
	case since.Epoch == "":
		r.Complete = true
		return r, nil
	case since.Epoch != r.Epoch:
		r.Reason = imcloud.ReasonEpochChanged
		return r, nil
	case since.Offset < -1 || since.Offset > r.Top:
		r.Reason = imcloud.ReasonUnknownPosition
		return r, nil
	}
	cut := limit > 0 && len(r.Entries) > limit
	if cut {
		r.Entries = r.Entries[:limit]
	}
	r.Complete = since.Offset >= trimmed && !cut
	if since.Offset < trimmed {
		r.Reason = imcloud.ReasonTrimmed
	}
	return r, nil
}

// Last returns the newest n (n <= 0: all) held, unexpired pushes of s,
// oldest first, with the stream's Epoch and Top; Complete when nothing of
// the epoch was trimmed and n left nothing out.
func (h *History) Last(ctx context.Context, s imcloud.Stream, n int) (imcloud.HistoryRead, error) {
	want := 0
	if n > 0 {
		want = n + 1
	}
	r, trimmed, err := h.read(ctx, s, "last", imcloud.Position{}, want)
	if err != nil {
		return r, err
	}
	cut := n > 0 && len(r.Entries) > n
	if cut {
		r.Entries = r.Entries[:n]
	}
	slices.Reverse(r.Entries)
	r.Complete = trimmed < 0 && !cut
	return r, nil
}

// read runs histReadScript on the stream's Redis (its shard's, over a
// sharded Router: an error names the shard) and returns the stream's
// epoch, top and the entries in the script's order, and what was trimmed.
func (h *History) read(ctx context.Context, s imcloud.Stream, mode string, since imcloud.Position, want int) (imcloud.HistoryRead, int64, error) {
	if err := s.Validate(); err != nil {
		return imcloud.HistoryRead{}, 0, fmt.Errorf("%w: %w", logic.ErrInvalidArgument, err)
	}
	if h.r.shards == nil {
		return h.readOn(ctx, 0, s, mode, since, want)
	}
	i := h.r.shardOf(streamShardKey(s))
	r, trimmed, err := h.readOn(ctx, i, s, mode, since, want)
	return r, trimmed, h.r.shardErr(i, err)
}

// readOn is read on shard i (h.shards[i]).
func (h *History) readOn(ctx context.Context, i int, s imcloud.Stream, mode string, since imcloud.Position, want int) (imcloud.HistoryRead, int64, error) {
	sr := h.shards[i]
	if err := h.layout.ready(ctx, h.shards, i); err != nil {
		return imcloud.HistoryRead{}, 0, err
	}
	args := append(h.common(sr, h.now()), string(s), mode, since.Epoch, since.Offset, want, h.maxLen)
	vals, err := redigo.Values(sr.script(ctx, histReadScript, args...))
	if err != nil {
		return imcloud.HistoryRead{}, 0, err
	}
	const head, per = 3, 6 // epoch, last, trimmed; then per entry
	if len(vals) < head || (len(vals)-head)%per != 0 {
		return imcloud.HistoryRead{}, 0, fmt.Errorf("redis: history read: malformed reply of %d values", len(vals))
	}
	var (
		r       imcloud.HistoryRead
		trimmed int64
	)
	if _, err := redigo.Scan(vals[:head], &r.Epoch, &r.Top, &trimmed); err != nil || r.Epoch == "" {
		return imcloud.HistoryRead{}, 0, fmt.Errorf("redis: history read: malformed reply: %v", err)
	}
	if n := (len(vals) - head) / per; n > 0 {
		r.Entries = make([]imcloud.HistoryEntry, n)
	}
	for i := range r.Entries {
		if err := parseHistEntry(vals[head+i*per:head+(i+1)*per], &r.Entries[i]); err != nil {
			return imcloud.HistoryRead{}, 0, err
		}
	}
	return r, trimmed, nil
}

// parseHistEntry decodes one entry of histReadScript's reply: offset, id,
// op, body, acc, exp.
func parseHistEntry(v []any, e *imcloud.HistoryEntry) error {
	var id []byte
	var acc, exp int64
	if _, err := redigo.Scan(v, &e.Offset, &id, &e.Op, &e.Body, &acc, &exp); err != nil {
		return fmt.Errorf("redis: history read: malformed entry: %w", err)
	}
	if len(id) != len(e.ID) {
		return fmt.Errorf("redis: history read: malformed entry: message id of %d bytes", len(id))
	}
	copy(e.ID[:], id)
	e.Accepted = time.UnixMilli(acc)
	if exp != 0 {
		e.Expires = time.UnixMilli(exp)
	}
	return nil
}
