package redis

import redigo "github.com/gomodule/redigo/redis"

// The history's Lua scripts. Schema, per stream, on the stream's shard
// (history_shard.go) under that shard's prefix {p} (the keys are also
// tagged by the stream's name; in a Redis Cluster the shard's tag in the
// prefix, {s<i>}, comes first and decides their slot: the shard's):
//
//	{p}hist:{<stream>}      stream  entry id "<offset>-1", fields id op body acc exp   PX MaxAge (renewed by every append)
//	{p}histmeta:{<stream>}  hash    epoch part last trimmed newest layout              PX MetaTTL (renewed by every append)
//	{p}histlayout           hash    fp stamp                                           no expiry (history_layout.go)
//
// id is the push's 16-byte message id, acc and exp its Accepted and
// Expires in unix milliseconds (exp 0: none). In the metadata, part is the
// queue partition ("" before the first append), last the offset of the
// last push appended in the epoch (-1: none), trimmed the largest offset
// dropped by a bound (-1: none), newest the latest acc appended in the
// epoch, layout the shard's layout stamp when the metadata was written
// (missing: written by a release without it, the same as ""); metadata
// whose layout is not the shard's current stamp (histlayout's, "" when
// none) is that of a stream that may have moved away and back: it starts
// a new epoch, as missing metadata does. A stream key without its metadata (the metadata expired, or Redis
// lost the hash alone) is deleted: a new epoch starts empty. A metadata
// hash whose stream key is gone had every push age out (the key expires
// MaxAge after the last append, and every push was accepted before it
// was appended): trimmed becomes last.
//
// Like the router's scripts, they declare the prefix as their one key
// (KEYS[1]), build key names from it and need a single Redis. Both take,
// first in ARGV: MaxAge ms, MetaTTL ms, now (unix ms, the caller's clock, the one Accepted
// times come from) and a random epoch base drawn by the caller for the
// call; the new epochs a call creates are the base and a counter.
// Numbers go back to Redis through int(): Lua would print a large one in
// exponent notation.

// histLib is the scripts' shared part: open loads (or creates) a stream's
// metadata and drops the pushes that aged; restart starts a new epoch;
// save writes the metadata back.
const histLib = `
local p, maxage, metattl, now, base = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local layout = redis.call('HGET', p .. 'histlayout', 'stamp') or ''
local seq = 0
local function int(n) return string.format('%d', n) end
local function offOf(id) return tonumber(string.match(id, '^(%d+)')) end
local function restart(st)
  redis.call('DEL', st.hk)
  seq = seq + 1
  st.epoch, st.part, st.last, st.trimmed, st.newest = base .. string.format('%x', seq), '', -1, -1, 0
  st.dirty = true
end
local function open(s)
  local st = {hk = p .. 'hist:{' .. s .. '}', mk = p .. 'histmeta:{' .. s .. '}'}
  local m = redis.call('HMGET', st.mk, 'epoch', 'part', 'last', 'trimmed', 'newest', 'layout')
  if m[1] and (m[6] or '') == layout then
    st.epoch, st.part = m[1], m[2] or ''
    st.last, st.trimmed, st.newest = tonumber(m[3]) or -1, tonumber(m[4]) or -1, tonumber(m[5]) or 0
  else
    restart(st)
    st.created = true
  end
  if redis.call('EXISTS', st.hk) == 0 then
    if st.last > st.trimmed then st.trimmed, st.dirty = st.last, true end
    return st
  end
  local cutoff, cut = now - maxage, nil
  while true do
    local es = redis.call('XRANGE', st.hk, cut and ('(' .. cut) or '-', '+', 'COUNT', 16)
    local more = #es == 16
    for _, e in ipairs(es) do
      if tonumber(e[2][8]) > cutoff then more = false break end
      cut = e[1]
    end
    if not more then break end
  end
  if cut then
    local d = offOf(cut)
    redis.call('XTRIM', st.hk, 'MINID', int(d) .. '-2')
    if d > st.trimmed then st.trimmed, st.dirty = d, true end
  end
  return st
end
local function save(st)
  if st.dirty then
    redis.call('HSET', st.mk, 'epoch', st.epoch, 'part', st.part, 'last', int(st.last),
      'trimmed', int(st.trimmed), 'newest', int(st.newest), 'layout', layout)
  end
  if st.created then redis.call('PEXPIRE', st.mk, metattl) end
end
`

// histAppendScript: KEYS = prefix; ARGV = the four common arguments, MaxLen, then
// (stream, partition, offset, id, op, body, acc, exp)... in offset order
// per stream. Returns each item's epoch. An offset at or below the
// stream's last is a redelivery (no-op) when its entry is held with the
// same id, or not held and acc is no later than newest; otherwise, and
// on another partition, the stream restarts under a new epoch.
var histAppendScript = redigo.NewScript(1, histLib+`
local maxlen = tonumber(ARGV[5])
local streams, out = {}, {}
for i = 6, #ARGV, 8 do
  local s, part, off, id, acc = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+6]
  local noff, nacc = tonumber(off), tonumber(acc)
  local st = streams[s]
  if not st then
    st = open(s)
    streams[s] = st
  end
  local add = true
  if st.part ~= '' and st.part ~= part then
    restart(st)
  elseif noff <= st.last then
    local e = redis.call('XRANGE', st.hk, off .. '-1', off .. '-1')[1]
    if (e and e[2][2] == id) or (not e and nacc <= st.newest) then
      add = false
    else
      restart(st)
    end
  end
  if add then
    redis.call('XADD', st.hk, off .. '-1', 'id', id, 'op', ARGV[i+4], 'body', ARGV[i+5], 'acc', acc, 'exp', ARGV[i+7])
    st.last, st.part, st.dirty = noff, part, true
    if nacc > st.newest then st.newest = nacc end
    local over = redis.call('XLEN', st.hk) - maxlen
    if over > 0 then
      local es = redis.call('XRANGE', st.hk, '-', '+', 'COUNT', over)
      local d = offOf(es[#es][1])
      redis.call('XTRIM', st.hk, 'MINID', int(d) .. '-2')
      if d > st.trimmed then st.trimmed = d end
    end
  end
  out[#out + 1] = st.epoch
end
for _, st in pairs(streams) do
  save(st)
  redis.call('PEXPIRE', st.mk, metattl)
  redis.call('PEXPIRE', st.hk, maxage)
end
return out
`)

// histReadScript: KEYS = prefix; ARGV = the four common arguments, stream, mode, since
// epoch, since offset, want, MaxLen. Mode "last": the newest want (0: all)
// unexpired entries, newest first. Mode "read": when since is a position
// of the current epoch (-1 to last), the first want (0: all) unexpired
// entries after it; otherwise none. Returns {epoch, last, trimmed, then
// per entry offset, id, op, body, acc, exp}: flat, so the reply decodes
// with few allocations.
var histReadScript = redigo.NewScript(1, histLib+`
local st = open(ARGV[5])
save(st)
local want, maxlen = tonumber(ARGV[9]), tonumber(ARGV[10])
-- collect gathers want (0: all) unexpired entries, in as few range
-- calls as the expired ones allow: one, usually.
local function collect(rev, lo, hi)
  local out = {}
  while true do
    local count = want > 0 and want - #out or maxlen
    local es
    if rev then
      es = redis.call('XREVRANGE', st.hk, hi, lo, 'COUNT', count)
    else
      es = redis.call('XRANGE', st.hk, lo, hi, 'COUNT', count)
    end
    for _, e in ipairs(es) do
      local exp = tonumber(e[2][10])
      if exp == 0 or exp > now then out[#out + 1] = e end
    end
    if #es < count or #out == want then return out end
    if rev then hi = '(' .. es[#es][1] else lo = '(' .. es[#es][1] end
  end
end
local es = {}
if ARGV[6] == 'last' then
  es = collect(true, '-', '+')
else
  local since = tonumber(ARGV[8])
  if ARGV[7] ~= '' and ARGV[7] == st.epoch and since >= -1 and since <= st.last then
    es = collect(false, int(since + 1) .. '-0', '+')
  end
end
local out = {st.epoch, int(st.last), int(st.trimmed)}
for _, e in ipairs(es) do
  local f = e[2]
  out[#out + 1] = string.match(e[1], '^(%d+)')
  out[#out + 1] = f[2]
  out[#out + 1] = f[4]
  out[#out + 1] = f[6]
  out[#out + 1] = f[8]
  out[#out + 1] = f[10]
end
return out
`)
