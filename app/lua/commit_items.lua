-- Record the ends of many runs of one batch's items at once (the runs a worker finished in the same
-- event-loop tick): per item exactly what commit_run.lua does for a batch item, each item checked
-- and written on its own (a duplicate, a lost lease or a stale block leaves that item alone and
-- its siblings go on), with the batch counters, the metrics, the messages (one MSET) and each
-- message index (one ZADD) written once per call.
-- KEYS[1] global sequence, KEYS[2] batch hash, KEYS[3] batch message index, KEYS[4] metric counters,
-- KEYS[5] ttft histogram, KEYS[6] duration histogram, KEYS[7] recent ttft samples, then four keys per
-- agent: agent record, agent blocks hash, agent message index, agent's pending approval marker;
-- then one item hash per item (in ARGV[8]'s order)
-- ARGV[1] key prefix for messages, ARGV[2] prefix of the per-minute throughput hashes, ARGV[3] ttft
-- and ARGV[4] duration histogram bounds (seconds, comma-separated, ascending), ARGV[5] error and
-- ARGV[6] stop_reason of a refused answer, ARGV[7] owner (worker run id; '' checks no lease), ARGV[8] JSON list, one
-- object per item: {"agent": agent number (1-based), "messages": [[id, json]...], "blocks": [[label,
-- json, version the run started from]...], "outcome", "stop_reason", "ttft_ns", "total_ns", "error",
-- "first_token_us", "answers" (approval it answers), "leaves" (approval it leaves pending)}; absent
-- or '' for none; ARGV[9] the number of agents
-- Returns {batch status, then per item: committed, remaining, stale label, refused}. committed is
-- 1; 0 for a duplicate or for an item running under another owner's live lease (nothing written);
-- -1 when a block changed since the run read it (nothing written for that item: replay, retry).
-- remaining is the batch's unended items just after that item's commit (-1 when nothing written).
-- refused is 1 when the run answered an approval another run answered first: the item is recorded
-- as errored (ARGV[5], ARGV[6]) without its messages or blocks.
-- Every value is read and checked before the first write (Redis does not undo a script's writes).
local SCRIPT = 'commit_items'
--#include checked
local function str(value) if type(value) == 'string' then return value end return '' end

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_s = fmt(now_us)

-- Read and check everything.
local decoded, items = pcall(cjson.decode, ARGV[8])
if not decoded or type(items) ~= 'table' then return bad('the payload is not a JSON list') end
local agents = tonumber(ARGV[9])
if agents == nil or #KEYS ~= 7 + agents * 4 + #items then return bad('the keys do not match the items') end
local outcomes = {succeeded = true, errored = true, cancelled = true, expired = true}
local reasons = {[ARGV[6]] = true}
for _, item in ipairs(items) do
  if type(item) ~= 'table' or type(item.agent) ~= 'number' or item.agent < 1 or item.agent > agents then
    return bad('an item names no agent')
  end
  item.messages, item.blocks = item.messages or {}, item.blocks or {}
  if type(item.messages) ~= 'table' or type(item.blocks) ~= 'table' then return bad('messages and blocks must be lists') end
  local malformed = bad_run(item.messages, item.blocks)
  if malformed then return malformed end
  if not outcomes[item.outcome] then return bad('unknown outcome ' .. tostring(item.outcome)) end
  item.stop_reason, item.error = str(item.stop_reason), str(item.error)
  item.answers, item.leaves = str(item.answers), str(item.leaves)
  item.ttft_ns, item.total_ns, item.first_token_us = str(item.ttft_ns), str(item.total_ns), str(item.first_token_us)
  if int(item.ttft_ns) == nil or int(item.total_ns) == nil or int(item.first_token_us) == nil then
    return bad('ttft_ns, total_ns and first_token_us must be integers')
  end
  if item.outcome == 'errored' then reasons[item.stop_reason] = true end
end
local seq = int(redis.call('GET', KEYS[1]))
if seq == nil then return bad('the sequence is not an integer') end
local indexes = {KEYS[3]}
for a = 1, agents do table.insert(indexes, KEYS[7 + (a - 1) * 4 + 3]) end
for _, key in ipairs(indexes) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'zset' and kind ~= 'none' then return bad(key .. ' is not a sorted set') end
end
local bounds = {ARGV[3], ARGV[4]}
for _, list in ipairs(bounds) do
  for bound in string.gmatch(list, '[^,]+') do
    if tonumber(bound) == nil then return bad('a histogram bound is not a number') end
  end
end
local fields = {'status', 'first_token_us', 'pending', 'running', 'succeeded', 'errored', 'cancelled', 'expired'}
for reason in pairs(reasons) do table.insert(fields, 'reason:' .. reason) end
local values = redis.call('HMGET', KEYS[2], unpack(fields))
local bstatus = values[1] or ''
local counters = {}
for i = 2, #fields do
  local n = int(values[i])
  if n == nil then return bad('batch field ' .. fields[i] .. ' is not an integer') end
  counters[fields[i]] = n
end
local first_token_set = values[2] ~= false and values[2] ~= ''
local first_token = counters['first_token_us']
local agent = {}
for a = 1, agents do
  local base = 7 + (a - 1) * 4
  agent[a] = {record = KEYS[base + 1], blocks = KEYS[base + 2], index = KEYS[base + 3], marker_key = KEYS[base + 4],
    exists = redis.call('EXISTS', KEYS[base + 1]) == 1, marker = redis.call('GET', KEYS[base + 4]),
    marker_changed = false, versions = {}, scored = {}}
end

local function version_of(a, label)
  if a.versions[label] == nil then
    local current = redis.call('HGET', a.blocks, label)
    local version = 0
    if current then
      local ok, value = pcall(cjson.decode, current)
      if not ok or type(value) ~= 'table' or int(value['version']) == nil then return nil end
      version = int(value['version'])
    end
    a.versions[label] = version
  end
  return a.versions[label]
end
-- Every stored block a run changed is read (and checked) now, before any item writes.
for _, item in ipairs(items) do
  local a = agent[item.agent]
  if a.exists then
    for _, block in ipairs(item.blocks) do
      if version_of(a, block[1]) == nil then return bad('the stored block ' .. block[1] .. ' is unreadable') end
    end
  end
end
-- Each item's state, read before any item is written (a key of the wrong type stops the script
-- here, with nothing written). An item named twice is a duplicate the second time.
local states, seen = {}, {}
for n = 1, #items do
  local key = KEYS[7 + agents * 4 + n]
  if seen[key] then
    states[n] = {'duplicate'}
  else
    states[n] = redis.call('HMGET', key, 'status', 'lease_owner', 'lease_until_us')
    seen[key] = true
  end
end
local stopped_batch = bstatus == 'cancelled' or bstatus == 'expired'
local out = {bstatus}
local values_to_set, batch_scored = {}, {}
local ended, metric_reasons, minute_finished, minute_failed = 0, {}, 0, 0
local observed = {{}, {}}
local sums = {0, 0}
local samples = {}

local function bucket(list, seconds)
  for bound in string.gmatch(list, '[^,]+') do
    if seconds <= tonumber(bound) then return 'le=' .. bound end
  end
  return 'le=+Inf'
end

for n, item in ipairs(items) do
  local key = KEYS[7 + agents * 4 + n]
  local a = agent[item.agent]
  local state = states[n]
  local status = state[1]
  local lost = ARGV[7] ~= '' and status == 'running' and state[2] and state[2] ~= ARGV[7]
    and (tonumber(state[3] or '0') or 0) > now_us
  if (status ~= 'pending' and status ~= 'running') or lost then
    for _, v in ipairs({0, -1, '', 0}) do table.insert(out, v) end
  else
    local refused = item.answers ~= '' and a.marker and a.marker ~= item.answers
    local messages, blocks, outcome, stop_reason, err = item.messages, item.blocks, item.outcome, item.stop_reason,
      item.error
    if refused then messages, blocks, outcome, stop_reason, err = {}, {}, 'errored', ARGV[6], ARGV[5] end
    local stale = nil
    if a.exists then
      for _, block in ipairs(blocks) do
        if version_of(a, block[1]) ~= int(block[3]) then stale = block[1]; break end
      end
    end
    if stale then
      for _, v in ipairs({-1, -1, stale, 0}) do table.insert(out, v) end
    else
      if item.first_token_us ~= '' and (not first_token_set or first_token > int(item.first_token_us)) then
        first_token, first_token_set = int(item.first_token_us), true
        counters['first_token_us'] = first_token
      end
      -- Unstarted items of a stopped batch were already counted as stopped (stop_batch.lua): the
      -- count moves from there.
      local from = status
      if from == 'pending' and stopped_batch then from = bstatus end
      counters[from] = counters[from] - 1
      counters[outcome] = counters[outcome] + 1
      if outcome == 'errored' then counters['reason:' .. stop_reason] = counters['reason:' .. stop_reason] + 1 end
      ended = ended + 1
      local reason = stop_reason
      if reason == '' then reason = outcome end
      metric_reasons[reason] = (metric_reasons[reason] or 0) + 1
      minute_finished = minute_finished + 1
      if outcome == 'errored' then minute_failed = minute_failed + 1 end
      for h, spec in ipairs({item.ttft_ns, item.total_ns}) do
        if spec ~= '' then
          local seconds = int(spec) / 1e9
          local field = bucket(bounds[h], seconds)
          observed[h][field] = (observed[h][field] or 0) + 1
          sums[h] = sums[h] + seconds
          if h == 1 then table.insert(samples, string.format('%.9f', seconds)) end
        end
      end
      local item_fields = {'status', outcome, 'stop_reason', stop_reason, 'ttft_ns', item.ttft_ns, 'total_duration_ns',
        item.total_ns, 'error', err, 'completed_us', now_s, 'lease_until_us', '0'}
      if #messages > 0 then
        for _, pair in ipairs(messages) do
          seq = seq + 1
          table.insert(values_to_set, ARGV[1] .. pair[1]); table.insert(values_to_set, pair[2])
          if a.exists then table.insert(a.scored, fmt(seq)); table.insert(a.scored, pair[1]) end
          table.insert(batch_scored, fmt(seq)); table.insert(batch_scored, pair[1])
        end
        -- An item's messages hold consecutive sequence numbers: the results export finds them by range.
        table.insert(item_fields, 'msg_seq'); table.insert(item_fields, fmt(seq - #messages + 1) .. ':' .. fmt(seq))
      end
      redis.call('HSET', key, unpack(item_fields))
      if a.exists then
        for _, block in ipairs(blocks) do
          redis.call('HSET', a.blocks, block[1], block[2])
          a.versions[block[1]] = int(block[3]) + 1
        end
        if not refused and item.leaves ~= '' then
          a.marker, a.marker_changed = item.leaves, true
        elseif not refused and item.answers ~= '' then
          a.marker, a.marker_changed = '', true
        end
      end
      local r = 0
      if refused then r = 1 end
      for _, v in ipairs({1, counters['pending'] + counters['running'], '', r}) do table.insert(out, v) end
    end
  end
end

-- Write what is shared, once.
if ended > 0 then
  local batch_fields = {'updated_us', now_s}
  for field, n in pairs(counters) do
    if field ~= 'first_token_us' or first_token_set then
      table.insert(batch_fields, field); table.insert(batch_fields, fmt(n))
    end
  end
  redis.call('HSET', KEYS[2], unpack(batch_fields))
  for reason, n in pairs(metric_reasons) do
    redis.call('HINCRBY', KEYS[4], 'items_finished_total|stop_reason=' .. reason, n)
  end
  local minute = ARGV[2] .. fmt(math.floor(tonumber(t[1]) / 60))
  -- The first requests of a minute start its hash: they alone set the expiry.
  if redis.call('HINCRBY', minute, 'finished', minute_finished) == minute_finished then
    redis.call('EXPIRE', minute, 7200)
  end
  if minute_failed > 0 then redis.call('HINCRBY', minute, 'failed', minute_failed) end
  for h, histogram in ipairs({KEYS[5], KEYS[6]}) do
    local any = false
    for field, n in pairs(observed[h]) do
      redis.call('HINCRBY', histogram, field, n)  -- the count is the sum of the buckets
      any = true
    end
    if any then redis.call('HINCRBYFLOAT', histogram, 'sum', string.format('%.9f', sums[h])) end
  end
  if #samples > 0 then
    call_sliced('LPUSH', KEYS[7], samples, 1000)
    redis.call('LTRIM', KEYS[7], 0, 999)
  end
end
if #values_to_set > 0 then
  call_sliced('MSET', nil, values_to_set, 1000)
  call_sliced('ZADD', KEYS[3], batch_scored, 1000)
  redis.call('SET', KEYS[1], fmt(seq))
end
-- A deleted agent gets no keys back; its messages stay readable through the batch that made them.
for _, a in ipairs(agent) do
  if #a.scored > 0 then call_sliced('ZADD', a.index, a.scored, 1000) end
  if a.marker_changed then redis.call('SET', a.marker_key, a.marker) end
end
return out
