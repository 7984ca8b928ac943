-- release: ARGV[2] = ticket. Removes the ticket wherever it is in the queue (holder or a
-- waiter giving up), then hands the lock to the next live waiter. Returns 1 if the ticket
-- was known.
if redis.call('LLEN', KEYS[1]) == 1 and redis.call('LINDEX', KEYS[1], 0) == ARGV[2] then
  -- The only ticket (nobody waits): nothing to hand over, the lock's keys go.
  local existed = redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[1], KEYS[2], ARGV[1] .. ARGV[2])
  return existed
end
local existed = redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('LREM', KEYS[1], 1, ARGV[2])
redis.call('DEL', ARGV[1] .. ARGV[2])
promote(now_ms())
return existed
