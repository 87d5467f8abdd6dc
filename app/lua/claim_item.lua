-- Claim a batch item for one run. Atomic with stop_batch and commit_run, so counters move once.
-- KEYS[1] item hash, KEYS[2] batch hash
-- ARGV[1] owner (worker run id), ARGV[2] lease length in microseconds
-- Returns {action, now_us}: action is
--   run          the caller owns the item now (pending -> running, a dead owner's lease taken over, or
--                its own lease claimed again after an error cut its run short)
--   busy         another live owner holds it
--   done         it already ended
--   stopped      the batch was cancelled/expired before it started; the item now says so
--   stop_running a dead owner left it running in a stopped batch: the caller must commit it as stopped
--   missing      no such item
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_s = string.format('%.0f', now_us)
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', now_s} end
if status ~= 'pending' and status ~= 'running' then return {'done', now_s} end
local bstatus = redis.call('HGET', KEYS[2], 'status')
-- The caller's own lease does not stop it: the caller knows it is not running the item any more.
local lease_live = status == 'running' and redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[1]
  and tonumber(redis.call('HGET', KEYS[1], 'lease_until_us') or '0') > now_us
if bstatus == 'cancelled' or bstatus == 'expired' then
  if status == 'pending' then
    -- the stop script already moved this item's count from pending to the stop status
    redis.call('HSET', KEYS[1], 'status', bstatus, 'completed_us', now_s)
    return {'stopped', now_s}
  end
  if lease_live then return {'busy', now_s} end
  return {'stop_running', now_s}
end
if lease_live then return {'busy', now_s} end
if status == 'pending' then
  redis.call('HINCRBY', KEYS[2], 'pending', -1)
  redis.call('HINCRBY', KEYS[2], 'running', 1)
end
redis.call('HSET', KEYS[1], 'status', 'running', 'lease_owner', ARGV[1],
  'lease_until_us', string.format('%.0f', now_us + tonumber(ARGV[2])), 'started_us', now_s)
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HDEL', KEYS[1], 'waiting')  -- a new run waits for nothing yet (see claim_items.lua)
return {'run', now_s}
