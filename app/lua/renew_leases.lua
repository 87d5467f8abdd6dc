-- Extend the leases this owner holds. KEYS: item hashes. ARGV[1] owner, ARGV[2] lease length (us).
local t = redis.call('TIME')
local until_s = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[2]))
local renewed = 0
for _, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'lease_owner') == ARGV[1] and redis.call('HGET', key, 'status') == 'running' then
    redis.call('HSET', key, 'lease_until_us', until_s)
    renewed = renewed + 1
  end
end
return renewed
