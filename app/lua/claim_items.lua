-- Claim many items of one batch at once (a worker's items that are ready in the same event-loop
-- tick): per item exactly what claim_item.lua does, with the batch read and its counters moved
-- once per call. An item of a blob-stored batch that has no hash yet gets it here (as
-- materialize_items.lua would make it), so it costs one HMGET and one HSET in all.
-- KEYS[1] batch hash, KEYS[2..n+1] item hashes
-- ARGV[1] owner (worker run id), ARGV[2] lease length in microseconds, ARGV[3] batch id, then four
--   values per item, in KEYS order: item id (not stored: the hash's key names it), agent id, index,
--   request_at ("<blob>:<first>:<last>");
--   request_at '' when the item is not to be made here (a batch stored before blobs)
-- Returns {now_us, action per item}: the actions of claim_item.lua (run, busy, done, stopped,
-- stop_running, missing). A hash without a status (only a field another step set early, such as
-- `waiting`) counts as none: its fields are kept, the rest added. A claim to run clears `waiting`:
-- a new run waits for nothing yet (the mark of an item given back while it waited stays until then).
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_s = string.format('%.0f', now_us)
local until_s = string.format('%.0f', now_us + tonumber(ARGV[2]))
local bstatus = redis.call('HGET', KEYS[1], 'status')
local stopped_batch = bstatus == 'cancelled' or bstatus == 'expired'
-- Each item's state, read before any item is written (a key of the wrong type stops the script
-- here, with nothing written). An item named twice is `busy` the second time: one run of it.
local states, seen = {}, {}
for i = 2, #KEYS do
  if not seen[KEYS[i]] then
    states[i] = redis.call('HMGET', KEYS[i], 'status', 'lease_owner', 'lease_until_us', 'attempts', 'waiting')
  end
  seen[KEYS[i]] = true
end
local out = {now_s}
local started = 0
for i = 2, #KEYS do
  local key = KEYS[i]
  local at = 4 + (i - 2) * 4
  local fields = states[i] or {}
  local status = fields[1]
  local made = {}
  if not status and ARGV[at + 3] ~= '' then
    status = 'pending'
    made = {'batch_id', ARGV[3], 'agent_id', ARGV[at + 1], 'idx', ARGV[at + 2],
      'request_at', ARGV[at + 3]}
  end
  local action
  if states[i] == nil then
    action = 'busy'  -- named twice: the first one claims it
  elseif not status then
    action = 'missing'
  elseif status ~= 'pending' and status ~= 'running' then
    action = 'done'
  else
    -- The caller's own lease does not stop it: the caller knows it is not running the item any more.
    local lease_live = status == 'running' and fields[2] ~= ARGV[1] and tonumber(fields[3] or '0') > now_us
    if lease_live then
      action = 'busy'
    elseif stopped_batch and status == 'pending' then
      -- the stop script already moved this item's count from pending to the stop status
      table.insert(made, 'status'); table.insert(made, bstatus)
      table.insert(made, 'completed_us'); table.insert(made, now_s)
      redis.call('HSET', key, unpack(made))
      action = 'stopped'
    elseif stopped_batch then
      action = 'stop_running'
    else
      if status == 'pending' then started = started + 1 end
      for _, v in ipairs({'status', 'running', 'lease_owner', ARGV[1], 'lease_until_us', until_s,
          'started_us', now_s, 'attempts', tostring((tonumber(fields[4] or '0') or 0) + 1)}) do
        table.insert(made, v)
      end
      redis.call('HSET', key, unpack(made))
      if fields[5] then redis.call('HDEL', key, 'waiting') end
      action = 'run'
    end
  end
  table.insert(out, action)
end
if started > 0 then
  redis.call('HINCRBY', KEYS[1], 'pending', -started)
  redis.call('HINCRBY', KEYS[1], 'running', started)
end
return out
