dofile(os.getenv("BENCH_LUA") .. "/common.lua")
-- P2: one REST-channel turn ("hello" → NLU → policies → utter_greet), round robin over
-- BENCH_CONVS senders.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, "/webhooks/rest/webhook", nil, '{"sender":"' .. bench.next_id() .. '","message":"hello"}')
end
