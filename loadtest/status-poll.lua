-- wrk script for loadtest/bench-status: each request polls /_foyer/status as a different
-- waiting visitor, cycling through the lines of $FOYER_TOKENS: a visitor token, and after a
-- space the visitor's place token when there is one (sent as its cookie unless
-- $FOYER_NO_PLACE is set). The requests are formatted once, in `init` (where wrk has set the
-- Host header): wrk shares its core with Redis, and building every request anew in Lua was
-- client time taken from both runs.
local lines = {}
for line in io.lines(os.getenv("FOYER_TOKENS")) do lines[#lines + 1] = line end
local withPlace = os.getenv("FOYER_NO_PLACE") == nil
local requests = {}
local index = 0

function init(args)
  for i, line in ipairs(lines) do
    local visitor, place = line:match("^(%S+)%s*(%S*)$")
    local cookie = "foyer_v_bench=" .. visitor
    if withPlace and place ~= "" then cookie = cookie .. "; foyer_q_bench=" .. place end
    requests[i] = wrk.format("GET", "/_foyer/status?room=bench", {
      ["Host"] = wrk.headers["Host"], ["Accept"] = "application/json", ["Cookie"] = cookie,
    })
  end
  index = math.random(#requests)
end

function request()
  index = index % #requests + 1
  return requests[index]
end
