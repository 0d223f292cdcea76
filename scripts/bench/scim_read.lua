-- wrk: SCIM reads at random spots. Args: TOKEN MODE N BASE_PATH
--   MODE=filter: GET /Users?filter=userName eq "seed-<random below N>@bench.test"
--   MODE=page:   GET /Users?startIndex=<random in 1..N-99>&count=100
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  token, mode, n, path = args[1], args[2], tonumber(args[3]), args[4]
  math.randomseed(os.time() * 100 + tid)
  headers = {}
  headers["Accept"] = "application/scim+json"
  if token ~= "-" then headers["Authorization"] = "Bearer " .. token end
end
function request()
  if mode == "filter" then
    local i = math.random(0, n - 1)
    return wrk.format("GET", path .. "/Users?filter=userName%20eq%20%22seed-" .. i .. "%40bench.test%22", headers)
  else
    local start = math.random(1, math.max(1, n - 99))
    return wrk.format("GET", path .. "/Users?startIndex=" .. start .. "&count=100", headers)
  end
end
