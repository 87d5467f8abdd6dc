-- Give a batch whose items have all ended its terminal status, stop_reason and timings.
-- Safe to run any number of times. KEYS[1] batch hash, KEYS[2] metric counters (or absent).
-- Returns {result, status}: finalized, terminal (already terminal), busy (items remain), missing
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', ''} end
local remaining = tonumber(redis.call('HGET', KEYS[1], 'pending') or '0') +
  tonumber(redis.call('HGET', KEYS[1], 'running') or '0')
if status == 'completed' or status == 'failed' or status == 'cancelled' or status == 'expired' then
  if remaining > 0 then return {'busy', status} end
  return {'terminal', status}
end
if remaining > 0 then return {'busy', status} end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local created_us = tonumber(redis.call('HGET', KEYS[1], 'created_us'))
local final, reason = 'completed', 'end_turn'
if tonumber(redis.call('HGET', KEYS[1], 'succeeded') or '0') == 0 then
  final, reason = 'failed', 'error'
  local errored = tonumber(redis.call('HGET', KEYS[1], 'errored') or '0')
  local fields = redis.call('HGETALL', KEYS[1])
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 7) == 'reason:' and tonumber(fields[i + 1]) == errored and errored > 0 then
      reason = string.sub(fields[i], 8)
    end
  end
end
redis.call('HSET', KEYS[1], 'status', final, 'stop_reason', reason,
  'completed_us', string.format('%.0f', now_us), 'updated_us', string.format('%.0f', now_us),
  'total_duration_ns', string.format('%.0f', (now_us - created_us) * 1000))
if KEYS[2] then redis.call('HINCRBY', KEYS[2], 'batches_finished_total|status=' .. final, 1) end
return {'finalized', final}
