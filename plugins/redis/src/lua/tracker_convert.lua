-- Converts a Rasa-written string value into the list form, atomically and only if the value
-- is still the one the caller parsed: ARGV[2] = that exact string, ARGV[3..] = its events
-- (parsed and re-serialised by the caller, because Lua's cjson would reorder keys and round
-- floats). Returns 1 when converted, 0 when the value changed meanwhile (caller retries).
local t = log_type()
if type(t) == 'table' then return t end
if t ~= 'string' then
  return 0
end
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1])
new_epoch()
push_all(3)
touch()
return 1
