package app

import "github.com/redis/go-redis/v9"

// The presence scripts. Every decision runs inside one of them, so Redis
// executes it atomically: whichever instance's script decides a join or a
// leave is the one instance that hears of it, and so the one that
// announces it.
//
// Keys, under P = <PAPO_REDIS_PREFIX>presence: (rooms are a-z 0-9 _ -, so
// "room\nuid" is unambiguous):
//
//	P..instances        set     the instances that hold streams
//	P..alive:<origin>   string  an instance's heartbeat, with a TTL
//	P..streams:<origin> hash    "room\nuid" -> that instance's open streams
//	P..online:<room>    hash    uid -> username: joined and not yet left
//	P..rooms            set     rooms with someone online
//	P..leaving          zset    "room\nuid" -> when the leave is due (ms)
//	P..names            hash    uid -> username, for announcing
//	P..epoch            string  changes when Redis has lost its data
//	P..joining          zset    "room\nuid" -> when a join held by a rebuild
//	                            is due (ms); see syncScript
//	P..known            set     "room\nuid" online before Redis lost its
//	                            data, as claimed by the instances rebuilding
//	P..stamp            string  the last stamp given (see stamp)
//
// A user's stream count is never stored as a total: it is the sum over
// the live instances' hashes, so removing a dead instance's hash is the
// whole of reaping it, and no counter can drift. Time comes from Redis
// (TIME), so instances' clocks need not agree.
const presenceLuaPrelude = `
local P = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function split(f)
  local i = string.find(f, '\n', 1, true)
  return string.sub(f, 1, i - 1), string.sub(f, i + 1)
end

-- instances lists the instances once a call: a batch settles hundreds of
-- pairs, and the set changes inside a call only where forget_instances
-- says so.
local instances_seen
local function instances()
  if not instances_seen then
    instances_seen = redis.call('SMEMBERS', P .. 'instances')
  end
  return instances_seen
end
local function forget_instances() instances_seen = nil end

-- stamp gives a decision its place in the cluster's order, and is taken
-- whenever an online list changes. Several instances store what they
-- decide through their own writers, so a leave and an immediate rejoin
-- may reach the database in either order; the stamps let it keep the
-- later (models.PresenceMark). They are microseconds of Redis's clock,
-- kept strictly rising: a Redis that lost its data goes on above the
-- stamps already stored. (Below 2^53, so exact in Lua's numbers.)
local stamp_last
local function stamp()
  if not stamp_last then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    stamp_last = math.max(now - 1, tonumber(redis.call('GET', P .. 'stamp') or '0'))
  end
  stamp_last = stamp_last + 1
  local s = string.format('%.0f', stamp_last)
  redis.call('SET', P .. 'stamp', s)
  return s
end

-- total counts the open streams of f ("room\nuid") over every instance.
local function total(f)
  local n = 0
  for _, inst in ipairs(instances()) do
    local c = redis.call('HGET', P .. 'streams:' .. inst, f)
    if c then n = n + tonumber(c) end
  end
  return n
end

-- settle decides what the streams of f now mean. A user with streams who
-- is not online joins: settle returns their name and the join's stamp. A user online with no
-- stream left gets a leave due at deadline (unless one is already due);
-- one with streams again has it cancelled (a reload inside the grace).
-- A caller that has just counted a stream of f in says so (counted: no
-- need to add up the instances), and gives the user's name, which a join
-- then records; without it a join takes the name recorded before.
local function settle(f, deadline, name, counted)
  local room, uid = split(f)
  local online = P .. 'online:' .. room
  if counted or total(f) > 0 then
    redis.call('ZREM', P .. 'leaving', f)
    if redis.call('HEXISTS', online, uid) == 0 then
      if name then
        redis.call('HSET', P .. 'names', uid, name)
      else
        name = redis.call('HGET', P .. 'names', uid) or uid
      end
      redis.call('HSET', online, uid, name)
      redis.call('SADD', P .. 'rooms', room)
      return name, stamp()
    end
  elseif redis.call('HEXISTS', online, uid) == 1 then
    redis.call('ZADD', P .. 'leaving', 'NX', deadline, f)
  end
  return false
end
`

// setStreamsScript records a batch of changes to this instance's streams,
// deciding for each in turn. ARGV: P, origin, grace in ms, the epoch the
// instance knows, then room, uid, name, count, list for each change: this
// instance now holds count streams of the user in the room, and list is
// 1 when the change wants who is online there afterwards. Returns
// {heartbeat present (0/1), then for each change the joined name and the
// join's stamp, or "" and "", then for each room some change wants: room, n, and the n names online
// there (unsorted)}, or {-1} without deciding anything when the epoch
// differs: Redis lost its data, and deciding on what is left would
// announce users who never left as joining.
var setStreamsScript = redis.NewScript(presenceLuaPrelude + `
if redis.call('GET', P .. 'epoch') ~= ARGV[4] then
  return {-1}
end
local origin, grace = ARGV[2], tonumber(ARGV[3])
local key = P .. 'streams:' .. origin
local deadline = now_ms() + grace
redis.call('SADD', P .. 'instances', origin)
local out = {redis.call('EXISTS', P .. 'alive:' .. origin)}
local rooms, seen = {}, {}
for i = 5, #ARGV, 5 do
  local room, uid, name, count = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local f = room .. '\n' .. uid
  local joined, s
  if count > 0 then
    redis.call('HSET', key, f, count)
    joined, s = settle(f, deadline, name, true)
  else
    redis.call('HDEL', key, f)
    joined, s = settle(f, deadline)
  end
  table.insert(out, joined or '')
  table.insert(out, s or '')
  if ARGV[i + 4] == '1' and not seen[room] then
    seen[room] = true
    table.insert(rooms, room)
  end
end
for _, room in ipairs(rooms) do
  local names = redis.call('HVALS', P .. 'online:' .. room)
  table.insert(out, room)
  table.insert(out, #names)
  for _, name in ipairs(names) do table.insert(out, name) end
end
return out
`)

// syncScript replaces this instance's whole record with what it really
// holds (after an outage, or after siblings reaped it), and decides for
// every pair that changed. ARGV: P, origin, grace in ms, hold in ms, the
// number of claims, room, uid, name for each claim, then room, uid, name,
// count for each pair held. Returns the joins as flat room, uid, name,
// stamp quadruples.
//
// hold is 0 but after Redis lost its data: then the record is rebuilt
// without announcing. The claims are the pairs the instance knew online
// before; they go to P..known, and cancel any join held for them. A pair
// held now that is neither online nor known gets a join held until hold
// from now, for the sweep to announce unless a sibling claims it first.
// A claimed pair that no instance holds is online again, with its leave
// due hold from now: the user left during the outage, unless a sibling
// that has not rebuilt yet still holds it, and then its rebuild cancels
// the leave (settle).
var syncScript = redis.NewScript(presenceLuaPrelude + `
local origin, grace, hold = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local deadline = now + grace
local key = P .. 'streams:' .. origin
local known = P .. 'known'
redis.call('SADD', P .. 'instances', origin)
local claimed = {}
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local f = ARGV[i] .. '\n' .. ARGV[i + 1]
  redis.call('SADD', known, f)
  redis.call('ZREM', P .. 'joining', f)
  table.insert(claimed, {f, ARGV[i + 1], ARGV[i + 2]})
  i = i + 3
end
if hold > 0 then
  -- Outlives the joins held by this rebuild and the siblings'.
  redis.call('PEXPIRE', known, 3 * hold)
end
local changed, seen = {}, {}
for _, f in ipairs(redis.call('HKEYS', key)) do
  seen[f] = true
  table.insert(changed, f)
end
redis.call('DEL', key)
for j = i, #ARGV, 4 do
  local f = ARGV[j] .. '\n' .. ARGV[j + 1]
  redis.call('HSET', P .. 'names', ARGV[j + 1], ARGV[j + 2])
  redis.call('HSET', key, f, ARGV[j + 3])
  if not seen[f] then
    seen[f] = true
    table.insert(changed, f)
  end
end
table.sort(changed)
local joins = {}
for _, f in ipairs(changed) do
  if hold > 0 then
    local room, uid = split(f)
    if total(f) > 0 and redis.call('HEXISTS', P .. 'online:' .. room, uid) == 0
        and redis.call('SISMEMBER', known, f) == 0 then
      redis.call('ZADD', P .. 'joining', 'NX', now + hold, f)
    end
    settle(f, deadline) -- quiet: held above, or online all along
  else
    local name, s = settle(f, deadline)
    if name then
      local room, uid = split(f)
      table.insert(joins, room)
      table.insert(joins, uid)
      table.insert(joins, name)
      table.insert(joins, s)
    end
  end
end
for _, c in ipairs(claimed) do
  local f, uid, name = c[1], c[2], c[3]
  if total(f) == 0 then
    local room = split(f)
    redis.call('HSET', P .. 'names', uid, name)
    if redis.call('HSETNX', P .. 'online:' .. room, uid, name) == 1 then
      stamp()
    end
    redis.call('SADD', P .. 'rooms', room)
    redis.call('ZADD', P .. 'leaving', 'NX', now + hold, f)
  end
end
return joins
`)

// beatScript renews this instance's heartbeat. ARGV: P, origin, TTL in
// ms, a fresh epoch to set if Redis has none. Returns {whether the
// heartbeat was still there (0/1), the epoch}.
var beatScript = redis.NewScript(presenceLuaPrelude + `
local alive = P .. 'alive:' .. ARGV[2]
local had = redis.call('EXISTS', alive)
redis.call('SET', alive, '1', 'PX', ARGV[3])
redis.call('SADD', P .. 'instances', ARGV[2])
local epoch = redis.call('GET', P .. 'epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', P .. 'epoch', epoch)
end
return {had, epoch}
`)

// reapScript removes instances and their streams; leaves fall due a grace
// from now for users with no stream left anywhere. ARGV: P, origin, grace
// in ms, mode: "dead" reaps every other instance whose heartbeat has
// expired, "self" removes origin (a clean stop). Returns the reaped.
var reapScript = redis.NewScript(presenceLuaPrelude + `
local self, grace, mode = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local deadline = now_ms() + grace
local reaped = {}
local function reap(inst)
  local key = P .. 'streams:' .. inst
  local fields = redis.call('HKEYS', key)
  redis.call('DEL', key, P .. 'alive:' .. inst)
  redis.call('SREM', P .. 'instances', inst)
  forget_instances()
  for _, f in ipairs(fields) do settle(f, deadline) end
  table.insert(reaped, inst)
end
if mode == 'self' then
  reap(self)
else
  for _, inst in ipairs(redis.call('SMEMBERS', P .. 'instances')) do
    if inst ~= self and redis.call('EXISTS', P .. 'alive:' .. inst) == 0 then
      reap(inst)
    end
  end
end
return reaped
`)

// sweepScript decides the joins held by a rebuild (see syncScript) and
// the leaves that are due, oldest first. A leave whose join is still held
// decides the join first, so the room hears of both, in order. ARGV: P,
// the most of each to decide. Returns flat quintuples: "+" for a join or
// "-" for a leave, room, uid, name, stamp.
var sweepScript = redis.NewScript(presenceLuaPrelude + `
local now, limit = now_ms(), tonumber(ARGV[2])
local out = {}
local function emit(kind, f, name)
  local room, uid = split(f)
  table.insert(out, kind)
  table.insert(out, room)
  table.insert(out, uid)
  table.insert(out, name)
  table.insert(out, stamp())
end
-- held takes f's held join: true when it is to be announced.
local function held(f)
  if redis.call('ZREM', P .. 'joining', f) == 0 then return false end
  return redis.call('SISMEMBER', P .. 'known', f) == 0
end
for _, f in ipairs(redis.call('ZRANGEBYSCORE', P .. 'joining', '-inf', now, 'LIMIT', 0, limit)) do
  if held(f) then
    local room, uid = split(f)
    local name = redis.call('HGET', P .. 'online:' .. room, uid)
    if name then emit('+', f, name) end
  end
end
for _, f in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leaving', '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', P .. 'leaving', f)
  if total(f) == 0 then
    local room, uid = split(f)
    local online = P .. 'online:' .. room
    local name = redis.call('HGET', online, uid)
    if name then
      if held(f) then emit('+', f, name) end
      redis.call('HDEL', online, uid)
      if redis.call('HLEN', online) == 0 then
        redis.call('SREM', P .. 'rooms', room)
      end
      emit('-', f, name)
    end
  end
end
return out
`)

// roomsScript lists the rooms with someone online and how many, in one
// consistent read. ARGV: P. Returns flat room, count pairs.
var roomsScript = redis.NewScript(presenceLuaPrelude + `
local out = {}
for _, room in ipairs(redis.call('SMEMBERS', P .. 'rooms')) do
  local n = redis.call('HLEN', P .. 'online:' .. room)
  if n > 0 then
    table.insert(out, room)
    table.insert(out, n)
  end
end
return out
`)
