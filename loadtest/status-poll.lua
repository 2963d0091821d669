-- wrk script for loadtest/bench-status: each request polls /_foyer/status as a different
-- waiting visitor, cycling through the tokens in $FOYER_TOKENS (one per line). The requests
-- are formatted once, in `init` (where wrk has set the Host header): wrk shares its core
-- with Redis, and building every request anew in Lua was client time taken from both runs.
local tokens = {}
for line in io.lines(os.getenv("FOYER_TOKENS")) do tokens[#tokens + 1] = line end
local requests = {}
local index = 0

function init(args)
  for i, token in ipairs(tokens) do
    requests[i] = wrk.format("GET", "/_foyer/status?room=bench", {
      ["Host"] = wrk.headers["Host"], ["Accept"] = "application/json", ["Cookie"] = "foyer_v_bench=" .. token,
    })
  end
  index = math.random(#requests)
end

function request()
  index = index % #requests + 1
  return requests[index]
end
