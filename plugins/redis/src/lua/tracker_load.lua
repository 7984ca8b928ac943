-- load(from): ARGV[2] = offset. Returns nil (never stored), {'legacy', <Rasa JSON string>},
-- or {'list', epoch, length, events[from..]} -- all read in one atomic step.
local t = log_type()
if type(t) == 'table' then return t end
if t == 'string' then
  return {'legacy', redis.call('GET', KEYS[1])}
end
local epoch = redis.call('GET', KEYS[2])
if t == 'none' and not epoch then
  return false
end
local len = redis.call('LLEN', KEYS[1])
local from = tonumber(ARGV[2])
local events = {}
if from < len then
  events = redis.call('LRANGE', KEYS[1], from, -1)
end
return {'list', tonumber(epoch or '0'), len, events}
