-- Record the end of one run: its messages, memory block changes, and (for a batch item) the
-- item's outcome and the batch counters. Runs once per item: a second commit is a no-op.
-- KEYS[1] global sequence, KEYS[2] agent message index, KEYS[3] agent blocks hash,
-- KEYS[4] item hash, KEYS[5] batch hash, KEYS[6] batch message index,
-- KEYS[7] batch-and-agent message index (KEYS[4..7] are '' for a run outside a batch)
-- ARGV[1] key prefix for messages, ARGV[2] JSON {"messages": [[id, json]...], "blocks": [[label, json]...]}
-- ARGV[3] outcome (succeeded|errored|cancelled|expired), ARGV[4] stop_reason, ARGV[5] ttft_ns,
-- ARGV[6] total_duration_ns, ARGV[7] error text, ARGV[8] first token time (us, Redis clock) or ''
-- Returns {committed (0|1), remaining items, batch status}
local batch_run = KEYS[4] ~= ''
local t = redis.call('TIME')
local now_s = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
local bstatus = ''
if batch_run then
  local status = redis.call('HGET', KEYS[4], 'status')
  bstatus = redis.call('HGET', KEYS[5], 'status') or ''
  if status ~= 'pending' and status ~= 'running' then
    return {0, -1, bstatus}
  end
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
local payload = cjson.decode(ARGV[2])
for _, pair in ipairs(payload['messages']) do
  local seq = redis.call('INCR', KEYS[1])
  redis.call('SET', ARGV[1] .. pair[1], pair[2])
  redis.call('ZADD', KEYS[2], seq, pair[1])
  if batch_run then
    redis.call('ZADD', KEYS[6], seq, pair[1])
    redis.call('ZADD', KEYS[7], seq, pair[1])
  end
end
for _, pair in ipairs(payload['blocks']) do
  redis.call('HSET', KEYS[3], pair[1], pair[2])
end
if not batch_run then return {1, 0, ''} end
local remaining = tonumber(redis.call('HGET', KEYS[5], 'pending') or '0') +
  tonumber(redis.call('HGET', KEYS[5], 'running') or '0')
return {1, remaining, bstatus}
