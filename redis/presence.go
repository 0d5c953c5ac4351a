package redis

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
)

var (
	_ logic.PresenceRouter = (*Router)(nil)
	_ logic.OfflineRouter  = (*Router)(nil)
)

// Presence (logic.PresenceRouter) reads what the session puts wrote: a
// user's mid_ hash names its keys, each key's gen_ entry carries the
// platform, primary room and auth time besides the route (scripts.go). A
// session counts while its key_ entry still names the node of the hash
// field (the route NodesByMids would use) and the node's registration is
// live ({p}nodes score > now, Redis's clock), so a node that crashed or
// drained stops counting when its registration ends, before its sessions
// expire.

// presenceScript: KEYS = prefix; ARGV = mids...; returns the generation and
// the rebuild marker ("" when missing), then per mid in order the number
// of its live sessions and, for each, its key and its gen_ entry. Reads
// only.
var presenceScript = redigo.NewScript(1, luaNow+`
local p = KEYS[1]
local out = {redis.call('GET', p .. '{imcloud}:gen') or '', redis.call('GET', p .. '{imcloud}:rebuilding') or ''}
local nk = p .. 'nodes'
local live = {}
for i = 1, #ARGV do
  local f = redis.call('HGETALL', p .. 'mid_' .. ARGV[i])
  local at = #out + 1
  local n = 0
  out[at] = 0
  for j = 1, #f, 2 do
    local key, node = f[j], f[j+1]
    if redis.call('GET', p .. 'key_' .. key) == node then
      local ok = live[node]
      if ok == nil then
        local s = redis.call('ZSCORE', nk, node)
        ok = s ~= false and tonumber(s) > now
        live[node] = ok
      end
      local v = ok and redis.call('GET', p .. 'gen_' .. key)
      if v and string.sub(v, 1, #node + 1) == node .. '\n' then
        n = n + 1
        out[#out+1] = key
        out[#out+1] = v
      end
    end
  end
  out[at] = n
end
return out
`)

// presenceInfo is what a session put writes after the mid in the gen_
// entry: since (Unix seconds, 0 unknown), platform and the primary room,
// one per line. A newline in the platform (never from cloud, which
// refuses one) becomes a space so the lines stay apart; the room is last
// and may hold anything.
func presenceInfo(s imcloud.Session) string {
	since := int64(0)
	if !s.Since.IsZero() {
		since = s.Since.Unix()
	}
	platform := s.Platform
	if strings.Contains(platform, "\n") {
		platform = strings.ReplaceAll(platform, "\n", " ")
	}
	return strconv.FormatInt(since, 10) + "\n" + platform + "\n" + s.Room
}

// Presence returns the live connections of each of mids that has any, on
// live nodes (see above), with Since to the second; a session put by an
// earlier release has no Platform, Room or Since. One round trip (script
// calls of MaxMidsPerCall mids, pipelined). While the router rebuilds (see
// Generation) it fails with logic.ErrRouterRebuilding.
func (r *Router) Presence(ctx context.Context, mids []int64) (map[int64][]imcloud.Session, error) {
	if r.shards != nil {
		return r.shardedPresence(ctx, mids)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[int64][]imcloud.Session)
	if len(mids) == 0 {
		return out, nil
	}
	calls := chunkCalls(r.prefix, mids, r.cfg.MaxMidsPerCall)
	bodies, err := r.readCalls(ctx, presenceScript, calls, errPresenceReply)
	if err != nil {
		return nil, err
	}
	names := nodeNames{}
	for i, vals := range bodies {
		if err := fillPresence(out, calls[i][1:], vals, names); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fillPresence adds to out the sessions of one script call (chunk, the
// mids asked) from its reply after the generation and marker: per mid,
// the number of sessions, then each one's key and gen_ entry.
func fillPresence(out map[int64][]imcloud.Session, chunk []any, vals []any, names nodeNames) error {
	for _, a := range chunk {
		mid := a.(int64)
		if len(vals) == 0 {
			return errPresenceReply
		}
		n, ok := vals[0].(int64)
		if !ok || n < 0 || int(2*n) > len(vals)-1 {
			return errPresenceReply
		}
		if _, dup := out[mid]; n > 0 && !dup {
			sessions := make([]imcloud.Session, n)
			for j := range sessions {
				key, ok1 := vals[1+2*j].([]byte)
				entry, ok2 := vals[2+2*j].([]byte)
				if !ok1 || !ok2 {
					return errPresenceReply
				}
				s, err := parseEntry(entry, names)
				if err != nil {
					return err
				}
				s.Mid, s.Key = mid, string(key)
				sessions[j] = s
			}
			out[mid] = sessions
		}
		vals = vals[1+2*n:]
	}
	if len(vals) != 0 {
		return errPresenceReply // more than was asked for
	}
	return nil
}

// parseEntry reads a gen_ entry: node, gen, mid and, when put by this
// release, since, platform and room.
func parseEntry(b []byte, names nodeNames) (imcloud.Session, error) {
	parts := bytes.SplitN(b, []byte("\n"), 6)
	if len(parts) != 3 && len(parts) != 6 {
		return imcloud.Session{}, errPresenceReply
	}
	gen, err := strconv.ParseUint(string(parts[1]), 10, 64)
	if err != nil {
		return imcloud.Session{}, errPresenceReply
	}
	s := imcloud.Session{Node: names.get(parts[0]), Gen: gen}
	if len(parts) == 6 {
		since, err := strconv.ParseInt(string(parts[3]), 10, 64)
		if err != nil {
			return imcloud.Session{}, errPresenceReply
		}
		if since != 0 {
			s.Since = time.Unix(since, 0)
		}
		s.Platform, s.Room = string(parts[4]), string(parts[5])
	}
	return s, nil
}

// errPresenceReply is a presence script reply that does not parse: a
// script of another version answered, or the reply was cut.
var errPresenceReply = fmt.Errorf("%w: malformed presence reply", logic.ErrRouter)

// NodesByMidsOffline is NodesByMids that also returns each positive mid
// of mids without a live route, in their order in mids (repeated as
// asked), from the same round trip: the script's per-mid route counts
// (logic.OfflineRouter).
func (r *Router) NodesByMidsOffline(ctx context.Context, mids []int64) (map[string]string, []int64, error) {
	if r.shards != nil {
		return r.shardedNodesByMids(ctx, mids, true)
	}
	l := &lookup{ctx: ctx, mids: mids, wantOffline: true}
	out, err := r.lookup(ctx, l)
	if err != nil {
		return nil, nil, err
	}
	return out, l.offline, nil
}
