package redis

import (
	"context"
	"fmt"
	"slices"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud/logic"
)

// Room membership: which nodes have at least one member in a room, so that
// job sends a room push only to them (cloud.RoomStore writes it, job.Rooms
// reads it; docs/design.md, rooms).
//
// Each room is a hash, {p}rn_{room}: field a node id, value the
// membership's expiry (unix ms, Redis's clock). The key expires with its
// longest-lived field (a put extends its PX, never shortens it), so a room
// whose members all left or lapsed goes on its own; a lookup skips the
// fields that expired and deletes them on the way. A membership counts
// only while its node's registration is live ({p}nodes score > now, as
// Nodes reads it): a node that crashed or drained (RemoveNode) stops being
// a room's target at once, though its fields stay until they expire.
//
// The writes are per transition and renewal, not per interval: a node
// writes a room when its first member enters it and renews every room it
// has every SessionTTL/3, so the store holds one field per (room, member
// node), and a node with many rooms writes them in calls of roomChunk.

// roomChunk bounds the rooms per script call, so one call never holds the
// server for long: a PutRooms or NodesByRooms of more pipelines several
// calls in its one round trip. A cloud node writes StoreCallSessions (512
// by default) rooms per call: one script call.
const roomChunk = 1024

// putRoomsScript: KEYS = prefix; ARGV = node, ttl ms, then (op, room)... with op
// "+" (joined: the field set to now+ttl, the key's PX extended to cover it)
// or "-" (left: the field deleted).
var putRoomsScript = redigo.NewScript(1, luaNow+`
local p, node, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local exp = now + ttl
for i = 3, #ARGV, 2 do
  local k = p .. 'rn_' .. ARGV[i+1]
  if ARGV[i] == '+' then
    redis.call('HSET', k, node, exp)
    if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
  else
    redis.call('HDEL', k, node)
  end
end
return 0
`)

// nodesByRoomsScript: KEYS = prefix; ARGV = rooms...; returns the generation
// and the rebuild marker ("" when missing), then per room in order the
// number of its member nodes and their ids: the fields not expired whose
// node is registered and live. Expired fields are deleted.
var nodesByRoomsScript = redigo.NewScript(1, luaNow+`
local p = KEYS[1]
local out = {redis.call('GET', p .. '{imcloud}:gen') or '', redis.call('GET', p .. '{imcloud}:rebuilding') or ''}
local nk = p .. 'nodes'
local live = {}
for i = 1, #ARGV do
  local k = p .. 'rn_' .. ARGV[i]
  local f = redis.call('HGETALL', k)
  local at = #out + 1
  local n = 0
  out[at] = 0
  for j = 1, #f, 2 do
    local id = f[j]
    if (tonumber(f[j+1]) or 0) > now then
      local ok = live[id]
      if ok == nil then
        local s = redis.call('ZSCORE', nk, id)
        ok = s ~= false and tonumber(s) > now
        live[id] = ok
      end
      if ok then
        n = n + 1
        out[#out+1] = id
      end
    else
      redis.call('HDEL', k, id)
    end
  end
  out[at] = n
end
return out
`)

// PutRooms records for ttl that node has at least one member in each room
// of joined (a renewal overwrites the expiry) and that it has none in each
// room of left, in one round trip (script calls of roomChunk rooms). A
// room in both is joined: a stale membership only costs the node a push
// it drops, a missing one would lose pushes. Empty room names are
// ignored; an empty node id is a logic.ErrInvalidArgument.
func (r *Router) PutRooms(ctx context.Context, node string, joined, left []string, ttl time.Duration) error {
	if r.shards != nil {
		return r.everyShard(ctx, func(_ int, s *Router) error { return s.PutRooms(ctx, node, joined, left, ttl) })
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if node == "" {
		return fmt.Errorf("%w: room membership without a node id", logic.ErrInvalidArgument)
	}
	ms := ttlMillis(ttl)
	var calls [][]any
	var cur []any
	add := func(op, room string) {
		if room == "" {
			return
		}
		if cur == nil {
			cur = make([]any, 0, 3+2*min(roomChunk, len(joined)+len(left)))
			cur = append(cur, r.prefix, node, ms)
		}
		cur = append(cur, op, room)
		if len(cur) == 3+2*roomChunk {
			calls, cur = append(calls, cur), nil
		}
	}
	// Left first, joined last: the calls run in order, so joined wins.
	for _, room := range left {
		add("-", room)
	}
	for _, room := range joined {
		add("+", room)
	}
	if cur != nil {
		calls = append(calls, cur)
	}
	return r.scripts(ctx, putRoomsScript, calls)
}

// NodesByRooms returns, for each of rooms with members, the ids (sorted)
// of the live nodes whose membership has not expired; a room without
// members is absent. One round trip (script calls of roomChunk rooms,
// pipelined). While the router rebuilds (see Generation) it fails with
// logic.ErrRouterRebuilding: a room's members may be on nodes that have
// not written their rooms again yet.
func (r *Router) NodesByRooms(ctx context.Context, rooms []string) (map[string][]string, error) {
	if r.shards != nil {
		return r.shardedNodesByRooms(ctx, rooms)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	asked := make([]string, 0, len(rooms))
	for _, room := range rooms {
		if room != "" {
			asked = append(asked, room)
		}
	}
	if len(asked) == 0 {
		return map[string][]string{}, nil
	}
	calls := chunkCalls(r.prefix, asked, roomChunk)
	bodies, err := r.readCalls(ctx, nodesByRoomsScript, calls, errRoomsReply)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string)
	names := nodeNames{}
	for i, vals := range bodies {
		if err := fillRooms(out, calls[i][1:], vals, names); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fillRooms adds to out the rooms of one script call (chunk, the rooms
// asked) from its reply after the generation and marker: per room, the
// number of nodes, then their ids.
func fillRooms(out map[string][]string, chunk []any, vals []any, names nodeNames) error {
	for _, a := range chunk {
		if len(vals) == 0 {
			return errRoomsReply
		}
		n, ok := vals[0].(int64)
		if !ok || n < 0 || int(n) > len(vals)-1 {
			return errRoomsReply
		}
		if n > 0 {
			ids := make([]string, n)
			for j := range ids {
				b, ok := vals[1+j].([]byte)
				if !ok {
					return errRoomsReply
				}
				ids[j] = names.get(b)
			}
			slices.Sort(ids)
			out[a.(string)] = ids
		}
		vals = vals[1+n:]
	}
	if len(vals) != 0 {
		return errRoomsReply // more than was asked for
	}
	return nil
}

// errRoomsReply is a rooms script reply that does not parse: a script of
// another version answered, or the reply was cut.
var errRoomsReply = fmt.Errorf("%w: malformed rooms lookup reply", logic.ErrRouter)
