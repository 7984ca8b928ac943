-- Shared by the tracker scripts. KEYS[1] = the event list ([p:]tracker:<id>),
-- KEYS[2] = the epoch ([p:]tracker_epoch:<id>), KEYS[3] = the epoch counter
-- ([p:]tracker_epoch_seq). ARGV[1] = TTL in seconds, 0 for none.

-- RPUSH in chunks: unpack() of thousands of values would overflow Lua's C stack.
local function push_all(first)
  local n = #ARGV
  local i = first
  while i <= n do
    local j = math.min(i + 999, n)
    redis.call('RPUSH', KEYS[1], unpack(ARGV, i, j))
    i = j + 1
  end
end

-- A fresh epoch, unique across deletes and re-creations of the same id.
local function new_epoch()
  local epoch = redis.call('INCR', KEYS[3])
  redis.call('SET', KEYS[2], epoch)
  return epoch
end

-- record_exp: every key of the conversation expires together, refreshed on each write.
local function touch()
  local ttl = tonumber(ARGV[1])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[1], ttl)
    redis.call('EXPIRE', KEYS[2], ttl)
  end
end

local function log_type()
  local t = redis.call('TYPE', KEYS[1])['ok']
  if t ~= 'list' and t ~= 'none' and t ~= 'string' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. t .. ', not a tracker')
  end
  return t
end
