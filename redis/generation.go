package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud/logic"
)

// The router's generation: telling "this node expired" from "Redis lost
// everything".
//
// A Redis that restarts without its data (no persistence), is flushed, or
// fails over to an empty replica loses every session and node
// registration at once, while the nodes, job and logic carry on. Without a
// sign of it, job would take every node for gone and logic would answer
// "delivered to 0 keys" for users who are online, until each node's next
// periodic renewal.
//
// The sign is the generation key, {p}{imcloud}:gen: an opaque value
// ("<random hex>:<creation time in Redis's ms>") created by the first
// caller of Generation (every cloud node, at start and then every
// second) or by a router that finds it gone. Lost data takes it along, so
// whoever looks next finds it missing or different:
//
//   - a cloud node compares it with the one it last saw (Generation's
//     known) and, when it changed, registers itself, every session and its
//     room counts again at once, in pipelined batches;
//   - a router compares it with the one its own lookups and Nodes last
//     saw.
//
// Whoever finds it changed (and knew the previous one) creates the new one
// if it is missing and sets the rebuild marker, {p}{imcloud}:rebuilding =
// the new generation, expiring RebuildWindow after the new generation was
// created (Redis's clock), unless that is past. While the marker names the
// current generation the router is rebuilding: a mid lookup fails with
// logic.ErrRouterRebuilding (a user's connections may sit on nodes that
// have not registered again: even a partial answer could silently miss
// one), a key lookup fails if a key has no route, and NodesRebuilding
// says so, so job does not take a missing node for gone. The window is
// fixed rather than ended by the last node: after a wipe nothing tells
// which nodes were live. It must cover a node's generation check
// interval (1 s by default) plus its re-registration (BENCHMARKS.md has
// the measured time for 10,000 sessions); the default is 3 s.
//
// A router or node that never saw a generation (a fresh deployment, or a
// process started while Redis was empty) starts no window: nothing it
// knew of can be missing. A generation found changed long after it was
// created starts none either (the window ran from the creation).
//
// Both keys carry the hash tag {imcloud}, a leftover from before the
// router's keys had one: with a plain prefix nothing else is tagged. With
// several Redis instances (shard.go) each shard keeps its own pair of
// keys; in a Redis Cluster (cluster.go) the shard's tag comes first in
// the prefix ({s3}{imcloud}:gen), so the pair is in the shard's slot,
// with its other keys.

// genScript: KEYS = prefix; ARGV = known, candidate, window ms. Creates the
// generation if missing; if known is set and differs, sets the rebuild
// marker for what is left of the window. Returns {generation, marker}.
var genScript = redigo.NewScript(1, luaNow+`
local p, known, window = KEYS[1], ARGV[1], tonumber(ARGV[3])
local gk, mk = p .. '{imcloud}:gen', p .. '{imcloud}:rebuilding'
local g = redis.call('GET', gk)
if not g then
  g = ARGV[2] .. ':' .. now
  redis.call('SET', gk, g)
end
if known ~= '' and known ~= g then
  local created = tonumber(string.match(g, ':(%d+)$')) or now
  local left = created + window - now
  if left > 0 then redis.call('SET', mk, g, 'PX', left, 'NX') end
end
return {g, redis.call('GET', mk) or ''}
`)

// genKeys are the generation and marker keys, read by every lookup round
// trip: at the head of its MGET of keys, or by the mids script.
func (r *Router) genKeys() []any {
	return []any{r.prefix + "{imcloud}:gen", r.prefix + "{imcloud}:rebuilding"}
}

// Generation returns the router's current generation, creating it if
// Redis has none. known is the generation the caller last saw ("" for
// none); if the current one differs, Redis lost its data since, and the
// rebuild window starts if it has not (see above). cloud nodes call it
// every second (cloud.GenerationStore) and re-register everything when
// it changed.
func (r *Router) Generation(ctx context.Context, known string) (string, error) {
	if r.shards != nil {
		return r.shardedGeneration(ctx, known)
	}
	g, _, err := r.ensureGeneration(ctx, known)
	return g, err
}

// ensureGeneration runs genScript and returns the generation and whether
// the router is rebuilding.
func (r *Router) ensureGeneration(ctx context.Context, known string) (string, bool, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	vals, err := redigo.Strings(r.script(ctx, genScript, r.prefix, known, hex.EncodeToString(b[:]), r.cfg.RebuildWindow.Milliseconds()))
	if err != nil {
		return "", false, err
	}
	if len(vals) != 2 || vals[0] == "" {
		return "", false, fmt.Errorf("%w: malformed generation reply", logic.ErrRouter)
	}
	return vals[0], vals[1] == vals[0], nil
}

// observe takes the generation and marker a lookup round trip or Nodes
// read (nil when missing) and tells whether the router is rebuilding. A
// generation gone or changed since this router last saw one is a wipe:
// observe makes sure the new generation and its window exist (one more
// round trip, once per wipe).
func (r *Router) observe(ctx context.Context, gen, marker []byte) (bool, error) {
	seen := ""
	if p := r.seenGen.Load(); p != nil {
		seen = *p
	}
	switch {
	case gen != nil && string(gen) == seen:
		return string(marker) == seen, nil
	case seen == "":
		if gen == nil {
			return false, nil // a fresh deployment: nothing registered yet
		}
		g := string(gen)
		r.seenGen.Store(&g)
		return string(marker) == g, nil
	}
	g, rebuilding, err := r.ensureGeneration(ctx, seen)
	if err != nil {
		return false, err
	}
	r.log.Warn("redis: the router lost its data (new generation); nodes re-register", "generation", g, "rebuilding", rebuilding)
	r.seenGen.Store(&g)
	return rebuilding, nil
}
