package redis

import (
	"context"
	"fmt"
	"runtime"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud/logic"
)

// lookup is one NodesByKeys or NodesByMids call waiting for a round trip.
type lookup struct {
	ctx  context.Context
	keys []string
	mids []int64
	out  map[string]string
	err  error
	done chan struct{}
	// wantOffline: also list in offline the positive mids without a
	// route (NodesByMidsOffline).
	wantOffline bool
	offline     []int64
}

// NodesByKeys returns key -> node id for the keys that are online. Calls
// made while another is in flight share the next round trip (one MGET).
// While the router rebuilds (see Generation), a key without a route fails
// the call with logic.ErrRouterRebuilding.
func (r *Router) NodesByKeys(ctx context.Context, keys []string) (map[string]string, error) {
	if r.shards != nil {
		return r.shardedNodesByKeys(ctx, keys)
	}
	return r.lookup(ctx, &lookup{ctx: ctx, keys: keys})
}

// NodesByMids returns key -> node id for every live connection of mids.
// Calls made while another is in flight share the next round trip (one
// script call for all their mids). While the router rebuilds (see
// Generation) it fails with logic.ErrRouterRebuilding.
func (r *Router) NodesByMids(ctx context.Context, mids []int64) (map[string]string, error) {
	if r.shards != nil {
		out, _, err := r.shardedNodesByMids(ctx, mids, false)
		return out, err
	}
	return r.lookup(ctx, &lookup{ctx: ctx, mids: mids})
}

func (r *Router) lookup(ctx context.Context, l *lookup) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(l.keys) == 0 && len(l.mids) == 0 {
		return map[string]string{}, nil
	}
	l.done = make(chan struct{})
	queue := r.lookups
	if len(l.keys)+len(l.mids) <= r.cfg.SmallLookup {
		queue = r.small
	}
	select {
	case queue <- l: // the common case: room in the queue
	default:
		select {
		case queue <- l:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.quit:
			return nil, logic.ErrClosed
		}
	}
	select {
	case <-l.done:
		return l.out, l.err
	case <-ctx.Done():
		return nil, ctx.Err() // the loop finishes l and nobody reads it
	case <-r.quit:
		return nil, logic.ErrClosed
	}
}

// lookupLoop takes one waiting lookup, then every other one already
// waiting (up to MaxLookupsPerTrip), and resolves them all in one round trip.
// Under light load a batch is one lookup and adds no delay; under heavy
// load batches grow and round trips per lookup fall.
// A loop serves one queue: the small lookups' or the larger ones'.
func (r *Router) lookupLoop(queue chan *lookup) {
	defer r.wg.Done()
	trip := make([]*lookup, 0, r.cfg.MaxLookupsPerTrip)
	nodes := nodeNames{}
	for {
		select {
		case l := <-queue:
			trip = append(trip[:0], l)
		case <-r.quit:
			return
		}
		// Let goroutines that are ready to run (handlers about to look
		// something up) go first, so their lookups join this round trip.
		// With nothing else runnable this returns at once: no delay is
		// added at low load.
		runtime.Gosched()
	fill:
		for len(trip) < r.cfg.MaxLookupsPerTrip {
			select {
			case l := <-queue:
				trip = append(trip, l)
			default:
				break fill
			}
		}
		r.resolve(trip, nodes)
		clear(trip)
	}
}

// nodeNames interns node ids: a cluster has a few nodes and every route
// names one, so a reply's node ids become strings once rather than once per
// route. One per lookup loop (not shared between goroutines).
type nodeNames map[string]string

// maxNodeNames bounds a nodeNames: past it (node ids churning over a long
// life) it starts again empty.
const maxNodeNames = 4096

func (n nodeNames) get(b []byte) string {
	if s, ok := n[string(b)]; ok { // no allocation for the lookup
		return s
	}
	if len(n) >= maxNodeNames {
		clear(n)
	}
	s := string(b)
	n[s] = s
	return s
}

// resolve answers a batch of lookups with one MGET (all keys) and one
// script call (all mids), pipelined on one connection.
func (r *Router) resolve(trip []*lookup, nodes nodeNames) {
	var nkeys, nmids int
	live := trip[:0:0]
	for _, l := range trip {
		if err := l.ctx.Err(); err != nil {
			l.err = err
			close(l.done)
			continue
		}
		live = append(live, l)
		nkeys += len(l.keys)
		nmids += len(l.mids)
	}
	if len(live) == 0 {
		return
	}
	var keyArgs []any
	var midCalls [][]any
	if nkeys > 0 {
		keyArgs = make([]any, 0, 2+nkeys)
		keyArgs = append(keyArgs, r.genKeys()...)
		for _, l := range live {
			for _, k := range l.keys {
				keyArgs = append(keyArgs, r.prefix+"key_"+k)
			}
		}
	}
	if nmids > 0 {
		midCalls = r.midCalls(live, nmids)
	}
	r.stats.lookups.Add(uint64(len(live)))
	r.stats.roundTrips.Add(1)
	keyReply, midReply, err := r.roundTrip(keyArgs, midCalls)
	var gen, marker []byte
	rebuilding := false
	if err == nil {
		gen, marker, err = fillRoutes(live, keyReply, midReply, nodes)
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.PoolWait+r.cfg.ReadTimeout)
		rebuilding, err = r.observe(ctx, gen, marker)
		cancel()
	}
	for _, l := range live {
		switch {
		case err != nil:
			l.out, l.err = nil, err
		case rebuilding && !l.complete():
			l.out, l.err = nil, logic.ErrRouterRebuilding
		}
		close(l.done)
	}
}

// complete reports whether l's answer is certainly complete while the
// router rebuilds: every key found. A mid's answer never is: its other
// connections may be on nodes that have not registered again yet.
func (l *lookup) complete() bool {
	if len(l.mids) > 0 {
		return false
	}
	for _, k := range l.keys {
		if _, ok := l.out[k]; !ok {
			return false
		}
	}
	return true
}

// fillRoutes sets every lookup's answer from a round trip's replies, and
// returns the generation and rebuild marker they start with (nil when
// missing). If the mids reply does not parse as the script writes it,
// down to its last byte, it fails: then no lookup of the batch may use
// its answer.
func fillRoutes(live []*lookup, keyReply []any, midReply []byte, nodes nodeNames) (gen, marker []byte, err error) {
	if midReply != nil {
		if gen, midReply, err = lengthPrefixed(midReply); err != nil {
			return nil, nil, err
		}
		if marker, midReply, err = lengthPrefixed(midReply); err != nil {
			return nil, nil, err
		}
	} else if len(keyReply) >= 2 {
		gen, _ = keyReply[0].([]byte)
		marker, _ = keyReply[1].([]byte)
	}
	ki := 2 // after the generation and the marker
	for _, l := range live {
		if len(l.keys) > 0 {
			l.out = make(map[string]string, len(l.keys))
			for _, k := range l.keys {
				if node, ok := keyReply[ki].([]byte); ok {
					l.out[k] = nodes.get(node)
				}
				ki++
			}
			continue
		}
		l.out = make(map[string]string, len(l.mids))
		for _, mid := range l.mids {
			n, rest, err := decimalPrefix(midReply) // the mid's route count
			if err != nil {
				return nil, nil, err
			}
			if n == 0 && l.wantOffline && mid > 0 {
				l.offline = append(l.offline, mid)
			}
			for midReply = rest; n > 0; n-- {
				var k, node []byte
				if k, midReply, err = lengthPrefixed(midReply); err != nil {
					return nil, nil, err
				}
				if node, midReply, err = lengthPrefixed(midReply); err != nil {
					return nil, nil, err
				}
				l.out[string(k)] = nodes.get(node)
			}
		}
	}
	if len(midReply) != 0 {
		return nil, nil, errRoutesReply // more than was asked for
	}
	if len(gen) == 0 {
		gen = nil // the script writes a missing generation as ""
	}
	return gen, marker, nil
}

// errRoutesReply is a mids script reply that does not parse: a script of
// another version answered, or the reply was cut.
var errRoutesReply = fmt.Errorf("%w: malformed mids lookup reply", logic.ErrRouter)

// lengthPrefixed reads one "<len>:<bytes>" item of the mids script's
// reply.
func lengthPrefixed(b []byte) (item, rest []byte, err error) {
	n, rest, err := decimalPrefix(b)
	if err != nil || n > len(rest) {
		return nil, nil, errRoutesReply
	}
	return rest[:n], rest[n:], nil
}

// decimalPrefix reads "<digits>:" (at most 9 digits) off the front of b.
func decimalPrefix(b []byte) (n int, rest []byte, err error) {
	for i, c := range b {
		switch {
		case c == ':' && i > 0:
			return n, b[i+1:], nil
		case c < '0' || c > '9' || i >= 9:
			return 0, nil, errRoutesReply
		}
		n = n*10 + int(c-'0')
	}
	return 0, nil, errRoutesReply
}

// midCalls splits the mids of live (nmids in all) into the argument lists
// of script calls of at most MaxMidsPerCall mids each, in order.
func (r *Router) midCalls(live []*lookup, nmids int) [][]any {
	per := r.cfg.MaxMidsPerCall
	calls := make([][]any, 0, (nmids+per-1)/per)
	var cur []any
	for _, l := range live {
		for _, m := range l.mids {
			if len(cur) == 0 {
				cur = make([]any, 0, 1+min(per, nmids))
				cur = append(cur, r.prefix)
			}
			cur = append(cur, m) // redigo formats it; no string per mid
			nmids--
			if len(cur) == 1+per {
				calls, cur = append(calls, cur), nil
			}
		}
	}
	if len(cur) > 0 {
		calls = append(calls, cur)
	}
	return calls
}

// roundTrip sends, pipelined on one connection of the lookups' own pool,
// the keys (one MGET, after the generation and the rebuild marker) and
// the mids (script calls whose replies each start with them, joined into
// one reply as one call would answer).
func (r *Router) roundTrip(keyArgs []any, midCalls [][]any) (keys []any, mids []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.PoolWait)
	defer cancel()
	err = r.withPoolConn(ctx, r.lookupPool, func(c redigo.Conn) error {
		var err error
		keys, mids, err = send(c, keyArgs, midCalls)
		return err
	})
	return keys, mids, err
}

func send(c redigo.Conn, keyArgs []any, midCalls [][]any) (keys []any, mids []byte, err error) {
	for attempt := 0; ; attempt++ {
		keys, mids, err = sendOnce(c, keyArgs, midCalls)
		if attempt == 0 && isNoScript(err) {
			// Every reply was read: load the script and send it all again
			// (reads only).
			if err := midsScript.Load(c); err != nil {
				return nil, nil, fmt.Errorf("redis: mids: script load: %w", err)
			}
			continue
		}
		return keys, mids, err
	}
}

// sendOnce pipelines the MGET and the mids script calls and reads every
// reply, even after an error, so the connection is left clean; a NOSCRIPT
// error stays visible to isNoScript through the wrapping.
func sendOnce(c redigo.Conn, keyArgs []any, midCalls [][]any) (keys []any, mids []byte, err error) {
	if keyArgs != nil {
		if err := c.Send("MGET", keyArgs...); err != nil {
			return nil, nil, fmt.Errorf("redis: MGET: %w", err)
		}
	}
	for _, args := range midCalls {
		if err := midsScript.SendHash(c, args...); err != nil {
			return nil, nil, fmt.Errorf("redis: mids: %w", err)
		}
	}
	if err := c.Flush(); err != nil {
		return nil, nil, fmt.Errorf("redis: flush: %w", err)
	}
	var first error
	if keyArgs != nil {
		if keys, err = redigo.Values(c.Receive()); err != nil {
			first = fmt.Errorf("redis: MGET: %w", err)
		} else if len(keys) != len(keyArgs) {
			first = fmt.Errorf("redis: MGET: %d replies for %d keys", len(keys), len(keyArgs))
		}
	}
	var head []byte // the first call's generation and marker
	for range midCalls {
		reply, err := redigo.Bytes(c.Receive())
		if first != nil {
			continue // read the rest of the replies only
		}
		if err != nil {
			first = fmt.Errorf("redis: mids: %w", err)
			continue
		}
		if mids == nil {
			mids = reply
			head, first = replyHead(reply)
			continue
		}
		h, err := replyHead(reply)
		switch {
		case err != nil:
			first = err
		case string(h) != string(head):
			// The data was lost between two calls: they answered from two
			// generations. Fail: the next lookup sees the new one.
			first = errGenerationMoved
		default:
			mids = append(mids, reply[len(h):]...)
		}
	}
	if first != nil {
		return nil, nil, first
	}
	return keys, mids, nil
}

// errGenerationMoved is a lookup whose script calls answered from two
// generations of the router's data.
var errGenerationMoved = fmt.Errorf("%w: the router's generation changed during a lookup", logic.ErrRouter)

// replyHead returns the generation and marker items at the start of a
// mids script reply.
func replyHead(reply []byte) ([]byte, error) {
	_, rest, err := lengthPrefixed(reply)
	if err == nil {
		_, rest, err = lengthPrefixed(rest)
	}
	if err != nil {
		return nil, err
	}
	return reply[:len(reply)-len(rest)], nil
}
