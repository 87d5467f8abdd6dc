-- Cancel or expire a batch: its status turns terminal at once, its not-yet-started items count
-- as stopped, and every worker hears of it on the stop channel to close in-flight streams.
-- KEYS[1] batch hash, KEYS[2] metric counters (or absent). ARGV[1] stop status (cancelled|expired), ARGV[2] stop_reason or '',
-- ARGV[3] stop channel, ARGV[4] batch id
-- Returns {result, detail}: stopped (detail = items still running), already, conflict (detail =
-- the terminal status), settled (every item already ended: the batch is only waiting for its
-- finalize, and a stop must not overwrite its outcome), missing
-- Every value is read and checked before the first write (Redis keeps a failed script's earlier
-- writes), so a corrupt counter or timestamp stops the script with nothing written.
local function int(value)
  if value == false or value == '' then return 0 end
  if string.match(value, '^%-?%d+$') then return tonumber(value) end
  return nil
end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', ''} end
if status == ARGV[1] then return {'already', status} end
if status == 'completed' or status == 'failed' or status == 'cancelled' or status == 'expired' then
  return {'conflict', status}
end
local fields = {'pending', 'running', ARGV[1], 'created_us'}
local values = redis.call('HMGET', KEYS[1], unpack(fields))
local n = {}
for i, field in ipairs(fields) do
  n[field] = int(values[i])
  if n[field] == nil then
    return redis.error_reply('stop_batch: batch field ' .. field .. ' is not an integer; nothing was written')
  end
end
if values[4] == false then
  return redis.error_reply('stop_batch: the batch has no created_us; nothing was written')
end
if n['pending'] + n['running'] == 0 then
  return {'settled', status}
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', n[ARGV[1]] + n['pending']), 'pending', 0,
  'status', ARGV[1], 'stop_reason', ARGV[2],
  'completed_us', string.format('%.0f', now_us), 'updated_us', string.format('%.0f', now_us),
  'total_duration_ns', string.format('%.0f', (now_us - n['created_us']) * 1000))
if KEYS[2] then redis.call('HINCRBY', KEYS[2], 'batches_finished_total|status=' .. ARGV[1], 1) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return {'stopped', string.format('%.0f', n['running'])}
