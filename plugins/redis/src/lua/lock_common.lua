-- Shared by the lock scripts. KEYS[1] = the FIFO queue of tickets ([p:]lock_queue:<id>),
-- KEYS[2] = a hash ticket -> state ([p:]lock_tickets:<id>). ARGV[1] = the wake-key prefix
-- ([p:]lock_wake:); a waiter blocks (BLPOP) on <prefix><ticket>.
-- Ticket states: 'W:<give-up deadline ms>:<lifetime ms>' (waiting), 'H:<expiry ms>' (holding).
-- Time is Redis' own clock (TIME), so hosts with skewed clocks agree on expiry.

local KEEP_MS = 60000
local WAKE_TTL_MS = 60000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Keeps the queue and the ticket hash alive at least ms longer; they vanish by themselves
-- when every process using them died.
local function extend(ms)
  for i = 1, 2 do
    local pttl = redis.call('PTTL', KEYS[i])
    if pttl == -1 or (pttl >= 0 and pttl < ms) then
      redis.call('PEXPIRE', KEYS[i], ms)
    end
  end
end

-- Makes the queue's head the holder: drops expired holders and waiters that gave up (or
-- died), grants the lock to the first live waiter and wakes it. Returns head, expiry or nil.
local function promote(now)
  local wake = ARGV[1]
  while true do
    local head = redis.call('LINDEX', KEYS[1], 0)
    if not head then
      redis.call('DEL', KEYS[1], KEYS[2])
      return nil
    end
    local rec = redis.call('HGET', KEYS[2], head)
    local state, a, b
    if rec then
      state, a, b = string.match(rec, '^(%a):(%d+):?(%d*)$')
      a = tonumber(a)
    end
    if state == 'H' and a > now then
      return head, a
    elseif state == 'W' and a > now then
      local expires = now + tonumber(b)
      redis.call('HSET', KEYS[2], head, 'H:' .. expires)
      redis.call('LPUSH', wake .. head, '1')
      redis.call('PEXPIRE', wake .. head, WAKE_TTL_MS)
      extend(expires - now + KEEP_MS)
      return head, expires
    else
      redis.call('LPOP', KEYS[1])
      redis.call('HDEL', KEYS[2], head)
      redis.call('DEL', wake .. head)
    end
  end
end
