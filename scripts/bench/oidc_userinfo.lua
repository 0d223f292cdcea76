-- wrk: GET userinfo with a Bearer access token, the tokens of TOKENS_FILE in turn.
-- Args: TOKENS_FILE. done() prints "BENCH ok=… bad=… tokens=…".
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  reqs = {}
  for line in io.lines(args[1]) do
    reqs[#reqs + 1] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. line })
  end
  tokens, n, ok, bad = #reqs, tid, 0, 0
end
function request()
  n = n % tokens + 1
  return reqs[n]
end
function response(status, hdrs, body)
  if status == 200 and body:find('"sub"', 1, true) then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local t = { ok = 0, bad = 0 }
  for _, th in ipairs(threads) do
    for k in pairs(t) do t[k] = t[k] + th:get(k) end
  end
  io.write(string.format("BENCH ok=%d bad=%d tokens=%d\n", t.ok, t.bad, threads[1]:get("tokens")))
end
