package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	redigo "github.com/gomodule/redigo/redis"
)

// The history's layout stamp: what makes a stream that moved to another
// shard and back start a new epoch.
//
// A stream lives on the shard its name (or its user) hashes to, so
// changing the shard names (Config.Addrs, ClusterShards) moves streams.
// A stream that moves starts over on its new shard (no metadata there:
// a new epoch), but when it moves back (the list changed again within
// MetaTTL) its old shard still holds its old metadata, and the pushes
// appended meanwhile on the other shard are not there: a client holding
// a position of the old epoch would be told "nothing missed". Nothing on
// the old shard saw the layout in between (it may not even have been in
// it), so the stream's own metadata cannot tell: the shards that were in
// the layout in between can.
//
// Each shard holds {p}histlayout, a hash: fp, the fingerprint of the
// layout that last used the shard (a hash of the sorted shard names and
// KeyPrefix; one instance has a fingerprint of its own), and stamp, an
// opaque value every stream's metadata is written with (field layout).
// The history scripts compare the two: a stream whose metadata carries
// another stamp than its shard's starts a new epoch (history_scripts.go).
//
// A History checks the layout before its first call to a shard: it reads
// every shard's fp (in parallel, once); when any shard names another
// layout than this router's, the layout changed since that shard was
// last used, and every shard gets a new stamp (drawn once per History)
// and this layout's fp, so every stream of the previous layouts starts a
// new epoch, including those whose shard never saw the layout in
// between. When every shard names this layout, or none (a new shard, a
// Redis that lost its data, or a store written by a release without the
// stamp), the stamps stay and so do the epochs: a restart with the same
// list keeps every epoch.
//
// Metadata without a stamp (written by the previous release, which ran on
// one Redis only) matches a shard without a stamp: on one instance, and
// on the shard that Redis became in a first sharded layout, its streams
// keep their epochs (they did not move); the streams that moved start
// over on their new shard as any moved stream. Once a layout change has
// been seen, a stamp is set and unstamped metadata starts over: after a
// layout change nothing tells whether such a stream was away.
//
// The first call waits for every shard's answer (or failure) to the
// check. A shard that does not answer it is checked again before the
// next call to it (which fails meanwhile, like every call to it); if
// it is the one that shows the change, the other shards get their new
// stamp before their next call, and a read in between may answer from a
// stale epoch. Processes running with different lists at once are not
// supported (as for the routes): the layout is changed by a coordinated
// restart, and the first process of the new layout stamps the shards.
// Two processes stamping at once each draw a stamp: a stream may then
// start over twice, which a client sees as one more epoch_changed.

// histLayoutScript: KEYS = prefix; ARGV = fingerprint, stamp, mode.
// Mode "check" returns the fingerprint stored ("" for none) and stores
// this one when there is none; mode "stamp" stores the fingerprint and
// the stamp.
var histLayoutScript = redigo.NewScript(1, `
local k = KEYS[1] .. 'histlayout'
if ARGV[3] == 'stamp' then
  redis.call('HSET', k, 'fp', ARGV[1], 'stamp', ARGV[2])
  return ARGV[1]
end
local fp = redis.call('HGET', k, 'fp')
if not fp then
  redis.call('HSET', k, 'fp', ARGV[1])
  return ''
end
return fp
`)

// layoutFingerprint is the fingerprint of a router over the shards
// names (nil for one instance) under prefix.
func layoutFingerprint(names []string, prefix string) string {
	sorted := slices.Sorted(slices.Values(names))
	sum := sha256.Sum256([]byte(strings.Join(sorted, "\n") + "\n" + prefix))
	return hex.EncodeToString(sum[:8])
}

// histLayout is a History's view of its shards' layout stamps.
type histLayout struct {
	fp, stamp string
	first     sync.Once
	changed   atomic.Bool // some shard named another layout
	settled   atomic.Bool // every shard checked, and stamped if changed
	shards    []layoutShard
}

// layoutShard is one shard's state: checked once its fp was read,
// stamped once it got this History's stamp.
type layoutShard struct {
	mu               sync.Mutex
	checked, stamped bool
}

func newHistLayout(r *Router, stamp string) *histLayout {
	n := max(len(r.shards), 1)
	return &histLayout{fp: layoutFingerprint(r.names, r.cfg.KeyPrefix), stamp: stamp,
		shards: make([]layoutShard, n)}
}

// ready makes sure shard i (of shards, the single-instance routers) may
// be used: checked, and stamped if the layout changed. The first call
// checks every shard.
func (l *histLayout) ready(ctx context.Context, shards []*Router, i int) error {
	if l.settled.Load() {
		return nil
	}
	l.first.Do(func() {
		all := func(fn func(j int)) {
			var wg sync.WaitGroup
			for j := range shards {
				wg.Go(func() { fn(j) })
			}
			wg.Wait()
		}
		all(func(j int) { _ = l.settle(ctx, shards[j], j) })
		if l.changed.Load() {
			all(func(j int) { _ = l.settle(ctx, shards[j], j) }) // stamp those checked before the change was seen
		}
	})
	err := l.settle(ctx, shards[i], i)
	done := true
	for j := range l.shards {
		s := &l.shards[j]
		s.mu.Lock()
		done = done && s.checked && (s.stamped || !l.changed.Load())
		s.mu.Unlock()
	}
	if done {
		l.settled.Store(true)
	}
	return err
}

// settle checks shard s (index i) if it was not, and stamps it if the
// layout changed.
func (l *histLayout) settle(ctx context.Context, s *Router, i int) error {
	st := &l.shards[i]
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.checked {
		fp, err := redigo.String(s.script(ctx, histLayoutScript, s.prefix, l.fp, l.stamp, "check"))
		if err != nil {
			return err
		}
		st.checked = true
		if fp != "" && fp != l.fp {
			l.changed.Store(true)
		}
	}
	if l.changed.Load() && !st.stamped {
		if _, err := s.script(ctx, histLayoutScript, s.prefix, l.fp, l.stamp, "stamp"); err != nil {
			return err
		}
		st.stamped = true
	}
	return nil
}
