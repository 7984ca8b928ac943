-- check: ARGV[2] = ticket. After a wake-up or a timed-out wait: {1, lease ms} when the
-- ticket holds the lock, {0, ms until the holder's lease ends} while it waits, {-1, 0} when
-- the ticket is gone (its wait deadline passed).
local now = now_ms()
local head, expires = promote(now)
if head == ARGV[2] then
  redis.call('DEL', ARGV[1] .. head)
  return {1, expires - now}
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then
  return {-1, 0}
end
if not head then
  return {0, 0}
end
return {0, expires - now}
