-- acquire: KEYS[3] = the ticket counter ([p:]lock_seq); ARGV[2] = how long the caller waits
-- (ms), ARGV[3] = lease lifetime (ms). Enqueues a ticket and returns
-- {ticket, 1, lease ms} when it holds the lock now, else {ticket, 0, ms until the holder's
-- lease ends}.
local now = now_ms()
local wait = math.max(tonumber(ARGV[2]), 1)
local lifetime = math.max(tonumber(ARGV[3]), 1)
local ticket = tostring(redis.call('INCR', KEYS[3]))
if redis.call('LLEN', KEYS[1]) == 0 then
  -- Nobody holds or waits: the lock is ours at once. The same state as the path below
  -- (queue {ticket}, ticket holding until now + lifetime, both keys kept as long), in 7
  -- commands instead of 16: no waiting record, no wake key made and deleted. The keys are
  -- new (an emptied queue deletes both), or a leftover hash of dead tickets that may as
  -- well expire with this one.
  redis.call('RPUSH', KEYS[1], ticket)
  redis.call('HSET', KEYS[2], ticket, 'H:' .. (now + lifetime))
  redis.call('PEXPIRE', KEYS[1], wait + lifetime + KEEP_MS)
  redis.call('PEXPIRE', KEYS[2], wait + lifetime + KEEP_MS)
  return {ticket, 1, lifetime}
end
redis.call('RPUSH', KEYS[1], ticket)
redis.call('HSET', KEYS[2], ticket, 'W:' .. (now + wait) .. ':' .. lifetime)
extend(wait + lifetime + KEEP_MS)
local head, expires = promote(now)
if head == ticket then
  redis.call('DEL', ARGV[1] .. ticket)
  return {ticket, 1, expires - now}
end
if not head then
  return {ticket, 0, 0}
end
return {ticket, 0, expires - now}
