-- Delete a lock only if this owner still holds it: a holder that outlived its lock's expiry
-- must not release the lock that another took since. KEYS[1] lock. ARGV[1] owner token.
-- Returns 1 when deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
