-- wrk script: cycle through pre-built JSON bodies (one per line in BODIES_FILE), so the load is
-- hundreds of distinct real sentences, never one repeated body. Prints one JSON line at the end.
local bodies = {}
local index = 0
local headers = { ["Content-Type"] = "application/json" }

init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  if args[2] and args[2] ~= "" then headers["X-API-Key"] = args[2] end
  index = math.random(#bodies)
end

request = function()
  index = index % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[index])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "status_errors": %d, '
    .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
