dofile(os.getenv("BENCH_LUA") .. "/common.lua")
-- P1's request shape to a conversation route that does not exist: a 404 after routing and
-- reading the body, i.e. the serving stack without the append (profiling aid).
wrk.method = "POST"
wrk.body = '{"event":"slot","name":"x","value":1}'
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, "/conversations/" .. bench.next_id() .. "/nothing?include_events=NONE")
end
