-- Admit one model call under its model's fleet-wide limits, or say why not and for how long.
-- Checks, in order: a pause (a provider's Retry-After), the stream semaphore, the request and the
-- token windows; admits only if all pass, so a refused call leaves nothing behind. A call id that
-- holds its place already (it asks again: the reply was lost) is admitted with nothing added.
-- KEYS[1] pause (string: resume time, us)   KEYS[2] streams (zset: call id -> lease end, us)
-- KEYS[3] window (zset: call id -> admission time, us)   KEYS[4] window tokens (hash: call id -> tokens, and 'sum')
-- ARGV[1] call id, ARGV[2] max streams, ARGV[3] requests per window, ARGV[4] tokens per window (0 = no limit),
-- ARGV[5] this call's estimated tokens, ARGV[6] stream lease (us), ARGV[7] window length (us)
-- Returns {admitted (1|0), wait_us, reason, now_us}: wait_us is exact for 'paused', 'requests' and
-- 'tokens', -1 (unknown: poll) for 'streams' or a token wait beyond the entries it looked at.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function us(x) return string.format('%.0f', x) end
local id, max_streams, max_requests, max_tokens = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, lease, window = math.floor(tonumber(ARGV[5])), tonumber(ARGV[6]), tonumber(ARGV[7])

-- A call that asks again after its admission's reply was lost (Redis went away) is admitted
-- already: it keeps its place instead of waiting for itself or counting twice.
local windowed = max_requests > 0 or max_tokens > 0
local held = max_streams > 0 and redis.call('ZSCORE', KEYS[2], id)  -- its lease's end
local counted = max_streams == 0 and windowed and redis.call('ZSCORE', KEYS[3], id)  -- its admission time
if (held and tonumber(held) > now) or (counted and tonumber(counted) > now - window) then
  return {1, '0', '', us(now)}
end

local resume = tonumber(redis.call('GET', KEYS[1]) or '0')
if resume > now then return {0, us(resume - now), 'paused', us(now)} end

if max_streams > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', us(now))  -- leases of dead workers lapse here
  if redis.call('ZCARD', KEYS[2]) >= max_streams then return {0, '-1', 'streams', us(now)} end
end

if windowed then
  local cutoff = us(now - window)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', cutoff)
  if #gone > 0 then
    local freed = 0
    for _, old in ipairs(gone) do
      freed = freed + tonumber(redis.call('HGET', KEYS[4], old) or '0')
      redis.call('HDEL', KEYS[4], old)
    end
    if freed > 0 then redis.call('HINCRBY', KEYS[4], 'sum', 0 - freed) end  -- never '-0', which Redis refuses
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', cutoff)
  end
  if max_requests > 0 and redis.call('ZCARD', KEYS[3]) >= max_requests then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {0, us(tonumber(oldest[2]) + window - now), 'requests', us(now)}
  end
  local sum = tonumber(redis.call('HGET', KEYS[4], 'sum') or '0')
  -- A call larger than the whole budget runs once the window is empty, alone.
  if max_tokens > 0 and sum > 0 and sum + tokens > max_tokens then
    local freed, wait = 0, -1
    local entries = redis.call('ZRANGE', KEYS[3], 0, 999, 'WITHSCORES')
    for i = 1, #entries, 2 do
      freed = freed + tonumber(redis.call('HGET', KEYS[4], entries[i]) or '0')
      if sum - freed <= 0 or sum - freed + tokens <= max_tokens then
        wait = tonumber(entries[i + 1]) + window - now
        break
      end
    end
    return {0, us(wait), 'tokens', us(now)}
  end
end

if max_streams > 0 then
  redis.call('ZADD', KEYS[2], us(now + lease), id)
  redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000) + 1000)
end
if windowed then
  redis.call('ZADD', KEYS[3], us(now), id)
  -- once per call: one asking again after its stream lease lapsed is in the window already
  if redis.call('HSET', KEYS[4], id, tokens) == 1 then
    redis.call('HINCRBY', KEYS[4], 'sum', tokens)
  end
  redis.call('PEXPIRE', KEYS[3], math.ceil(window / 1000) + 1000)
  redis.call('PEXPIRE', KEYS[4], math.ceil(window / 1000) + 1000)
end
return {1, '0', '', us(now)}
