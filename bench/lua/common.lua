-- Shared by the bench/run.sh scripts (loaded with dofile). Parameters come from the
-- environment: BENCH_PREFIX (conversation id prefix), BENCH_CONVS (how many conversations,
-- round robin), BENCH_LIMIT (stop after that many responses; 0 = run for the duration).
bench = {}
bench.prefix = os.getenv("BENCH_PREFIX") or "c"
bench.convs = tonumber(os.getenv("BENCH_CONVS") or "1000")
bench.limit = tonumber(os.getenv("BENCH_LIMIT") or "0")

local sent = 0
function bench.next_id()
  local id = bench.prefix .. (sent % bench.convs)
  sent = sent + 1
  return id
end

-- Only defined when needed: a response() hook makes wrk hand every response to Lua.
if bench.limit > 0 then
  local seen = 0
  function response(status, headers, body)
    seen = seen + 1
    if seen >= bench.limit then
      wrk.thread:stop()
    end
  end
end

-- One machine-readable line, parsed by run.sh.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d non2xx=%d sockerr=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
