-- Extend the stream leases of calls still streaming. KEYS[1] streams (zset: call id -> lease end, us)
-- ARGV[1] lease length (us), ARGV[2..] call ids. Returns how many were still held (a lapsed lease is
-- not brought back: its slot may have gone to another call).
local t = redis.call('TIME')
local until_us = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1]))
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', until_us, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
return renewed
