dofile(os.getenv("BENCH_LUA") .. "/common.lua")
-- P1/P3/P4/Redis: append one slot event, round robin over BENCH_CONVS conversations.
wrk.method = "POST"
wrk.body = '{"event":"slot","name":"x","value":1}'
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, "/conversations/" .. bench.next_id() .. "/tracker/events?include_events=NONE")
end
