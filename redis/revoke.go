package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud/logic"
)

// Revocations (logic's Pusher.Kick with WithRevoke): per user, the time
// before which the user's credentials are revoked. logic writes them
// (logic.Revoker), cloud reads them at auth (cloud.RevocationStore).
//
// Each is a string, {p}revoked_{mid}: the time in Unix milliseconds, PX
// the revocation's ttl (the longest credential lifetime). A Redis that
// loses its data loses them with the sessions: a credential revoked before
// is accepted again until it expires.

var _ logic.Revoker = (*Router)(nil)

// revokeChunk bounds the users per script call, so one call never holds
// the server for long; a Revoke of more pipelines several calls in its one
// round trip.
const revokeChunk = 1024

// revokeScript: KEYS = prefix; ARGV = before (unix ms), ttl ms, then mids...; a
// user's revocation is set unless the one stored is as late or later.
var revokeScript = redigo.NewScript(1, `
local p, before, ttl = KEYS[1], tonumber(ARGV[1]), ARGV[2]
for i = 3, #ARGV do
  local k = p .. 'revoked_' .. ARGV[i]
  local old = tonumber(redis.call('GET', k) or '')
  if not old or old < before then
    redis.call('SET', k, ARGV[1], 'PX', ttl)
  end
end
return 0
`)

// Revoke records that the credentials of mids issued before before are
// revoked, for ttl, in one round trip. A user's later revocation replaces
// an earlier one (with its ttl); an earlier one leaves a later one as it
// is. Times are kept to the millisecond. Mids below 1 name nobody and are
// skipped; a ttl below 1 ms is a logic.ErrInvalidArgument.
func (r *Router) Revoke(ctx context.Context, mids []int64, before time.Time, ttl time.Duration) error {
	if r.shards != nil {
		return r.shardedRevoke(ctx, mids, before, ttl)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("%w: revocation ttl %v", logic.ErrInvalidArgument, ttl)
	}
	head := []any{r.prefix, before.UnixMilli(), ttl.Milliseconds()}
	var calls [][]any
	var cur []any
	for _, mid := range mids {
		if mid <= 0 {
			continue
		}
		if cur == nil {
			cur = append(make([]any, 0, len(head)+min(revokeChunk, len(mids))), head...)
		}
		cur = append(cur, mid)
		if len(cur) == len(head)+revokeChunk {
			calls, cur = append(calls, cur), nil
		}
	}
	if cur != nil {
		calls = append(calls, cur)
	}
	return r.scripts(ctx, revokeScript, calls)
}

// RevokedBefore returns the revocation time of each of mids that has an
// unexpired one, in one round trip (MGET).
func (r *Router) RevokedBefore(ctx context.Context, mids []int64) (map[int64]time.Time, error) {
	if r.shards != nil {
		return r.shardedRevokedBefore(ctx, mids)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[int64]time.Time)
	if len(mids) == 0 {
		return out, nil
	}
	args := make([]any, len(mids))
	for i, mid := range mids {
		args[i] = r.prefix + "revoked_" + strconv.FormatInt(mid, 10)
	}
	vals, err := redigo.Values(r.do(ctx, "MGET", args...))
	if err != nil {
		return nil, err
	}
	if len(vals) != len(mids) {
		return nil, errRevokedReply
	}
	for i, v := range vals {
		if v == nil {
			continue
		}
		b, ok := v.([]byte)
		if !ok {
			return nil, errRevokedReply
		}
		ms, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return nil, errRevokedReply
		}
		out[mids[i]] = time.UnixMilli(ms)
	}
	return out, nil
}

// errRevokedReply is a revocation read that does not parse: a key written
// by something else, or the reply was cut.
var errRevokedReply = fmt.Errorf("%w: malformed revocation reply", logic.ErrRouter)
