-- The batches whose completion window has passed, on the Redis server's clock (never a
-- worker's, which may be skewed). KEYS[1] deadlines (sorted set: batch id -> expiry in us).
-- Returns the due batch ids (at most 1000; the next sweep takes the rest).
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now_us), 'LIMIT', 0, 1000)
