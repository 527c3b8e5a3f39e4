-- wrk script: POST a JSON body with HTTP Basic auth; every "__SEQ__" in the body is replaced by a
-- per-request sequence ("<tag><thread>x<n>"), so each request carries its own message ids.
-- usage: wrk -s post.lua <url> -- <body-file> <authorization-header-value> [tag]
-- done() prints one line "WRKJSON {...}" that bench/loadgen.py parses.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = args[2]
  tag = args[3] or ""
  -- split the template on the placeholder; request() joins the parts with the sequence
  parts = {}
  local start = 1
  while true do
    local s, e = string.find(body, "__SEQ__", start, true)
    if not s then break end
    table.insert(parts, string.sub(body, start, s - 1))
    start = e + 1
  end
  table.insert(parts, string.sub(body, start))
  nparts = #parts
end

function request()
  counter = counter + 1
  local seq = tag .. tid .. "x" .. counter
  local body
  if nparts == 1 then
    body = parts[1]
  elseif nparts == 2 then
    body = parts[1] .. seq .. parts[2]
  else
    local out = {}
    for i = 1, nparts - 1 do
      out[#out + 1] = parts[i]
      out[#out + 1] = seq
    end
    out[#out + 1] = parts[nparts]
    body = table.concat(out)
  end
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
