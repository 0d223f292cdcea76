-- wrk: refresh-token grants (POST token, client_secret_basic), rotating: each thread keeps a queue
-- of its families' current refresh tokens; request() takes the oldest, response() puts the new
-- one from the answer at the back. A refused refresh loses its family (counted as bad); a
-- request finding the queue empty sends a token nobody issued (counted as bad and as empty).
-- Args: TOKENS_FILE THREADS BASIC. done() prints "BENCH ok=… bad=… empty=… families=…".
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = "Basic " .. args[3] }
  queue, head, tail, i = {}, 1, 0, 0
  for line in io.lines(file) do
    if i % nthreads == tid - 1 then tail = tail + 1; queue[tail] = line end
    i = i + 1
  end
  families, ok, bad, empty = tail, 0, 0, 0
end
function request()
  local token
  if head <= tail then
    token = queue[head]
    queue[head] = nil
    head = head + 1
  else
    empty = empty + 1
    token = "queue-empty"
  end
  return wrk.format("POST", nil, headers, "grant_type=refresh_token&refresh_token=" .. token)
end
function response(status, hdrs, body)
  local t = status == 200 and body:match('"refresh_token":"([^"]+)"')
  if t then
    ok, tail = ok + 1, tail + 1
    queue[tail] = t
  else
    bad = bad + 1
  end
end
function done(summary, latency, requests)
  local t = { ok = 0, bad = 0, empty = 0, families = 0 }
  for _, th in ipairs(threads) do
    for k in pairs(t) do t[k] = t[k] + th:get(k) end
  end
  io.write(string.format("BENCH ok=%d bad=%d empty=%d families=%d\n", t.ok, t.bad, t.empty, t.families))
end
