-- wrk script for Tools/loadtest/run_loadtest.py --client wrk: every connection sends POST /v1/completions one
-- request after another, with the same prompts as the Python client (20-60 words from a fixed list; each
-- connection starts at its own offset) and "min_tokens" = "max_tokens", so every request generates exactly
-- max_tokens tokens whatever the weights. A response counts when it is a 200 whose usage.completion_tokens is
-- max_tokens; anything else is an error. done() prints one line, FLINT_RESULT {json}, that run_loadtest.py reads.
--
--   wrk -t1 -cN -dSECONDS --timeout 600s -s completions.lua http://127.0.0.1:PORT -- MAX_TOKENS OFFSET
--
-- The clients share the machine's cores with the server: wrk's one epoll thread used about a third of the CPU
-- of run_loadtest.py's Python threads (0.1 vs 0.3 s per 10 s level at 32 clients), both a few percent of a core.

local WORDS = {}
for word in ("the quick brown fox jumps over a lazy dog while seven old men walk to the market and buy bread milk "
             .. "rice fish under a hot sun near the green river where birds sing in tall trees"):gmatch("%S+") do
  WORDS[#WORDS + 1] = word
end

-- Same as run_loadtest.py's prompt(i): n = 20 + (7 i mod 41) words, word k is WORDS[(i + 3 k) mod #WORDS].
local function prompt(i)
  local n = 20 + (i * 7) % 41
  local parts = {}
  for k = 0, n - 1 do parts[#parts + 1] = WORDS[(i + k * 3) % #WORDS + 1] end
  return "summarize: " .. table.concat(parts, " ") .. "."
end

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  max_tokens = tonumber(args[1] or "16")
  next_prompt = tonumber(args[2] or "0") + thread_index * 1000
  tokens, bad = 0, 0
end

function request()
  next_prompt = next_prompt + 1
  local body = string.format('{"prompt": "%s", "max_tokens": %d, "min_tokens": %d}',
                             prompt(next_prompt), max_tokens, max_tokens)
  return wrk.format("POST", "/v1/completions", { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  local n = status == 200 and tonumber(body:match('"completion_tokens"%s*:%s*(%d+)')) or nil
  if n == max_tokens then tokens = tokens + n else bad = bad + 1 end
end

function done(summary, latency, requests)
  local total_tokens, total_bad = 0, 0
  for _, thread in ipairs(threads) do
    total_tokens = total_tokens + thread:get("tokens")
    total_bad = total_bad + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'FLINT_RESULT {"requests": %d, "duration_us": %d, "tokens": %d, "bad_responses": %d, '
      .. '"socket_errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, total_tokens, total_bad,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
