dofile(os.getenv("BENCH_LUA") .. "/common.lua")
-- P8: GET the whole tracker (default verbosity), round robin over BENCH_CONVS conversations.
request = function()
  return wrk.format("GET", "/conversations/" .. bench.next_id() .. "/tracker")
end
