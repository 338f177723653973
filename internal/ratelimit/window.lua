-- Sliding-window counter over two fixed windows, checked and counted in one
-- atomic step.
--
-- KEYS[1]  hash with fields w (index of the current fixed window), c (requests
--          counted in window w) and p (requests counted in window w-1)
-- ARGV[1]  now, in Unix milliseconds, from the caller's clock
-- ARGV[2]  window length in milliseconds, at least 1
-- ARGV[3]  limit: requests allowed per window, at least 1
-- ARGV[4]  slots wanted: the request itself and the rest reserved for the
--          caller's next requests; absent means 1
--
-- Returns {allowed (1 or 0), remaining, reset_ms, granted}. granted is how
-- many of the wanted slots were counted: at least 1 when allowed, fewer than
-- wanted when the window has less room. reset_ms is the time until
-- one more request fits than remaining says, assuming no other request is
-- counted meanwhile. On a rejection that is the time until a retry succeeds.
--
-- The estimate of requests in the sliding window ending now is
--   used = p * (window - elapsed) / window + c
-- with elapsed the time since window w began. Every comparison below is
-- multiplied by window so that it stays in integers: Lua numbers are doubles,
-- exact up to 2^53.

local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4]) or 1

local index = math.floor(now / window)
local state = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local stored = tonumber(state[1])
local cur = tonumber(state[2]) or 0
local prev = tonumber(state[3]) or 0
if stored == nil or stored < index - 1 then
  cur, prev = 0, 0
elseif stored == index - 1 then
  prev, cur = cur, 0
elseif stored > index then
  -- Another caller's clock is ahead of ours. Count into its window rather
  -- than move the state back in time.
  index = stored
end
local elapsed = now - index * window
if elapsed < 0 then
  elapsed = 0
end

-- used_scaled returns used * window.
local function used_scaled()
  return prev * (window - elapsed) + cur * window
end

-- wait_until returns the milliseconds until used <= level.
local function wait_until(level)
  if used_scaled() <= level * window then
    return 0
  end
  if cur <= level then
    -- Here prev > 0, because used = cur <= level otherwise. The weight of
    -- prev falls during this window: find the first elapsed time e with
    -- prev * (window - e) <= (level - cur) * window.
    return window - math.floor((level - cur) * window / prev) - elapsed
  end
  -- Not before the next window, where c becomes p: find the first e with
  -- cur * (window - e) <= level * window.
  return window - elapsed + window - math.floor(level * window / cur)
end

local allowed = 0
local granted = 0
local room = math.floor((limit * window - used_scaled()) / window)
if room >= 1 then
  allowed = 1
  granted = math.min(wanted, room)
  cur = cur + granted
  redis.call('HSET', KEYS[1], 'w', index, 'c', cur, 'p', prev)
  -- The counts matter until the end of the next window, at most two windows
  -- from now.
  redis.call('PEXPIRE', KEYS[1], 2 * window)
end

local remaining = math.floor((limit * window - used_scaled()) / window)
if remaining < 0 then
  remaining = 0
end
return {allowed, remaining, wait_until(limit - remaining - 1), granted}
