dofile(os.getenv("BENCH_LUA") .. "/common.lua")
-- The P1 request shape (POST, same path and body) against the bare axum server.
wrk.method = "POST"
wrk.body = '{"event":"slot","name":"x","value":1}'
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, "/conversations/" .. bench.next_id() .. "/tracker/events?include_events=NONE")
end
