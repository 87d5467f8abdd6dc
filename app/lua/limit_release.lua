-- A model call ended: free its stream and correct its tokens in the window to what it used.
-- KEYS[1] streams (zset), KEYS[2] window tokens (hash)
-- ARGV[1] call id, ARGV[2] tokens the call used ('' = unknown: its estimate stays)
-- Returns 1 if it held a stream lease (0: it had lapsed, or the model has no stream limit).
local held = redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  local counted = redis.call('HGET', KEYS[2], ARGV[1])
  if counted then  -- still inside the window
    local used = math.floor(tonumber(ARGV[2]))
    redis.call('HSET', KEYS[2], ARGV[1], used)
    local delta = used - tonumber(counted)
    if delta ~= 0 then redis.call('HINCRBY', KEYS[2], 'sum', delta) end
  end
end
return held
