-- Record the end of one run: its messages, memory block changes, and (for a batch item) the
-- item's outcome and the batch counters. Runs once per item: a second commit is a no-op.
-- KEYS[1] global sequence, KEYS[2] agent message index, KEYS[3] agent blocks hash,
-- KEYS[4] item hash, KEYS[5] batch hash, KEYS[6] batch message index,
-- KEYS[7] batch-and-agent message index (KEYS[4..7] are '' for a run outside a batch),
-- KEYS[8] agent record
-- ARGV[1] key prefix for messages, ARGV[2] JSON {"messages": [[id, json]...],
--   "blocks": [[label, json, version the run started from]...]}
-- ARGV[3] outcome (succeeded|errored|cancelled|expired), ARGV[4] stop_reason, ARGV[5] ttft_ns,
-- ARGV[6] total_duration_ns, ARGV[7] error text, ARGV[8] first token time (us, Redis clock) or ''
-- Returns {committed, remaining items, batch status, stale label}: committed is 1, 0 for a
-- duplicate commit, or -1 when a block changed since the run read it (another run of the same
-- agent committed first): nothing is written and the caller replays its edits on the new value.
local batch_run = KEYS[4] ~= ''
local t = redis.call('TIME')
local now_s = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
local bstatus, status = '', ''
if batch_run then
  status = redis.call('HGET', KEYS[4], 'status')
  bstatus = redis.call('HGET', KEYS[5], 'status') or ''
  if status ~= 'pending' and status ~= 'running' then
    return {0, -1, bstatus, ''}
  end
end
local payload = cjson.decode(ARGV[2])
local agent_exists = redis.call('EXISTS', KEYS[8]) == 1
if agent_exists then
  for _, block in ipairs(payload['blocks']) do
    local current = redis.call('HGET', KEYS[3], block[1])
    local version = 0
    if current then version = tonumber(cjson.decode(current)['version'] or 0) end
    if version ~= tonumber(block[3]) then return {-1, -1, bstatus, block[1]} end
  end
end
if batch_run then
  if status == 'running' then
    redis.call('HINCRBY', KEYS[5], 'running', -1)
  elseif bstatus ~= 'cancelled' and bstatus ~= 'expired' then
    redis.call('HINCRBY', KEYS[5], 'pending', -1)
  end
  redis.call('HINCRBY', KEYS[5], ARGV[3], 1)
  if ARGV[3] == 'errored' then
    redis.call('HINCRBY', KEYS[5], 'reason:' .. ARGV[4], 1)
  end
  redis.call('HSET', KEYS[4], 'status', ARGV[3], 'stop_reason', ARGV[4], 'ttft_ns', ARGV[5],
    'total_duration_ns', ARGV[6], 'error', ARGV[7], 'completed_us', now_s, 'lease_until_us', '0')
  if ARGV[8] ~= '' then
    local first = redis.call('HGET', KEYS[5], 'first_token_us')
    if (not first) or first == '' or tonumber(first) > tonumber(ARGV[8]) then
      redis.call('HSET', KEYS[5], 'first_token_us', ARGV[8])
    end
  end
  redis.call('HSET', KEYS[5], 'updated_us', now_s)
end
for _, pair in ipairs(payload['messages']) do
  local seq = redis.call('INCR', KEYS[1])
  redis.call('SET', ARGV[1] .. pair[1], pair[2])
  redis.call('ZADD', KEYS[2], seq, pair[1])
  if batch_run then
    redis.call('ZADD', KEYS[6], seq, pair[1])
    redis.call('ZADD', KEYS[7], seq, pair[1])
  end
end
if agent_exists then
  for _, block in ipairs(payload['blocks']) do
    redis.call('HSET', KEYS[3], block[1], block[2])
  end
end
if not batch_run then return {1, 0, '', ''} end
local remaining = tonumber(redis.call('HGET', KEYS[5], 'pending') or '0') +
  tonumber(redis.call('HGET', KEYS[5], 'running') or '0')
return {1, remaining, bstatus, ''}
