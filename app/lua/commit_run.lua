-- Record the end of one run: its messages, memory block changes, and (for a batch item) the
-- item's outcome and the batch counters. Runs once per item: a second commit is a no-op.
-- KEYS[1] global sequence, KEYS[2] agent message index, KEYS[3] agent blocks hash,
-- KEYS[4] item hash, KEYS[5] batch hash, KEYS[6] batch message index,
-- KEYS[7] batch-and-agent message index (KEYS[4..7] are '' for a run outside a batch),
-- KEYS[8] agent record, KEYS[9] agent's pending approval marker,
-- KEYS[10] metric counters, KEYS[11] ttft histogram, KEYS[12] duration histogram, KEYS[13] recent
-- ttft samples (KEYS[10..13] absent or '': no metrics; only a batch item's commit records them)
-- ARGV[1] key prefix for messages, ARGV[2] JSON {"messages": [[id, json]...],
--   "blocks": [[label, json, version the run started from]...]}
-- ARGV[3] outcome (succeeded|errored|cancelled|expired), ARGV[4] stop_reason, ARGV[5] ttft_ns,
-- ARGV[6] total_duration_ns, ARGV[7] error text, ARGV[8] first token time (us, Redis clock) or '',
-- ARGV[9] id of the approval request this run answers or '', ARGV[10] id of the approval request
-- this run leaves pending or '', ARGV[11] error and ARGV[12] stop_reason of a refused answer,
-- ARGV[13] prefix of the per-minute throughput hashes, ARGV[14] ttft and ARGV[15] duration
-- histogram bounds (seconds, comma-separated, ascending)
-- Returns {committed, remaining items, batch status, stale label, refused}: committed is 1, 0 for
-- a duplicate commit, or -1 when a block changed since the run read it (another run of the same
-- agent committed first): nothing is written and the caller replays its edits on the new value.
-- refused is 1 when the run answers an approval that another run answered first: none of its
-- messages or blocks are written; a batch item is recorded as errored (ARGV[11], ARGV[12]).
-- The marker holds the pending request's id, '' once answered; absent (an approval asked before
-- the marker existed) it refuses nothing.
-- A batch item's hash gets msg_seq = 'first:last' sequence of the messages it wrote (if any).
-- Every value is read and checked before the first write: Redis does not undo a script's
-- earlier writes when a later command fails, so bad data must stop the script before any.
local batch_run = KEYS[4] ~= ''

local function int(value)
  if value == false or value == nil or value == '' then return 0 end
  if type(value) == 'number' and value == math.floor(value) then return value end
  if type(value) == 'string' and string.match(value, '^%-?%d+$') then return tonumber(value) end
  return nil
end
local function fmt(n) return string.format('%.0f', n) end
local function bad(what) return redis.error_reply('commit_run: ' .. what .. '; nothing was written') end
local function type_of(key) return redis.call('TYPE', key)['ok'] end
-- One command for many arguments, in slices that stay within Lua's unpack limit.
local function call_sliced(command, key, args, per_call)
  for first = 1, #args, per_call do
    local slice = {}
    for i = first, math.min(first + per_call - 1, #args) do slice[#slice + 1] = args[i] end
    if key then redis.call(command, key, unpack(slice)) else redis.call(command, unpack(slice)) end
  end
end

local t = redis.call('TIME')
local now_s = fmt(tonumber(t[1]) * 1000000 + tonumber(t[2]))
local bstatus, status = '', ''
if batch_run then
  status = redis.call('HGET', KEYS[4], 'status')
  bstatus = redis.call('HGET', KEYS[5], 'status') or ''
  if status ~= 'pending' and status ~= 'running' then
    return {0, -1, bstatus, '', 0}
  end
end

-- Read and check everything.
local decoded, payload = pcall(cjson.decode, ARGV[2])
if not decoded or type(payload) ~= 'table' then return bad('the payload is not a JSON object') end
local messages, blocks = payload['messages'] or {}, payload['blocks'] or {}
if type(messages) ~= 'table' or type(blocks) ~= 'table' then return bad('messages and blocks must be lists') end
for _, pair in ipairs(messages) do
  if type(pair) ~= 'table' or type(pair[1]) ~= 'string' or type(pair[2]) ~= 'string' then
    return bad('a message is not [id, json]')
  end
end
for _, block in ipairs(blocks) do
  if type(block) ~= 'table' or type(block[1]) ~= 'string' or type(block[2]) ~= 'string' or int(block[3]) == nil then
    return bad('a block is not [label, json, version]')
  end
  local ok, value = pcall(cjson.decode, block[2])
  if not ok or type(value) ~= 'table' then return bad('block ' .. block[1] .. ' is not a JSON object') end
end
local outcomes = {succeeded = true, errored = true, cancelled = true, expired = true}
if not outcomes[ARGV[3]] then return bad('unknown outcome ' .. ARGV[3]) end
if int(ARGV[5]) == nil or int(ARGV[6]) == nil or int(ARGV[8]) == nil then
  return bad('ttft_ns, total_duration_ns and the first token time must be integers')
end
local seq = int(redis.call('GET', KEYS[1]))
if seq == nil then return bad('the sequence is not an integer') end
for _, key in ipairs({KEYS[2], KEYS[6], KEYS[7]}) do
  if key ~= '' and type_of(key) ~= 'zset' and type_of(key) ~= 'none' then
    return bad(key .. ' is not a sorted set')
  end
end

local agent_exists = redis.call('EXISTS', KEYS[8]) == 1
local marker = redis.call('GET', KEYS[9])
local refused = ARGV[9] ~= '' and marker and marker ~= ARGV[9]
if refused then
  if not batch_run then return {0, 0, '', '', 1} end
  messages, blocks = {}, {}
end
local outcome, stop_reason, err = ARGV[3], ARGV[4], ARGV[7]
if refused then outcome, stop_reason, err = 'errored', ARGV[12], ARGV[11] end

local current_blocks = {}
if agent_exists then
  for _, block in ipairs(blocks) do
    local current = redis.call('HGET', KEYS[3], block[1])
    local version = 0
    if current then
      local ok, value = pcall(cjson.decode, current)
      if not ok or type(value) ~= 'table' or int(value['version']) == nil then
        return bad('the stored block ' .. block[1] .. ' is unreadable')
      end
      version = int(value['version'])
    end
    if version ~= int(block[3]) then return {-1, -1, bstatus, block[1], 0} end
  end
end

-- Metrics of the item's end (app/store/monitor.py reads them): which fields to add to.
local metrics = batch_run and KEYS[10] ~= nil and KEYS[10] ~= ''
local observed = {}
local function bucket(bounds, seconds)
  for bound in string.gmatch(bounds or '', '[^,]+') do
    if tonumber(bound) == nil then return nil end
    if seconds <= tonumber(bound) then return 'le=' .. bound end
  end
  return 'le=+Inf'
end
if metrics then
  for _, spec in ipairs({{KEYS[11], ARGV[5], ARGV[14]}, {KEYS[12], ARGV[6], ARGV[15]}}) do
    if spec[2] ~= '' then
      local seconds = int(spec[2]) / 1e9
      local field = bucket(spec[3], seconds)
      if field == nil then return bad('a histogram bound is not a number') end
      table.insert(observed, {spec[1], field, string.format('%.9f', seconds)})
    end
  end
end

local counters, remaining = {}, 0
if batch_run then
  local from = 'pending'
  if status == 'running' then from = 'running' end
  local fields = {'first_token_us', 'pending', 'running', outcome}
  if outcome == 'errored' then table.insert(fields, 'reason:' .. stop_reason) end
  local values = redis.call('HMGET', KEYS[5], unpack(fields))
  for i, field in ipairs(fields) do
    local n = int(values[i])
    if n == nil then return bad('batch field ' .. field .. ' is not an integer') end
    counters[field] = n
  end
  local first = counters['first_token_us']
  counters['first_token_us'] = nil
  if ARGV[8] ~= '' and (values[1] == false or values[1] == '' or first > int(ARGV[8])) then
    counters['first_token_us'] = int(ARGV[8])
  end
  -- Unstarted items of a stopped batch were already counted as stopped (stop_batch.lua).
  if from == 'running' or (bstatus ~= 'cancelled' and bstatus ~= 'expired') then
    counters[from] = counters[from] - 1
  end
  counters[outcome] = counters[outcome] + 1
  if outcome == 'errored' then counters['reason:' .. stop_reason] = counters['reason:' .. stop_reason] + 1 end
  remaining = (counters['pending'] or 0) + (counters['running'] or 0)
end

-- Write.
-- Each hash is written by one HSET of all its fields (commands run inside a script cost Redis as
-- much as a client's): the batch's counters here, the item's below with its msg_seq.
local item_fields = {}
if batch_run then
  local batch_fields = {'updated_us', now_s}
  for field, n in pairs(counters) do
    table.insert(batch_fields, field)
    table.insert(batch_fields, fmt(n))
  end
  redis.call('HSET', KEYS[5], unpack(batch_fields))
  item_fields = {'status', outcome, 'stop_reason', stop_reason, 'ttft_ns', ARGV[5], 'total_duration_ns', ARGV[6],
    'error', err, 'completed_us', now_s, 'lease_until_us', '0'}
end
if metrics then
  local reason = stop_reason
  if reason == '' then reason = outcome end
  redis.call('HINCRBY', KEYS[10], 'items_finished_total|stop_reason=' .. reason, 1)
  local minute = ARGV[13] .. fmt(math.floor(tonumber(t[1]) / 60))
  -- The first request of a minute starts its hash: it alone sets the expiry.
  if redis.call('HINCRBY', minute, 'finished', 1) == 1 then redis.call('EXPIRE', minute, 7200) end
  if outcome == 'errored' then redis.call('HINCRBY', minute, 'failed', 1) end
  for i, one in ipairs(observed) do
    redis.call('HINCRBY', one[1], one[2], 1)  -- the count is the sum of the buckets
    redis.call('HINCRBYFLOAT', one[1], 'sum', one[3])
    if i == 1 and ARGV[5] ~= '' then
      redis.call('LPUSH', KEYS[13], one[3])
      redis.call('LTRIM', KEYS[13], 0, 999)
    end
  end
end
-- A deleted agent gets no keys back; its messages stay readable through the batch that made them.
if (agent_exists or batch_run) and #messages > 0 then
  local values, scored = {}, {}
  for _, pair in ipairs(messages) do
    seq = seq + 1
    table.insert(values, ARGV[1] .. pair[1])
    table.insert(values, pair[2])
    table.insert(scored, fmt(seq))
    table.insert(scored, pair[1])
  end
  call_sliced('MSET', nil, values, 1000)
  if agent_exists then call_sliced('ZADD', KEYS[2], scored, 1000) end
  if batch_run then
    call_sliced('ZADD', KEYS[6], scored, 1000)
    call_sliced('ZADD', KEYS[7], scored, 1000)
  end
  redis.call('SET', KEYS[1], fmt(seq))
  -- One script writes all of an item's messages, so they hold consecutive sequence numbers: the
  -- range finds them in the batch index (the results export) without a per-item index.
  if batch_run then
    table.insert(item_fields, 'msg_seq')
    table.insert(item_fields, fmt(seq - #messages + 1) .. ':' .. fmt(seq))
  end
end
if batch_run then redis.call('HSET', KEYS[4], unpack(item_fields)) end
if agent_exists then
  for _, block in ipairs(blocks) do
    redis.call('HSET', KEYS[3], block[1], block[2])
  end
  if not refused and ARGV[10] ~= '' then
    redis.call('SET', KEYS[9], ARGV[10])
  elseif not refused and ARGV[9] ~= '' then
    redis.call('SET', KEYS[9], '')
  end
end
local r = 0
if refused then r = 1 end
return {1, remaining, bstatus, '', r}
