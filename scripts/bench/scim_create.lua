-- wrk: POST /Users with a unique userName per request. Args: TOKEN RUN_PREFIX BASE_PATH
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  token, run, path = args[1], args[2], args[3]
end
function request()
  counter = counter + 1
  local body = string.format(
    '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"%s-%d-%d@bench.test",' ..
    '"name":{"givenName":"Load","familyName":"User"},"emails":[{"value":"%s-%d-%d@bench.test","type":"work","primary":true}],"active":true}',
    run, tid, counter, run, tid, counter)
  local headers = {}
  headers["Content-Type"] = "application/scim+json"
  if token ~= "-" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", path .. "/Users", headers, body)
end
