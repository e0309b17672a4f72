-- wrk script: GET /v1/hello with a different token on every request (tokens from the file in $TOKENS).
-- Each wrk thread starts at its own offset so threads do not share tokens.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  tokens = {}
  for line in io.lines(os.getenv("TOKENS")) do
    tokens[#tokens + 1] = line
  end
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
  i = math.floor(#tokens / nthreads) * id
  sent = 0
end

function request()
  i = i + 1
  if i > #tokens then i = 1 end
  sent = sent + 1
  return wrk.format("GET", "/v1/hello", { ["authorization"] = "Bearer " .. tokens[i] })
end
