-- replace(events): ARGV[2..] = events. A new epoch; an empty log still exists (epoch key).
local t = log_type()
if type(t) == 'table' then return t end
redis.call('DEL', KEYS[1])
local epoch = new_epoch()
push_all(2)
touch()
return {epoch, redis.call('LLEN', KEYS[1])}
