-- Pause a model for the whole fleet (the provider answered 429 with Retry-After): no call of it is
-- admitted before the resume time. A shorter pause never cuts a longer one short.
-- KEYS[1] pause (string: resume time, us). ARGV[1] pause length (us).
-- Returns {resume_us, now_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local resume = math.max(now + tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], string.format('%.0f', resume), 'PX', math.ceil((resume - now) / 1000) + 1)
return {string.format('%.0f', resume), string.format('%.0f', now)}
