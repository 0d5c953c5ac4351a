package redis

import redigo "github.com/gomodule/redigo/redis"

// The Redis router's Lua scripts. Each runs atomically on the server, so a
// removal racing a re-registration can never delete the new route, and
// each does a whole batch in one round trip. Every script declares one
// key, the router's key prefix (KEYS[1]; ARGV holds the rest), and builds
// every key name it touches from it, so each call runs on one Redis: the
// router's, or one shard of a router over several (shard.go). In a Redis
// Cluster (cluster.go) the prefix ends in the shard's hash tag, so every
// key of a call is in the declared key's slot, the one a call is routed
// by. No script has a shebang (#!lua): they load on Redis before 7 too,
// and Redis then does not check that their keys share a slot, only that
// its node serves them (cluster_test.go checks the rule). Not every key a script touches is known before it runs (a
// node's keys come from its nodekeys_ set, a user's from its mid_ hash):
// the declared key stands for the slot. The declared key itself is
// never read or written.
//
// Schema (goim's, extended; see DESIGN.md):
//
//	{p}key_{key}   string  node id                          PX ttl
//	{p}gen_{key}   string  node "\n" gen "\n" mid "\n" since "\n" platform "\n" room   PX ttl
//	{p}mid_{mid}   hash    key -> node id                   PX ttl (renewed by every put)
//	{p}node_{id}   string  JSON registration                PX ttl
//	{p}nodekeys_{id} set   keys put with node id            PX session ttl (renewed by every put)
//	{p}epoch_{id}  string  epoch of node id's process       PX max(node ttl, what nodekeys_ has left)
//	{p}nodes       zset    id scored by expiry (unix ms)
//	{p}ol_{id}     hash    room -> count                    PX ttl
//	{p}ol          zset    id scored by expiry (unix ms)
//	{p}rn_{room}   hash    node id -> membership expiry (unix ms)   PX the longest field's (rooms.go)
//	{p}drained_{id} string epoch node id last registered, left by RemoveNode   PX logic.DrainedTTL (drained.go)
//	{p}revoked_{mid} string  unix ms before which mid's credentials are revoked  PX ttl (revoke.go)
//	{p}{imcloud}:gen         string  generation: random ":" created ms   (generation.go)
//	{p}{imcloud}:rebuilding  string  generation being rebuilt            PX what is left of RebuildWindow
//
// A node id may outlive its process (an explicit, stable id restarted after
// a crash): every cloud process registers a random epoch with its node, and
// putNodeScript, seeing an id registered with an epoch other than the one
// stored, removes every route of nodekeys_{id} whose gen_ entry still names
// the id (the dead process's) before the new process puts any session. The
// epoch_ entry lives at least as long as nodekeys_, so a restart is noticed
// however long the node's registration had lapsed; with no epoch_ entry
// (first registration, or Redis lost its data) nothing is removed. The
// removal is one script call over the old process's keys (a node holds up to
// some tens of thousands), run once per restart, never on renewals.
//
// A gen_ entry carries what Presence reports besides the route (presence.go):
// since (the connection's auth time, Unix seconds, 0 unknown), platform and
// the primary room (last: the rest of the value). Entries put by an earlier
// release end after mid ("node\ngen\nmid"); every script here reads the mid
// as the third line, so it reads both forms, and Presence reports such an
// entry with no platform, room or since. An earlier release's scripts take
// the rest of the entry after gen for the mid, so they do not read the new
// form: upgrade every cloud node in one roll, and downgrade none until the
// new entries expired (docs/redis.md). Kept in the entry every put writes
// anyway, they cost their bytes only: no key of their own (Redis's per-key
// overhead, an expiry), no command and no round trip.

// putSessionsScript: KEYS = prefix; ARGV = ttl ms, then (mid, key, node, gen,
// info)... with info = since "\n" platform "\n" room; each key joins its
// node's nodekeys_ set (and leaves the set of the node it was on before).
// Returns (key, previous gen_ entry)... for the keys that were another
// user's: a sharded router removes that user's copy of the route from the
// user's shard (shard.go).
var putSessionsScript = redigo.NewScript(1, `
local p = KEYS[1]
local ttl = tonumber(ARGV[1])
local nodes = {}
local moved = {}
for i = 2, #ARGV, 5 do
  local mid, key, node, gen = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  local gk = p .. 'gen_' .. key
  local old = redis.call('GET', gk)
  if old then
    local on, om = string.match(old, '^([^\n]*)\n[^\n]*\n([^\n]*)')
    if om and om ~= mid and om ~= '0' then
      redis.call('HDEL', p .. 'mid_' .. om, key)
      moved[#moved+1] = key
      moved[#moved+1] = old
    end
    if on and on ~= node then
      redis.call('SREM', p .. 'nodekeys_' .. on, key)
    end
  end
  redis.call('SADD', p .. 'nodekeys_' .. node, key)
  nodes[node] = true
  redis.call('SET', p .. 'key_' .. key, node, 'PX', ttl)
  redis.call('SET', gk, node .. '\n' .. gen .. '\n' .. mid .. '\n' .. ARGV[i+4], 'PX', ttl)
  if mid ~= '0' then
    local mk = p .. 'mid_' .. mid
    redis.call('HSET', mk, key, node)
    redis.call('PEXPIRE', mk, ttl)
  end
end
for node in pairs(nodes) do
  redis.call('PEXPIRE', p .. 'nodekeys_' .. node, ttl)
  local ek = p .. 'epoch_' .. node
  local left = redis.call('PTTL', ek)
  if left >= 0 and left < ttl then redis.call('PEXPIRE', ek, ttl) end
end
return moved
`)

// removeSessionsScript: KEYS = prefix; ARGV = (key, node, gen)...; a route is
// removed only when it still names node and gen. The key leaves node's
// nodekeys_ set unless its route is another generation on the same node.
var removeSessionsScript = redigo.NewScript(1, `
local p = KEYS[1]
local n = 0
for i = 1, #ARGV, 3 do
  local key, node, gen = ARGV[i], ARGV[i+1], ARGV[i+2]
  local gk = p .. 'gen_' .. key
  local cur = redis.call('GET', gk)
  local want = node .. '\n' .. gen .. '\n'
  if cur and string.sub(cur, 1, #want) == want then
    local mid = string.match(cur, '^[^\n]*', #want + 1)
    redis.call('DEL', gk, p .. 'key_' .. key)
    if mid ~= '0' then redis.call('HDEL', p .. 'mid_' .. mid, key) end
    n = n + 1
    cur = nil
  end
  if not cur or string.sub(cur, 1, #node + 1) ~= node .. '\n' then
    redis.call('SREM', p .. 'nodekeys_' .. node, key)
  end
end
return n
`)

// midsScript: KEYS = prefix; ARGV = mids...; returns one string holding the
// generation and the rebuild marker ("" when missing), then, per mid in
// order, its number of live routes and then each route's key and node id,
// every item length-prefixed ("<len>:<bytes>", the count as "<n>:");
// fillRoutes reads it. One string rather than nested arrays: the client
// reads a batch's reply with one allocation instead of three per route. A
// hash field whose key_ entry expired or moved (a crashed node never
// removed it) is dropped and cleaned up on the way.
var midsScript = redigo.NewScript(1, `
local p = KEYS[1]
local g = redis.call('GET', p .. '{imcloud}:gen') or ''
local m = redis.call('GET', p .. '{imcloud}:rebuilding') or ''
local out = {#g .. ':' .. g .. #m .. ':' .. m}
for i = 1, #ARGV do
  local mk = p .. 'mid_' .. ARGV[i]
  local f = redis.call('HGETALL', mk)
  local n = 0
  local at = #out + 1
  out[at] = ''
  for j = 1, #f, 2 do
    local node = redis.call('GET', p .. 'key_' .. f[j])
    if node == f[j+1] then
      n = n + 1
      out[#out+1] = #f[j] .. ':' .. f[j] .. #node .. ':' .. node
    else
      redis.call('HDEL', mk, f[j])
    end
  end
  out[at] = n .. ':'
end
return table.concat(out)
`)

// now in scripts: Redis's own clock, so expiry scores do not depend on the
// clocks of the machines writing them.
const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// putNodeScript: KEYS = prefix; ARGV = id, ttl ms, JSON, epoch ("" for none).
// Returns the number of routes removed because the id came back with a new
// epoch (a restart): those of nodekeys_{id} whose gen_ entry still names id.
var putNodeScript = redigo.NewScript(1, luaNow+`
local p, id, ttl, epoch = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[4]
local n = 0
if epoch ~= '' then
  local ek, nk = p .. 'epoch_' .. id, p .. 'nodekeys_' .. id
  local old = redis.call('GET', ek)
  if old and old ~= epoch then
    local want = id .. '\n'
    for _, key in ipairs(redis.call('SMEMBERS', nk)) do
      local gk = p .. 'gen_' .. key
      local cur = redis.call('GET', gk)
      if cur and string.sub(cur, 1, #want) == want then
        local mid = string.match(cur, '^[^\n]*\n[^\n]*\n([^\n]*)')
        redis.call('DEL', gk, p .. 'key_' .. key)
        if mid and mid ~= '0' then redis.call('HDEL', p .. 'mid_' .. mid, key) end
        n = n + 1
      end
    end
    redis.call('DEL', nk)
  end
  redis.call('SET', ek, epoch, 'PX', math.max(ttl, redis.call('PTTL', nk)))
end
redis.call('SET', p .. 'node_' .. id, ARGV[3], 'PX', ttl)
redis.call('ZADD', p .. 'nodes', now + ttl, id)
redis.call('ZREMRANGEBYSCORE', p .. 'nodes', '-inf', now)
return n
`)

// nodesScript: KEYS = prefix, no ARGV; returns the generation and the rebuild
// marker (false when missing), then the JSON of every live node.
var nodesScript = redigo.NewScript(1, luaNow+`
local p = KEYS[1]
local out = {redis.call('GET', p .. '{imcloud}:gen'), redis.call('GET', p .. '{imcloud}:rebuilding')}
local ids = redis.call('ZRANGEBYSCORE', p .. 'nodes', '(' .. now, '+inf')
for _, id in ipairs(ids) do
  local v = redis.call('GET', p .. 'node_' .. id)
  if v then out[#out+1] = v end
end
return out
`)

// removeNodeScript: KEYS = prefix; ARGV = id, tombstone ttl ms. It leaves the
// drain's tombstone, drained_{id}, holding the epoch last registered
// (drained.go).
var removeNodeScript = redigo.NewScript(1, `
local p, id = KEYS[1], ARGV[1]
redis.call('SET', p .. 'drained_' .. id, redis.call('GET', p .. 'epoch_' .. id) or '', 'PX', ARGV[2])
redis.call('DEL', p .. 'node_' .. id, p .. 'ol_' .. id)
redis.call('ZREM', p .. 'nodes', id)
redis.call('ZREM', p .. 'ol', id)
return 0
`)

// putCountsScript: KEYS = prefix; ARGV = node, ttl ms, then (room, count)...
var putCountsScript = redigo.NewScript(1, luaNow+`
local p, id, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local k = p .. 'ol_' .. id
redis.call('DEL', k)
for i = 3, #ARGV, 2 do
  redis.call('HSET', k, ARGV[i], ARGV[i+1])
end
if #ARGV >= 3 then redis.call('PEXPIRE', k, ttl) end
redis.call('ZADD', p .. 'ol', now + ttl, id)
redis.call('ZREMRANGEBYSCORE', p .. 'ol', '-inf', now)
return 0
`)

// roomCountsScript: KEYS = prefix, no ARGV; returns room, sum, room, sum... over the
// unexpired reports.
var roomCountsScript = redigo.NewScript(1, luaNow+`
local p = KEYS[1]
local ids = redis.call('ZRANGEBYSCORE', p .. 'ol', '(' .. now, '+inf')
local sum = {}
for _, id in ipairs(ids) do
  local f = redis.call('HGETALL', p .. 'ol_' .. id)
  for j = 1, #f, 2 do
    sum[f[j]] = (sum[f[j]] or 0) + tonumber(f[j+1])
  end
end
local out = {}
for room, n in pairs(sum) do
  if n ~= 0 then
    out[#out+1] = room
    out[#out+1] = n
  end
end
return out
`)
