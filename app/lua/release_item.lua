-- Give an unfinished item back (its worker is shutting down) so a redelivered message runs it at once.
-- KEYS[1] item hash. ARGV[1] owner.
if redis.call('HGET', KEYS[1], 'lease_owner') == ARGV[1] and redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('HSET', KEYS[1], 'lease_until_us', '0')
  return 1
end
return 0
