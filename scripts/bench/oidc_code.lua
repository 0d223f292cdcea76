-- wrk: authorization code exchanges (POST token, client_secret_basic), one fresh code per request.
-- Args: CODES_FILE THREADS BASIC REDIRECT_URI (url-encoded)
-- The codes ("CODE VERIFIER" per line) are dealt out between the threads; once a thread's share
-- is used up it sends a code nobody issued (refused: counted as bad, never as an exchange).
-- done() prints "BENCH ok=… bad=… used=… exhausted=… pool=…".
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  redirect = args[4]
  headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = "Basic " .. args[3] }
  pool, i = {}, 0
  for line in io.lines(file) do
    if i % nthreads == tid - 1 then pool[#pool + 1] = line end
    i = i + 1
  end
  size, nxt, used, exhausted, ok, bad = #pool, 1, 0, 0, 0, 0
end
function request()
  local line = pool[nxt]
  local code, verifier
  if line then
    pool[nxt] = nil
    nxt, used = nxt + 1, used + 1
    code, verifier = line:match("^(%S+) (%S+)$")
  else
    exhausted = exhausted + 1
    code, verifier = "pool-exhausted", "pool-exhausted-pool-exhausted-pool-exhausted"
  end
  return wrk.format("POST", nil, headers, "grant_type=authorization_code&code=" .. code ..
    "&redirect_uri=" .. redirect .. "&code_verifier=" .. verifier)
end
function response(status, hdrs, body)
  if status == 200 and body:find('"refresh_token"', 1, true) then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local t = { ok = 0, bad = 0, used = 0, exhausted = 0, size = 0 }
  for _, th in ipairs(threads) do
    for k in pairs(t) do t[k] = t[k] + th:get(k) end
  end
  io.write(string.format("BENCH ok=%d bad=%d used=%d exhausted=%d pool=%d\n",
    t.ok, t.bad, t.used, t.exhausted, t.size))
end
