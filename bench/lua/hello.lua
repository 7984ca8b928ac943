dofile(os.getenv("BENCH_LUA") .. "/common.lua")
-- GET / on the bare axum server.
