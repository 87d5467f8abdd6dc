-- Give back an item that waited for model capacity before its first model call: it has not
-- started, so it is pending again (its count too). A cancel or expiry then counts it as stopped
-- at once, instead of when its chunk's delayed retry comes, and no started_at is shown for it.
-- Its lease owner and `waiting` mark stay until its next claim (the mark reads while it waits).
-- KEYS[1] item hash, KEYS[2] batch hash. ARGV[1] owner.
-- Returns 1 when pending again; 2 when only its lease was released (its batch is stopped: the
-- stop already counted the batch's pending items, so the retry's claim settles this one as
-- stopped); 0 when the owner does not hold it running.
if redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  return 0
end
local bstatus = redis.call('HGET', KEYS[2], 'status')
if bstatus ~= 'running' then
  redis.call('HSET', KEYS[1], 'lease_until_us', '0')
  return 2
end
redis.call('HSET', KEYS[1], 'status', 'pending', 'lease_until_us', '0')
redis.call('HDEL', KEYS[1], 'started_us')
redis.call('HINCRBY', KEYS[2], 'running', -1)
redis.call('HINCRBY', KEYS[2], 'pending', 1)
return 1
