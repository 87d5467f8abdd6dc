-- Move a batch from one status to the next only if it is still in the first (no going back).
-- KEYS[1] batch hash. ARGV[1] from, ARGV[2] to. Returns 1 when moved.
if redis.call('HGET', KEYS[1], 'status') == ARGV[1] then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated_us', t[1] .. string.format('%06d', tonumber(t[2])))
  return 1
end
return 0
