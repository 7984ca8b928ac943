-- append(events): ARGV[2..] = events. Returns {epoch, length}, or 'legacy' when the key
-- still holds a Rasa-written string (the caller converts it first, see tracker_convert.lua).
local t = log_type()
if type(t) == 'table' then return t end
if t == 'string' then
  return 'legacy'
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = new_epoch()
end
push_all(2)
touch()
return {tonumber(epoch), redis.call('LLEN', KEYS[1])}
