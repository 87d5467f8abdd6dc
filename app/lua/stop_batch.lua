-- Cancel or expire a batch: its status turns terminal at once, its not-yet-started items count
-- as stopped, and every worker hears of it on the stop channel to close in-flight streams.
-- KEYS[1] batch hash. ARGV[1] stop status (cancelled|expired), ARGV[2] stop_reason or '',
-- ARGV[3] stop channel, ARGV[4] batch id
-- Returns {result, detail}: stopped (detail = items still running), already, conflict (detail =
-- the terminal status), settled (every item already ended: the batch is only waiting for its
-- finalize, and a stop must not overwrite its outcome), missing
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', ''} end
if status == ARGV[1] then return {'already', status} end
if status == 'completed' or status == 'failed' or status == 'cancelled' or status == 'expired' then
  return {'conflict', status}
end
local pending = tonumber(redis.call('HGET', KEYS[1], 'pending') or '0')
if pending + tonumber(redis.call('HGET', KEYS[1], 'running') or '0') == 0 then
  return {'settled', status}
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local created_us = tonumber(redis.call('HGET', KEYS[1], 'created_us'))
redis.call('HINCRBY', KEYS[1], ARGV[1], pending)
redis.call('HSET', KEYS[1], 'pending', 0, 'status', ARGV[1], 'stop_reason', ARGV[2],
  'completed_us', string.format('%.0f', now_us), 'updated_us', string.format('%.0f', now_us),
  'total_duration_ns', string.format('%.0f', (now_us - created_us) * 1000))
redis.call('PUBLISH', ARGV[3], ARGV[4])
return {'stopped', redis.call('HGET', KEYS[1], 'running') or '0'}
