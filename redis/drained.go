package redis

import (
	"context"
	"fmt"

	redigo "github.com/gomodule/redigo/redis"

	"github.com/imcloud/imcloud/logic"
)

// drainedScript: KEYS = prefix; ARGV = ids...; returns each id's drain
// tombstone (the epoch of the registration RemoveNode removed), false
// for none.
var drainedScript = redigo.NewScript(1, `
local p = KEYS[1]
local out = {}
for i = 1, #ARGV do
  out[#out+1] = redis.call('GET', p .. 'drained_' .. ARGV[i])
end
return out
`)

// Drained returns, of ids, the nodes deregistered by a drain (RemoveNode)
// within logic.DrainedTTL, each with the epoch of the registration
// removed ("": none), in one round trip. job.DrainedDirectory.
func (r *Router) Drained(ctx context.Context, ids []string) (map[string]string, error) {
	if r.shards != nil {
		return r.shardedDrained(ctx, ids)
	}
	out := make(map[string]string)
	if len(ids) == 0 {
		return out, ctx.Err()
	}
	args := make([]any, 0, 1+len(ids))
	args = append(args, r.prefix)
	for _, id := range ids {
		args = append(args, id)
	}
	vals, err := redigo.Values(r.script(ctx, drainedScript, args...))
	if err != nil {
		return nil, err
	}
	if len(vals) > len(ids) {
		return nil, fmt.Errorf("%w: malformed drained reply", logic.ErrRouter)
	}
	for i, v := range vals {
		if b, ok := v.([]byte); ok {
			out[ids[i]] = string(b)
		}
	}
	return out, nil
}
