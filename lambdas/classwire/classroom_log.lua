-- classwire's Redis data model, shared by every script (each script is this file + one entry point).
--
-- Keys of one classroom, all tagged {classroom} so they would share a slot under cluster mode:
--   cw:{c}:members   ZSET  connectionId -> expiry (ms); a live connection is never older than 2 h
--   cw:{c}:info      HASH  connectionId -> {"userId","role","name","connectedAt"} (JSON)
--   cw:{c}:users     HASH  userId -> number of live connections
--   cw:{c}:meta      HASH  seq -> last assigned seq; eid -> that event's id; epoch -> this log's incarnation;
--                          bytes -> frame bytes in the log; board -> seq of the last event that starts a new
--                          board (`clear`), where a member's first sync starts
--   cw:{c}:log       STREAM id "<seq>-0", fields f (the event frame), e (eid), t (ms)
--   cw:{c}:ended     STRING "<seq>:<epoch>" of the `end` that closed the class, until a teacher reopens it
--   cw:{c}:idem      HASH  "<#userId>:<userId>:<id>" -> "<seq>:<epoch>" for idempotent resends (the length
--                          prefix makes it injective: user "a:b" with id "c" and user "a" with id "b:c" differ);
--                          "j:<connectionId>" / "l:<connectionId>" for the server's own join and leave, so
--                          a retried join or leave returns its event instead of nothing
--   cw:{c}:idem_at   ZSET  the same field -> when it was written (ms); records past the window are dropped.
--                          Both are written by every send, so under memory pressure they stay warm.
--   cw:{c}:send:<userId> / cw:{c}:read:<userId> / cw:{c}:join:<userId>  HASH  token buckets (tokens, ts) per
--                          user: `send`, every other action, and $connect. They outlive the user's
--                          connections, so reconnecting does not refill them.
--   cw:{c}:lag       HASH  connectionId -> "<seq>:<lagMs>:<ts>:<behind>", the member's last telemetry report
--                          (lagMs '' when the client had none; behind = the classroom's last seq - seq then)
--   cw:{c}:batched   SET   connections that joined with batch=1 and take `events` frames
--   cw:{c}:flusher   STRING the lease of the one invocation posting this classroom's events (PX: a dead one's
--                          lease runs out); meta's `flushed` is the last seq a round finished posting
--   cw:{c}:relay     LIST  "<sender connectionId> <frame>" of volatile events waiting for the next round
--   cw:{c}:away      ZSET  userId -> when its leave is announced (ms): its last connection went, and a
--                          connection of it within the grace announces nothing (a reconnect)
--   cw:{c}:away_info HASH  userId -> the info JSON of its last connection, for that leave
--   cw:{c}:teachers  SET   connections of teachers (the ones `presence` frames go to)
--   cw:{c}:crowd     STRING present while the classroom is crowded (see below)
--   cw:{c}:presence  LIST  students' joins and leaves of a crowded classroom waiting for the next round
-- Presence is per user: a join is announced when a user's first connection arrives (not within the grace of
-- its last leave), a leave when its last connection has been gone for the grace. A classroom whose
-- occupancy (users present, or whose leave is still to be announced) passes `live_max` is crowded until it
-- falls to 3/4 of it:
-- students' joins and leaves then go to the teachers' connections only, in `presence` frames, and leave the
-- log (so a class start costs O(N) deliveries, not O(N^2)). The join or leave that crosses either way is
-- logged, and every logged one says whether the classroom is crowded, so members know when their roster
-- from the log stops (and starts again) being complete.
-- Fan-out: whoever appends while nobody holds the lease takes it and posts every event after `flushed`; events
-- appended while it posts go out together in its next round (`settle`, which also hands the lease back once
-- nothing is left). The lease and the append are in the same scripts, so an event is either seen by the
-- flusher's next `settle` or finds the lease free and is posted by its own invocation. A flusher that dies
-- leaves `flushed` behind: the next script that finds the lease free (a send, join, leave or telemetry
-- report) posts from there again, so a round cut short is posted twice rather than never.
-- Every event carries its own eid, its predecessor's (prev) and the log's epoch, so a client holding an
-- event that a failover lost sees a chain that does not link, and one whose log restarted (new epoch,
-- seq 1 again) sees another epoch; either resyncs instead of silently diverging.
-- Every key has a TTL, and the cache evicts the least recently used keys under memory pressure (README,
-- "Limits"): an evicted meta starts a new epoch, so a lost log is announced by `reset`.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t[1] .. t[2]
end

local function key(c, suffix) return 'cw:{' .. c .. '}:' .. suffix end

-- Presence settings (set by fanout_at, which every script that may announce reads first): a user's leave is
-- announced `grace_ms` after its last connection went; above `live_max` users the classroom is crowded.
local presence = {grace_ms = 0, live_max = 0}

local function json_str(s) return cjson.encode(s) end

-- At most this many entries are trimmed per append (a lowered limit catches up over later appends).
local MAX_TRIM_BATCHES = 8
-- A sync reads the log this many entries at a time, so its work is bounded by the page's byte budget,
-- not by its `limit` (a thousand 16 KB frames read to send two would stall Redis for everyone).
local SYNC_CHUNK = 8
-- Idempotency records past the window dropped per send (amortised, like the trim).
local MAX_IDEM_DROPS = 32

-- Retention arguments: max events, max age (ms), max frame bytes, idempotency window (ms).
local function retention_at(i)
  return {events = tonumber(ARGV[i]), age_ms = tonumber(ARGV[i + 1]), bytes = tonumber(ARGV[i + 2]),
    window_ms = tonumber(ARGV[i + 3])}
end

-- Token bucket of one user and kind: refills at `rate` per second up to `burst`. A refused frame costs a
-- token too, down to -burst: a client that honours retryAfterMs never gets near it, one that keeps flooding
-- does. Returns 0 (admitted), the ms to wait, or -1 (flooding: close the connection).
local function admit(c, user, kind, rate, burst, ts)
  local bucket = key(c, kind .. ':' .. user)
  local state = redis.call('HMGET', bucket, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or burst
  local last = tonumber(state[2]) or ts
  tokens = math.min(burst, tokens + math.max(0, ts - last) * rate / 1000)
  local verdict = 0
  if tokens < 1 then
    verdict = math.ceil((2 - tokens) * 1000 / rate)
    if tokens - 1 <= -burst then verdict = -1 end
  end
  redis.call('HSET', bucket, 'tokens', tostring(math.max(-burst, tokens - 1)), 'ts', ts)
  redis.call('PEXPIRE', bucket, math.ceil(2 * burst * 1000 / rate) + 1000)
  return verdict
end

-- Drops the oldest entries while the log is over its count, its byte budget or its age.
local function trim(meta, log, ts, retention)
  local length = redis.call('XLEN', log)
  local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
  local cutoff = ts - retention.age_ms
  local start, last_dropped = '-', nil
  for _ = 1, MAX_TRIM_BATCHES do
    local batch = redis.call('XRANGE', log, start, '+', 'COUNT', 64)
    local kept = false
    for _, entry in ipairs(batch) do
      local fields = entry[2]  -- f, frame, e, eid, t, ms
      local over = length > retention.events or bytes > retention.bytes or tonumber(fields[6]) < cutoff
      if over and length > 1 then  -- the newest entry always stays
        length, bytes, last_dropped = length - 1, bytes - #fields[2], entry[1]
      else
        kept = true
        break
      end
    end
    if kept or #batch < 64 then break end
    start = '(' .. batch[#batch][1]
  end
  if last_dropped then
    redis.call('XTRIM', log, 'MINID', (tonumber(string.match(last_dropped, '^(%d+)')) + 1) .. '-0')
    redis.call('HSET', meta, 'bytes', bytes)
  end
end

-- Appends one persistent event; returns its frame, seq and the log's epoch. `head` is the already-encoded
-- "from","role","name" part; data is raw JSON text.
local function append(c, id_json, head, event, data, nonce, ts, clock, retention)
  local meta, log = key(c, 'meta'), key(c, 'log')
  local epoch, counted = unpack(redis.call('HMGET', meta, 'epoch', 'seq'))
  local logged = redis.call('EXISTS', log) == 1
  if not epoch or (counted and not logged) then
    epoch = string.sub(redis.sha1hex('epoch:' .. c .. ':' .. clock .. ':' .. nonce), 1, 16)
    if counted and logged then
      -- Written before logs had epochs: the same log, now named.
      redis.call('HSET', meta, 'epoch', epoch)
    else
      -- A log starting (again: expired, or its stream evicted, or a replica that never had it) is a new
      -- incarnation; what is left of an earlier one goes, so seq 1 can follow it.
      redis.call('DEL', log, meta)
      redis.call('HSET', meta, 'epoch', epoch)
    end
  end
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local prev = redis.call('HGET', meta, 'eid') or ''
  local eid = string.sub(redis.sha1hex(c .. ':' .. seq .. ':' .. clock .. ':' .. nonce), 1, 16)
  local frame = '{"type":"event","classroom":' .. json_str(c) .. ',"seq":' .. seq ..
    ',"eid":"' .. eid .. '","prev":"' .. prev .. '","epoch":"' .. epoch .. '","id":' .. id_json .. ',' ..
    head .. ',"event":' .. json_str(event) .. ',"data":' .. data .. ',"ts":' .. ts .. '}'
  redis.call('XADD', log, seq .. '-0', 'f', frame, 'e', eid, 't', ts)
  redis.call('HSET', meta, 'eid', eid)
  redis.call('HINCRBY', meta, 'bytes', #frame)
  trim(meta, log, ts, retention)
  -- A classroom idle for longer than the retention has nothing left to keep.
  redis.call('PEXPIRE', log, retention.age_ms)
  redis.call('PEXPIRE', meta, retention.age_ms)
  return frame, seq, epoch
end

-- Records what an append made of a request, for its repeats within the window.
local function remember(c, record, seq, epoch, ts, window_ms)
  local idem, idem_at = key(c, 'idem'), key(c, 'idem_at')
  redis.call('HSET', idem, record, seq .. ':' .. epoch)
  redis.call('ZADD', idem_at, ts, record)
  local expired = redis.call('ZRANGEBYSCORE', idem_at, '-inf', ts - window_ms, 'LIMIT', 0, MAX_IDEM_DROPS)
  if #expired > 0 then
    redis.call('HDEL', idem, unpack(expired))
    redis.call('ZREM', idem_at, unpack(expired))
  end
  redis.call('PEXPIRE', idem, window_ms)
  redis.call('PEXPIRE', idem_at, window_ms)
end

-- A request's earlier append: seq, epoch and its frame ('' once it left the log or its log restarted).
local function recall(c, record)
  local seen = redis.call('HGET', key(c, 'idem'), record)
  if not seen then return nil end
  local seq, epoch = string.match(seen, '^(%d+):(%x*)$')
  local frame = ''
  if epoch == redis.call('HGET', key(c, 'meta'), 'epoch') then
    local entry = redis.call('XRANGE', key(c, 'log'), seq .. '-0', seq .. '-0')
    if #entry > 0 then frame = entry[1][2][2] end
  end
  return seq, epoch, frame
end

local function member_head(info_json)
  local info = cjson.decode(info_json)
  return '"from":' .. json_str(info.userId) .. ',"role":' .. json_str(info.role) ..
    ',"name":' .. json_str(info.name or ''), info.userId
end

-- Students' joins and leaves of a crowded classroom wait here for a round (at most this many, this long:
-- they are best effort, and a teacher's `who` is the roster that counts).
local PRESENCE_MAX = 4096
local PRESENCE_TTL_MS = 60000
-- A round's `presence` frame holds at most this many bytes of changes (the rest wait for the next round).
local PRESENCE_ROUND_BYTES = 24 * 1024

-- Users present, or gone with their leave not announced yet (within the grace, or due and not yet swept).
local function occupancy(c)
  return redis.call('HLEN', key(c, 'users')) + redis.call('ZCARD', key(c, 'away'))
end

local function crowded(c) return redis.call('EXISTS', key(c, 'crowd')) end

-- Announces a user's join or leave ('{"connections":n' .. extra is the start of its data): in the log, or,
-- for a student of a crowded classroom, to the teachers only. Returns the frame, seq and epoch if logged.
local function announce(c, info_json, event, data, nonce, ts, clock, retention)
  local users = occupancy(c)
  local was = crowded(c) == 1
  local crowded = users > presence.live_max or (was and users > math.floor(presence.live_max * 3 / 4))
  if crowded then
    redis.call('SET', key(c, 'crowd'), '1', 'PX', retention.age_ms)
  elseif was then
    redis.call('DEL', key(c, 'crowd'))
  end
  local info = cjson.decode(info_json)
  if crowded and was and info.role ~= 'teacher' then
    local list = key(c, 'presence')
    redis.call('RPUSH', list, '{"userId":' .. json_str(info.userId) .. ',"role":' .. json_str(info.role) ..
      ',"name":' .. json_str(info.name or '') .. ',"present":' .. (event == 'join' and 'true' or 'false') .. '}')
    redis.call('LTRIM', list, -PRESENCE_MAX, -1)
    redis.call('PEXPIRE', list, PRESENCE_TTL_MS)
    return nil
  end
  data = data .. ',"users":' .. users .. ',"crowded":' .. (crowded and 'true' or 'false') .. '}'
  return append(c, 'null', member_head(info_json), event, data, nonce, ts, clock, retention)
end

-- Removes a connection; when it was its user's last, announces the leave (after the grace, by sweep_away).
-- Returns the leave's frame if one was logged now.
local function remove_member(c, conn, nonce, ts, clock, retention)
  local info_json = redis.call('HGET', key(c, 'info'), conn)
  redis.call('ZREM', key(c, 'members'), conn)
  redis.call('HDEL', key(c, 'lag'), conn)
  redis.call('SREM', key(c, 'batched'), conn)
  redis.call('SREM', key(c, 'teachers'), conn)
  if not info_json then
    local _, _, frame = recall(c, 'l:' .. conn)  -- a repeat: its leave again, if it had one
    if frame and frame ~= '' then return frame end
    return nil
  end
  redis.call('HDEL', key(c, 'info'), conn)
  local user = cjson.decode(info_json).userId
  local left = redis.call('HINCRBY', key(c, 'users'), user, -1)
  if left > 0 then return nil end  -- the user is still here
  redis.call('HDEL', key(c, 'users'), user)
  if presence.grace_ms > 0 then  -- announced once the grace has passed without a reconnect
    redis.call('ZADD', key(c, 'away'), ts + presence.grace_ms, user)
    redis.call('HSET', key(c, 'away_info'), user, info_json)
    redis.call('PEXPIRE', key(c, 'away'), retention.age_ms)
    redis.call('PEXPIRE', key(c, 'away_info'), retention.age_ms)
    return nil
  end
  local frame, seq, epoch = announce(c, info_json, 'leave', '{"connections":0', nonce .. conn, ts, clock,
    retention)
  if frame then remember(c, 'l:' .. conn, seq, epoch, ts, retention.window_ms) end
  return frame
end

-- Leaves announced per script at most (a class end's catch up over the next scripts: every ping sweeps).
local SWEEP_MAX = 64

-- Announces the leaves whose grace has passed (users who did not come back). With nobody connected there is
-- nobody to tell: every waiting leave is dropped, and the classroom is no longer crowded, so the next class
-- neither hears of the last one's leaves nor counts them.
local function sweep_away(c, frames, nonce, ts, clock, retention)
  if redis.call('HLEN', key(c, 'users')) == 0 then
    redis.call('DEL', key(c, 'away'), key(c, 'away_info'), key(c, 'crowd'))
    return
  end
  local due = redis.call('ZRANGEBYSCORE', key(c, 'away'), '-inf', ts, 'LIMIT', 0, SWEEP_MAX)
  for _, user in ipairs(due) do
    local info_json = redis.call('HGET', key(c, 'away_info'), user)
    redis.call('ZREM', key(c, 'away'), user)
    redis.call('HDEL', key(c, 'away_info'), user)
    if info_json and not redis.call('HGET', key(c, 'users'), user) then
      local frame = announce(c, info_json, 'leave', '{"connections":0', nonce .. 'away' .. user, ts, clock,
        retention)
      if frame then table.insert(frames, frame) end
    end
  end
end

-- Connections past their expiry vanished without $disconnect: prune them with a leave event.
local function prune_expired(c, frames, nonce, ts, clock, retention)
  local expired = redis.call('ZRANGEBYSCORE', key(c, 'members'), '-inf', ts, 'LIMIT', 0, 32)
  for _, conn in ipairs(expired) do
    local frame = remove_member(c, conn, nonce, ts, clock, retention)
    if frame then table.insert(frames, frame) end
  end
  sweep_away(c, frames, nonce, ts, clock, retention)
end

local function members(c)
  return redis.call('ZRANGE', key(c, 'members'), 0, -1)
end

-- HMGET over many fields in chunks: Lua's unpack() fails past a few thousand arguments.
local function hmget_all(hash, fields)
  local values = {}
  for i = 1, #fields, 500 do
    local chunk = redis.call('HMGET', hash, unpack(fields, i, math.min(i + 499, #fields)))
    for _, value in ipairs(chunk) do table.insert(values, value) end
  end
  return values
end

-- Whether a connection is a live member; reads its registry entries too, so a classroom in session keeps
-- them recently used and memory pressure evicts idle classrooms' keys first.
local function is_member(c, conn, user, ts)
  local known = redis.call('HEXISTS', key(c, 'info'), conn) == 1  -- without it its leave would be lost
  redis.call('HEXISTS', key(c, 'users'), user)
  local score = redis.call('ZSCORE', key(c, 'members'), conn)
  return known and score and tonumber(score) > ts
end

-- The `end` in force, if any: {seq, whether its log is still the current one}. An ended mark that outlived
-- its log (expired, evicted, restarted) no longer has an `end` any client can see.
local function ended_mark(c)
  local mark = redis.call('GET', key(c, 'ended'))
  if not mark then return nil end
  local seq, epoch = string.match(mark, '^(%d+):(%x*)$')
  return seq, epoch == redis.call('HGET', key(c, 'meta'), 'epoch')
end

local function last_seq_and_epoch(c)
  local meta = redis.call('HMGET', key(c, 'meta'), 'seq', 'epoch')
  return tonumber(meta[1] or '0'), meta[2] or ''
end

-- Volatile events waiting for a round, at most; the oldest go first (they are best effort, and a stale
-- cursor is worth nothing). A flusher that died leaves them to expire.
local RELAY_MAX = 256
local RELAY_TTL_MS = 5000
-- A round posts at most this many volatile events (the rest wait for the next round).
local RELAY_ROUND = 64
-- A flusher that finds more than this many events not posted (its predecessor died long ago) posts only the
-- newest: the members fill the older gap with `sync`, as they would after a lost post.
local BACKLOG_MAX = 256

-- Per member of `conns`, 1 when it takes `events` frames (chunked: unpack() fails past a few thousand).
local function batched_flags(c, conns)
  local flags = {}
  for i = 1, #conns, 500 do
    local chunk = redis.call('SMISMEMBER', key(c, 'batched'), unpack(conns, i, math.min(i + 499, #conns)))
    for _, flag in ipairs(chunk) do table.insert(flags, flag) end
  end
  return flags
end

-- The waiting students' joins and leaves as one `presence` frame for the teachers, or ''.
local function take_presence(c)
  local list = key(c, 'presence')
  local entries = redis.call('LRANGE', list, 0, 255)
  if #entries == 0 then return '' end
  local taken, bytes = {}, 0
  for _, entry in ipairs(entries) do
    if #taken > 0 and bytes + #entry > PRESENCE_ROUND_BYTES then break end
    table.insert(taken, entry)
    bytes = bytes + #entry + 1
  end
  redis.call('LTRIM', list, #taken, -1)
  return '{"type":"presence","classroom":' .. json_str(c) .. ',"users":' .. occupancy(c) ..
    ',"crowded":' .. (crowded(c) == 1 and 'true' or 'false') ..
    ',"changes":[' .. table.concat(taken, ',') .. ']}'
end

-- Takes (or renews) the fan-out lease and the next round: the events after `flushed` (at most `max_events`
-- and `max_bytes` of them, the first one always) and the waiting volatile events. Returns
-- {lease, epoch, upto (the last seq it posts), frames, relayed, closes (1: it posts the `end` in force),
-- presence (a `presence` frame for the teachers, or '')}, or
-- {''} when another invocation holds the lease or nothing is left to post (the lease is then handed back).
local function take_round(c, lease, lease_ms, max_events, max_bytes)
  if lease == '' then return {''} end  -- the caller posts nothing (a flusher pruning mid-round)
  local holder = redis.call('GET', key(c, 'flusher'))
  if holder and holder ~= lease then return {''} end
  local meta = key(c, 'meta')
  local last, epoch = last_seq_and_epoch(c)
  local flushed = tonumber(redis.call('HGET', meta, 'flushed') or '0')
  local from = math.max(math.min(flushed, last), last - BACKLOG_MAX)
  local end_seq, end_epoch = string.match(redis.call('GET', key(c, 'ended')) or '', '^(%d+):(%x*)$')
  end_seq = end_epoch == epoch and tonumber(end_seq) or nil
  -- The `end` in force is never skipped: the round that carries it closes the class.
  if end_seq and end_seq > flushed then from = math.min(from, end_seq - 1) end
  local frames, upto, bytes = {}, from, 0
  if last > from then
    local entries = redis.call('XRANGE', key(c, 'log'), (from + 1) .. '-0', '+', 'COUNT', max_events)
    for _, entry in ipairs(entries) do
      local frame = entry[2][2]
      if #frames > 0 and bytes + #frame > max_bytes then break end
      table.insert(frames, frame)
      bytes = bytes + #frame
      upto = tonumber(string.match(entry[1], '^(%d+)'))
    end
    if #frames == 0 then upto = last end  -- trimmed away: nothing of it is left to post
  end
  local relay = key(c, 'relay')
  local relayed = redis.call('LRANGE', relay, 0, RELAY_ROUND - 1)
  if #relayed > 0 then redis.call('LTRIM', relay, RELAY_ROUND, -1) end
  local changes = take_presence(c)
  if #frames == 0 and #relayed == 0 and changes == '' then
    if upto > flushed then redis.call('HSET', meta, 'flushed', upto) end
    if holder then redis.call('DEL', key(c, 'flusher')) end
    return {''}
  end
  redis.call('SET', key(c, 'flusher'), lease, 'PX', lease_ms)
  local closes = (end_seq and end_seq > from and end_seq <= upto) and 1 or 0
  return {lease, epoch, upto, frames, relayed, closes, changes}
end

-- A reply's last element: the round with the batched flags of `conns` (the members the reply names) and the
-- teachers' connections (when it has a `presence` frame for them), or {''}.
local function round_reply(c, round, conns)
  if round[1] == '' then return {''} end
  local teachers = round[7] ~= '' and redis.call('SMEMBERS', key(c, 'teachers')) or {}
  return {round[1], round[2], round[3], round[4], round[5], round[6], round[7], batched_flags(c, conns), teachers}
end

-- Fan-out arguments: lease, lease ms, max events and max bytes of a round, then the presence grace (ms) and
-- the most users of a classroom not crowded, which it sets for the script (every script that may announce
-- reads its fan-out arguments first).
local function fanout_at(i)
  presence.grace_ms, presence.live_max = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  return {lease = ARGV[i], lease_ms = tonumber(ARGV[i + 1]), events = tonumber(ARGV[i + 2]),
    bytes = tonumber(ARGV[i + 3])}
end

local function next_round(c, fanout, conns)
  return round_reply(c, take_round(c, fanout.lease, fanout.lease_ms, fanout.events, fanout.bytes), conns)
end

-- A script refused after it took the round once already (redis-py re-ran it after a lost reply, and the
-- rerun was refused): it hands the lease back, so the next script to find it free posts the round.
local function refuse(c, fanout, reply)
  if fanout.lease ~= '' and redis.call('GET', key(c, 'flusher')) == fanout.lease then
    redis.call('DEL', key(c, 'flusher'))
  end
  return reply
end

--@script join
-- ARGV: classroom, connectionId, info JSON, userId, role, reopen (1: a teacher reopening an ended class),
--       ttl ms, nonce, max connections per user, max connections per classroom, connect rate per second,
--       connect burst, max_events, max_age_ms, max_bytes, idempotency window ms, batch (1: takes `events`
--       frames), the fan-out arguments (fanout_at)
-- Returns {'ok', frames, members, round} or {'refused', reason, frames, members, round}: 'ended' (a
-- student, after `end`, until a teacher reopens the class), 'user_limit', 'classroom_full' or 'too_fast'
-- (the user's connects past their rate).
local c, conn, info_json, user, role = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local reopen, ttl, nonce = ARGV[6] == '1' and role == 'teacher', tonumber(ARGV[7]), ARGV[8]
local per_user, per_classroom = tonumber(ARGV[9]), tonumber(ARGV[10])
local connect_rate, connect_burst = tonumber(ARGV[11]), tonumber(ARGV[12])
local retention = retention_at(13)
local batch, fanout = ARGV[17] == '1', fanout_at(18)
local function refused(reason, frames)
  local conns = members(c)
  return {'refused', reason, frames, conns, next_round(c, fanout, conns)}
end
local ts, clock = now_ms()
local frames = {}
prune_expired(c, frames, nonce, ts, clock, retention)
if not redis.call('ZSCORE', key(c, 'members'), conn) then
  -- Every refusal is decided before this connection is written (a refusal still returns the pruned
  -- connections' leaves, for the caller to fan out).
  if admit(c, user, 'join', connect_rate, connect_burst, ts) ~= 0 then return refused('too_fast', frames) end
  local ended_seq, end_in_log = ended_mark(c)
  if ended_seq and role ~= 'teacher' then return refused('ended', frames) end
  if tonumber(redis.call('HGET', key(c, 'users'), user) or '0') >= per_user then
    return refused('user_limit', frames)
  end
  if redis.call('ZCARD', key(c, 'members')) >= per_classroom then return refused('classroom_full', frames) end
  redis.call('ZADD', key(c, 'members'), ts + ttl, conn)
  redis.call('HSET', key(c, 'info'), conn, info_json)
  if batch then redis.call('SADD', key(c, 'batched'), conn) end
  if role == 'teacher' then redis.call('SADD', key(c, 'teachers'), conn) end
  local count = redis.call('HINCRBY', key(c, 'users'), user, 1)
  for _, k in ipairs({'members', 'info', 'users', 'batched', 'teachers'}) do
    redis.call('PEXPIRE', key(c, k), ttl)
  end
  -- A connection of a user still here, or back within the grace of its last leave, announces nothing.
  local back = redis.call('ZREM', key(c, 'away'), user) == 1
  if back then redis.call('HDEL', key(c, 'away_info'), user) end
  local data = '{"connections":' .. count
  -- A teacher reopens explicitly, or by starting a log whose `end` is gone; the join says so, which is
  -- what the clients read as "not ended" (also when the mark itself was lost).
  local reopens = reopen or (ended_seq and not end_in_log)
  if reopens then
    redis.call('DEL', key(c, 'ended'))
    data = data .. ',"reopened":true'
  end
  if (count == 1 and not back) or reopens then
    local frame, seq, epoch = announce(c, info_json, 'join', data, nonce, ts, clock, retention)
    if frame then
      remember(c, 'j:' .. conn, seq, epoch, ts, retention.window_ms)
      table.insert(frames, frame)
    end
  end
else
  local _, _, frame = recall(c, 'j:' .. conn)  -- a repeat (its first reply was lost): its join again
  if frame and frame ~= '' then table.insert(frames, frame) end
end
local conns = members(c)
return {'ok', frames, conns, next_round(c, fanout, conns)}

--@script leave
-- ARGV: classroom, nonce, max_events, max_age_ms, max_bytes, idempotency window ms, ttl ms, grace ms,
--       the fan-out arguments (fanout_at), connectionId...
-- With a grace (pruning after a 410), a connection that joined less than `grace` ago stays: its $connect
-- may still be running, and a connection is not open, so a post to it fails as gone, until that returns.
-- Returns {frames, members, round}; a flusher pruning what its round found gone passes its own lease.
local c, nonce = ARGV[1], ARGV[2]
local retention = retention_at(3)
local ttl, grace = tonumber(ARGV[7]), tonumber(ARGV[8])
local fanout = fanout_at(9)
local ts, clock = now_ms()
local frames = {}
for i = 15, #ARGV do
  local expiry = tonumber(redis.call('ZSCORE', key(c, 'members'), ARGV[i]) or 0)
  if grace == 0 or expiry - ttl <= ts - grace then
    local frame = remove_member(c, ARGV[i], nonce, ts, clock, retention)
    if frame then table.insert(frames, frame) end
  end
end
prune_expired(c, frames, nonce, ts, clock, retention)
local conns = members(c)
return {frames, conns, next_round(c, fanout, conns)}

--@script publish
-- ARGV: classroom, connectionId, userId, role, id, id JSON, event, data JSON, persistent (1/0),
--       closes the class (1/0), rate per second, burst, sender head, nonce, ended ttl ms, max_events,
--       max_age_ms, max_bytes, idempotency window ms, the fan-out arguments (fanout_at), starts a new board
--       (1/0)
-- Returns {'ok', seq, frames, members, ts, round}, {'duplicate', seq, epoch, frame or '', members, still
-- ended by it (1/0), a round has posted it (1/0), round}, {'rate_limited', ms or -1}, {'not_member'} or
-- {'ended'}. A volatile event is
-- queued for the next round (its own, when this call takes the lease).
local c, conn, user, role, id, id_json = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local event, data, persistent, closes = ARGV[7], ARGV[8], ARGV[9] == '1', ARGV[10] == '1'
local rate, burst = tonumber(ARGV[11]), tonumber(ARGV[12])
local head, nonce, ended_ttl = ARGV[13], ARGV[14], tonumber(ARGV[15])
local retention = retention_at(16)
local fanout = fanout_at(20)
local starts_board = ARGV[26] == '1'
local ts, clock = now_ms()
if not is_member(c, conn, user, ts) then return refuse(c, fanout, {'not_member'}) end
-- Resends are charged too: answering one fans the event out again.
local wait = admit(c, user, 'send', rate, burst, ts)
if wait ~= 0 then return refuse(c, fanout, {'rate_limited', wait}) end
local record = #user .. ':' .. user .. ':' .. id
if persistent then
  local seq, epoch, frame = recall(c, record)
  if seq then
    local ended_by_it = redis.call('GET', key(c, 'ended')) == seq .. ':' .. epoch
    local meta = redis.call('HMGET', key(c, 'meta'), 'epoch', 'flushed')
    local posted = meta[1] == epoch and tonumber(seq) <= tonumber(meta[2] or '0')
    local conns = members(c)
    return {'duplicate', tonumber(seq), epoch, frame, conns, ended_by_it and 1 or 0, posted and 1 or 0,
      next_round(c, fanout, conns)}
  end
end
if role ~= 'teacher' and ended_mark(c) then return refuse(c, fanout, {'ended'}) end
local frames = {}
prune_expired(c, frames, nonce, ts, clock, retention)
local seq = 0
if persistent then
  local frame, epoch
  frame, seq, epoch = append(c, id_json, head, event, data, nonce, ts, clock, retention)
  remember(c, record, seq, epoch, ts, retention.window_ms)
  -- Recorded with the append, so the class is ended even if this invocation dies before its fan-out.
  if closes then redis.call('SET', key(c, 'ended'), seq .. ':' .. epoch, 'PX', ended_ttl) end
  if starts_board then redis.call('HSET', key(c, 'meta'), 'board', seq) end
  table.insert(frames, frame)
else
  local relay = key(c, 'relay')
  redis.call('RPUSH', relay, conn .. ' {"type":"event","classroom":' .. json_str(c) .. ',"id":' .. id_json ..
    ',' .. head .. ',"event":' .. json_str(event) .. ',"data":' .. data .. ',"ts":' .. ts .. '}')
  redis.call('LTRIM', relay, -RELAY_MAX, -1)
  redis.call('PEXPIRE', relay, RELAY_TTL_MS)
end
local conns = members(c)
return {'ok', seq, frames, conns, ts, next_round(c, fanout, conns)}

--@script settle
-- ARGV: classroom, epoch, upto, stop (1: hand the lease back, the rest is left to the next script that
--       finds it free), the fan-out arguments (fanout_at)
-- A flusher's round is posted (up to seq `upto` of `epoch`): records it, then returns {members, round} with
-- the next round (events appended meanwhile), or {{}, {''}} when the lease is handed back or was lost.
local c, epoch, upto, stop = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local fanout = fanout_at(5)
local meta = key(c, 'meta')
local _, current = last_seq_and_epoch(c)
-- Of another epoch (the log restarted meanwhile), the posted seqs say nothing about this log's.
if current ~= '' and epoch == current and upto > tonumber(redis.call('HGET', meta, 'flushed') or '0') then
  redis.call('HSET', meta, 'flushed', upto)
end
if stop then
  if redis.call('GET', key(c, 'flusher')) == fanout.lease then redis.call('DEL', key(c, 'flusher')) end
  return {{}, {''}}
end
local round = take_round(c, fanout.lease, fanout.lease_ms, fanout.events, fanout.bytes)
if round[1] == '' then return {{}, {''}} end
local conns = members(c)
return {conns, round_reply(c, round, conns)}

--@script sync
-- ARGV: classroom, connectionId, userId, since, since eid ('' when unknown), epoch ('' when unknown), limit,
--       byte budget, rate per second, burst
-- Returns {reset 1/0, last included seq, more 1/0, frames, epoch} or {'rate_limited', ms or -1}.
-- A first sync (since 0, no epoch: the member holds nothing) starts at the last event that started a new
-- board, or at the `end` in force if that came before it (so a late joiner sees the class is ended); it is
-- answered `reset` when that skips older events, which the member then never applies.
local c, conn, user, since, since_eid = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local want_epoch, limit, budget = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local ts = now_ms()
local wait = admit(c, user, 'read', tonumber(ARGV[9]), tonumber(ARGV[10]), ts)
if wait ~= 0 then return {'rate_limited', wait} end
local log = key(c, 'log')
local last, epoch = last_seq_and_epoch(c)
-- No counter: no log, or a stream whose counter was evicted (the next append restarts it). Nothing to send.
if last == 0 then return {since > 0 and 1 or 0, 0, 0, {}, epoch} end
local head_entry = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
local first = last + 1
if #head_entry > 0 then first = tonumber(string.match(head_entry[1][1], '^(%d+)')) end
local reset = false
if since > last or since < first - 1 or (want_epoch ~= '' and want_epoch ~= epoch) then
  reset = true  -- the log restarted (failover, expiry) or dropped events the client has not seen
elseif since_eid ~= '' and since >= first then
  local at = redis.call('XRANGE', log, since .. '-0', since .. '-0')
  if #at == 0 or at[1][2][4] ~= since_eid then reset = true end  -- same seq, different event
elseif since_eid ~= '' and since == first - 1 and #head_entry > 0 then
  -- The event at `since` is trimmed; the first retained one names it as its predecessor. (`prev` is the
  -- frame's first such member: what comes before it is server-written.)
  if string.match(head_entry[1][2][2], '"prev":"(%x*)"') ~= since_eid then reset = true end
end
local start_seq = reset and first or since + 1
if since == 0 and want_epoch == '' then
  local board = tonumber(redis.call('HGET', key(c, 'meta'), 'board') or '0')
  local end_seq, end_in_log = ended_mark(c)
  if end_seq and end_in_log and tonumber(end_seq) >= first then board = math.min(board, tonumber(end_seq)) end
  if board > first then start_seq, reset = board, true end
end
local start = start_seq .. '-0'
local frames, used, included = {}, 0, (reset and last or since)
local more, full = false, false
while not full do
  local chunk = redis.call('XRANGE', log, start, '+', 'COUNT', SYNC_CHUNK)
  for _, entry in ipairs(chunk) do
    local frame = entry[2][2]
    if #frames >= limit or (#frames > 0 and used + #frame + 1 > budget) then
      more, full = true, true
      break
    end
    table.insert(frames, frame)
    used = used + #frame + 1
    included = tonumber(string.match(entry[1], '^(%d+)'))
  end
  if #chunk < SYNC_CHUNK then break end
  start = '(' .. chunk[#chunk][1]
end
if reset and #frames == 0 then included = last end
return {reset and 1 or 0, included, more and 1 or 0, frames, epoch}

--@script roster
-- ARGV: classroom, connectionId, userId, rate per second, burst.
-- Returns the server time, then the info JSON and the telemetry of every live connection, whether the
-- classroom is crowded (1/0) and its occupancy, or {'rate_limited', ms or -1}.
local c, conn, user = ARGV[1], ARGV[2], ARGV[3]
local ts = now_ms()
local wait = admit(c, user, 'read', tonumber(ARGV[4]), tonumber(ARGV[5]), ts)
if wait ~= 0 then return {'rate_limited', wait} end
local live = redis.call('ZRANGEBYSCORE', key(c, 'members'), '(' .. ts, '+inf')
return {ts, hmget_all(key(c, 'info'), live), hmget_all(key(c, 'lag'), live), crowded(c), occupancy(c)}

--@script report
-- ARGV: classroom, connectionId, userId, seq, lagMs ('' when unknown), ttl ms, rate per second, burst,
--       the fan-out arguments (fanout_at), nonce, max_events, max_age_ms, max_bytes, idempotency window ms.
-- Records a member's telemetry (piggybacked on its ping); returns {last seq, epoch, members, round, users
-- (the occupancy), crowded (1/0)}, {'rate_limited', ms or -1}, or {'not_member'} (nothing recorded, so a
-- pruned connection leaves no trace).
-- The round is {''} unless events wait with nobody posting them (a flusher died, or handed back with some
-- left): then this call takes the lease and posts them, so every member's ping bounds how long that lasts.
local c, conn, user, seq, lag, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local ts, clock = now_ms()
local fanout = fanout_at(9)
local wait = admit(c, user, 'read', tonumber(ARGV[7]), tonumber(ARGV[8]), ts)
if wait ~= 0 then return refuse(c, fanout, {'rate_limited', wait}) end
if not is_member(c, conn, user, ts) then return refuse(c, fanout, {'not_member'}) end
local last, epoch = last_seq_and_epoch(c)
-- A client ahead of the log (it holds events a failover lost) is not behind; its pong's `last` tells it.
local behind = math.max(0, last - seq)
redis.call('HSET', key(c, 'lag'), conn, ARGV[4] .. ':' .. lag .. ':' .. string.format('%d:%d', ts, behind))
redis.call('PEXPIRE', key(c, 'lag'), ttl)
-- Leaves whose grace has passed are announced by the members' pings too (a quiet classroom has no other);
-- after `behind`, so the pinger is not told it is behind a leave its round has yet to post.
sweep_away(c, {}, ARGV[15], ts, clock, retention_at(16))
local users, is_crowded = occupancy(c), crowded(c)
local round = take_round(c, fanout.lease, fanout.lease_ms, fanout.events, fanout.bytes)
if round[1] == '' then return {last, epoch, {}, {''}, users, is_crowded} end
local conns = members(c)
return {last, epoch, conns, round_reply(c, round, conns), users, is_crowded}

--@script admit
-- ARGV: classroom, connectionId, userId, rate per second, burst, the fan-out arguments (fanout_at), nonce,
-- max_events, max_age_ms, max_bytes, idempotency window ms.
-- The rate check of a frame that needs nothing else (a bare ping, a refused frame): {1 member / 0 not a
-- member, members, round} or {'rate_limited', ms or -1}. Like a report, it announces leaves whose grace has
-- passed and posts events nobody is posting.
local c, conn, user = ARGV[1], ARGV[2], ARGV[3]
local ts, clock = now_ms()
local fanout = fanout_at(6)
local wait = admit(c, user, 'read', tonumber(ARGV[4]), tonumber(ARGV[5]), ts)
if wait ~= 0 then return refuse(c, fanout, {'rate_limited', wait}) end
-- A stranger takes no round: its frame is refused, and nobody would post it.
if not is_member(c, conn, user, ts) then return refuse(c, fanout, {0, {}, {''}}) end
local member = 1
sweep_away(c, {}, ARGV[12], ts, clock, retention_at(13))
local round = take_round(c, fanout.lease, fanout.lease_ms, fanout.events, fanout.bytes)
if round[1] == '' then return {member, {}, {''}} end
local conns = members(c)
return {member, conns, round_reply(c, round, conns)}
