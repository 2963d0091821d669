-- wrk script for loadtest/bench-status: each request polls /_foyer/status as a different
-- waiting visitor, cycling through the tokens in $FOYER_TOKENS (one per line).
local tokens = {}
for line in io.lines(os.getenv("FOYER_TOKENS")) do tokens[#tokens + 1] = line end
local index = 0
local headers = { ["Accept"] = "application/json" }

function init(args)
  index = math.random(#tokens)
end

function request()
  index = index % #tokens + 1
  headers["Cookie"] = "foyer_v_bench=" .. tokens[index]
  return wrk.format("GET", "/_foyer/status?room=bench", headers)
end
