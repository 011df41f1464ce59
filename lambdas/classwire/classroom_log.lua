-- classwire's Redis data model, shared by every script (each script is this file + one entry point).
--
-- Keys of one classroom, all tagged {classroom} so they would share a slot under cluster mode:
--   cw:{c}:members   ZSET  connectionId -> expiry (ms); a live connection is never older than 2 h
--   cw:{c}:info      HASH  connectionId -> {"userId","role","name","connectedAt"} (JSON)
--   cw:{c}:users     HASH  userId -> number of live connections
--   cw:{c}:meta      HASH  seq -> last assigned seq; eid -> that event's id
--   cw:{c}:log       STREAM id "<seq>-0", fields f (the event frame), e (eid), t (ms)
--   cw:{c}:idem:<userId>:<id>  STRING "<seq>" for idempotent resends
--   cw:{c}:rate:<connectionId> HASH  token bucket (tokens, ts)
--   cw:{c}:lag       HASH  connectionId -> "<seq>:<lagMs>:<ts>:<behind>", the member's last telemetry report
--                          (lagMs '' when the client had none; behind = the classroom's last seq - seq then)
-- Every event carries its own eid and its predecessor's (prev), so a client holding an event that a
-- failover lost sees a chain that does not link and resyncs instead of silently diverging.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t[1] .. t[2]
end

local function key(c, suffix) return 'cw:{' .. c .. '}:' .. suffix end

local function json_str(s) return cjson.encode(s) end

-- Appends one persistent event; returns its frame. `head` is the already-encoded
-- "from","role","name" part; data is raw JSON text.
local function append(c, id_json, head, event, data, nonce, ts, clock, max_events, max_age_ms)
  local meta, log = key(c, 'meta'), key(c, 'log')
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local prev = redis.call('HGET', meta, 'eid') or ''
  local eid = string.sub(redis.sha1hex(c .. ':' .. seq .. ':' .. clock .. ':' .. nonce), 1, 16)
  local frame = '{"type":"event","classroom":' .. json_str(c) .. ',"seq":' .. seq ..
    ',"eid":"' .. eid .. '","prev":"' .. prev .. '","id":' .. id_json .. ',' .. head ..
    ',"event":' .. json_str(event) .. ',"data":' .. data .. ',"ts":' .. ts .. '}'
  redis.call('XADD', log, 'MAXLEN', max_events, seq .. '-0', 'f', frame, 'e', eid, 't', ts)
  redis.call('HSET', meta, 'eid', eid)
  -- Age-based retention: drop a bounded batch of expired entries per append (amortised).
  local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 64)
  local cutoff = ts - max_age_ms
  local keep_from = nil
  for _, entry in ipairs(oldest) do
    local fields = entry[2]
    local t = 0
    for i = 1, #fields, 2 do if fields[i] == 't' then t = tonumber(fields[i + 1]) end end
    if t >= cutoff then keep_from = entry[1]; break end
  end
  if keep_from == nil and #oldest > 0 then
    -- The whole batch expired: keep everything after it (later appends continue the trim).
    local last_seq = tonumber(string.match(oldest[#oldest][1], '^(%d+)'))
    keep_from = (last_seq + 1) .. '-0'
  end
  if keep_from then redis.call('XTRIM', log, 'MINID', keep_from) end
  -- A classroom idle for longer than the retention has nothing left to keep.
  redis.call('PEXPIRE', log, max_age_ms)
  redis.call('PEXPIRE', meta, max_age_ms)
  return frame, seq
end

local function member_head(info_json)
  local info = cjson.decode(info_json)
  return '"from":' .. json_str(info.userId) .. ',"role":' .. json_str(info.role) ..
    ',"name":' .. json_str(info.name or ''), info.userId
end

-- Removes a connection and appends its leave event; returns the frame or nil if it was not a member.
local function remove_member(c, conn, nonce, ts, clock, max_events, max_age_ms)
  local info_json = redis.call('HGET', key(c, 'info'), conn)
  redis.call('ZREM', key(c, 'members'), conn)
  redis.call('DEL', key(c, 'rate:' .. conn))
  redis.call('HDEL', key(c, 'lag'), conn)
  if not info_json then return nil end
  redis.call('HDEL', key(c, 'info'), conn)
  local head, user = member_head(info_json)
  local left = redis.call('HINCRBY', key(c, 'users'), user, -1)
  if left <= 0 then redis.call('HDEL', key(c, 'users'), user); left = 0 end
  local frame = append(c, 'null', head, 'leave', '{"connections":' .. left .. '}', nonce .. conn,
    ts, clock, max_events, max_age_ms)
  return frame
end

-- Connections past their expiry vanished without $disconnect: prune them with a leave event.
local function prune_expired(c, frames, nonce, ts, clock, max_events, max_age_ms)
  local expired = redis.call('ZRANGEBYSCORE', key(c, 'members'), '-inf', ts, 'LIMIT', 0, 32)
  for _, conn in ipairs(expired) do
    local frame = remove_member(c, conn, nonce, ts, clock, max_events, max_age_ms)
    if frame then table.insert(frames, frame) end
  end
end

local function members(c)
  return redis.call('ZRANGE', key(c, 'members'), 0, -1)
end

local function limits(argv_from)
  return tonumber(ARGV[argv_from]), tonumber(ARGV[argv_from + 1])
end

--@script join
-- ARGV: classroom, connectionId, info JSON, userId, ttl ms, nonce, max_events, max_age_ms
local c, conn, info_json, user, ttl, nonce = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local max_events, max_age_ms = limits(7)
local ts, clock = now_ms()
local frames = {}
prune_expired(c, frames, nonce, ts, clock, max_events, max_age_ms)
if not redis.call('ZSCORE', key(c, 'members'), conn) then
  redis.call('ZADD', key(c, 'members'), ts + ttl, conn)
  redis.call('HSET', key(c, 'info'), conn, info_json)
  local count = redis.call('HINCRBY', key(c, 'users'), user, 1)
  for _, k in ipairs({'members', 'info', 'users'}) do redis.call('PEXPIRE', key(c, k), ttl) end
  local head = member_head(info_json)
  table.insert(frames, (append(c, 'null', head, 'join', '{"connections":' .. count .. '}', nonce,
    ts, clock, max_events, max_age_ms)))
end
return {frames, members(c)}

--@script leave
-- ARGV: classroom, nonce, max_events, max_age_ms, ttl ms, grace ms, connectionId...
-- With a grace (pruning after a 410), a connection that joined less than `grace` ago stays: its $connect
-- may still be running, and a connection is not open, so a post to it fails as gone, until that returns.
local c, nonce = ARGV[1], ARGV[2]
local max_events, max_age_ms = limits(3)
local ttl, grace = tonumber(ARGV[5]), tonumber(ARGV[6])
local ts, clock = now_ms()
local frames = {}
for i = 7, #ARGV do
  local expiry = tonumber(redis.call('ZSCORE', key(c, 'members'), ARGV[i]) or 0)
  if grace == 0 or expiry - ttl <= ts - grace then
    local frame = remove_member(c, ARGV[i], nonce, ts, clock, max_events, max_age_ms)
    if frame then table.insert(frames, frame) end
  end
end
prune_expired(c, frames, nonce, ts, clock, max_events, max_age_ms)
return {frames, members(c)}

--@script publish
-- ARGV: classroom, connectionId, userId, id, id JSON, event, data JSON, persistent (1/0),
--       rate per second, burst, idempotency ttl s, sender head, nonce, max_events, max_age_ms
local c, conn, user, id, id_json, event, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local persistent, rate, burst, idem_ttl = ARGV[8] == '1', tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
local head, nonce = ARGV[12], ARGV[13]
local max_events, max_age_ms = limits(14)
local ts, clock = now_ms()
local members_key = key(c, 'members')
local score = redis.call('ZSCORE', members_key, conn)
if not score or tonumber(score) <= ts then return {'not_member'} end
local idem = key(c, 'idem:' .. user .. ':' .. id)
if persistent then
  local seen = redis.call('GET', idem)
  if seen then
    local entry = redis.call('XRANGE', key(c, 'log'), seen .. '-0', seen .. '-0')
    local frame = ''
    if #entry > 0 then frame = entry[1][2][2] end
    return {'duplicate', tonumber(seen), frame}
  end
end
-- Token bucket per connection: refills at `rate` per second up to `burst`.
local bucket = key(c, 'rate:' .. conn)
local state = redis.call('HMGET', bucket, 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or ts
tokens = math.min(burst, tokens + (ts - last) * rate / 1000)
if tokens < 1 then
  return {'rate_limited', math.ceil((1 - tokens) * 1000 / rate)}
end
redis.call('HSET', bucket, 'tokens', tostring(tokens - 1), 'ts', ts)
redis.call('PEXPIRE', bucket, math.ceil(burst * 1000 / rate) + 1000)
local frames = {}
prune_expired(c, frames, nonce, ts, clock, max_events, max_age_ms)
local seq = 0
if persistent then
  local frame
  frame, seq = append(c, id_json, head, event, data, nonce, ts, clock, max_events, max_age_ms)
  redis.call('SET', idem, seq, 'EX', idem_ttl)
  table.insert(frames, frame)
end
return {'ok', seq, frames, members(c), ts}

--@script sync
-- ARGV: classroom, since, since eid ('' when unknown), limit, byte budget
local c, since, since_eid, limit, budget = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local log = key(c, 'log')
local last = tonumber(redis.call('HGET', key(c, 'meta'), 'seq') or '0')
local head_entry = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
local first = last + 1
if #head_entry > 0 then first = tonumber(string.match(head_entry[1][1], '^(%d+)')) end
local reset = false
if since > last or since < first - 1 then
  reset = true  -- the log restarted (failover, expiry) or dropped events the client has not seen
elseif since >= first and since_eid ~= '' then
  local at = redis.call('XRANGE', log, since .. '-0', since .. '-0')
  if #at == 0 or at[1][2][4] ~= since_eid then reset = true end  -- same seq, different event
end
local start = since + 1
if reset then start = first end
local entries = redis.call('XRANGE', log, start .. '-0', '+', 'COUNT', limit + 1)
local frames, used, included = {}, 0, (reset and last or since)
local more = false
for i, entry in ipairs(entries) do
  local frame = entry[2][2]
  if i > limit or (#frames > 0 and used + #frame + 1 > budget) then more = true; break end
  table.insert(frames, frame)
  used = used + #frame + 1
  included = tonumber(string.match(entry[1], '^(%d+)'))
end
if reset and #frames == 0 then included = last end
return {reset and 1 or 0, included, more and 1 or 0, frames}

--@script roster
-- ARGV: classroom. Returns the server time, then the info JSON and the telemetry of every live connection.
local c = ARGV[1]
local ts = now_ms()
local live = redis.call('ZRANGEBYSCORE', key(c, 'members'), '(' .. ts, '+inf')
if #live == 0 then return {ts, {}, {}} end
return {ts, redis.call('HMGET', key(c, 'info'), unpack(live)), redis.call('HMGET', key(c, 'lag'), unpack(live))}

--@script report
-- ARGV: classroom, connectionId, seq, lagMs ('' when unknown), ttl ms.
-- Records a member's telemetry (piggybacked on its ping); returns {1, last seq} or {0, last seq} for a
-- connection that is no longer a member (nothing recorded, so a pruned connection leaves no trace).
local c, conn, seq, lag, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local ts = now_ms()
local last = tonumber(redis.call('HGET', key(c, 'meta'), 'seq') or '0')
local score = redis.call('ZSCORE', key(c, 'members'), conn)
if not score or tonumber(score) <= ts then return {0, last} end
-- A client ahead of the log (it holds events a failover lost) is not behind; its next sync resets it.
local behind = math.max(0, last - seq)
redis.call('HSET', key(c, 'lag'), conn, ARGV[3] .. ':' .. lag .. ':' .. string.format('%d:%d', ts, behind))
redis.call('PEXPIRE', key(c, 'lag'), ttl)
return {1, last}
