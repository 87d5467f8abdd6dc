-- Record the end of a run outside a batch (the synchronous agent route): its messages and memory
-- block changes. A batch item's run commits with commit_items.lua.
-- KEYS[1] global sequence, KEYS[2] agent message index, KEYS[3] agent blocks hash,
-- KEYS[4] agent record, KEYS[5] agent's pending approval marker
-- ARGV[1] key prefix for messages, ARGV[2] JSON {"messages": [[id, json]...],
--   "blocks": [[label, json, version the run started from]...]}
-- ARGV[3] id of the approval request this run answers or '', ARGV[4] id of the approval request
-- this run leaves pending or ''
-- Returns {committed, 0, '', stale label, refused}: committed is 1, or -1 when a block changed
-- since the run read it (another run of the same agent committed first): nothing is written and
-- the caller replays its edits on the new value. refused is 1 (nothing written) when the run
-- answers an approval that another run answered first. The marker holds the pending request's
-- id, '' once answered; absent (an approval asked before the marker existed) it refuses nothing.
-- Every value is read and checked before the first write: Redis does not undo a script's
-- earlier writes when a later command fails, so bad data must stop the script before any.
-- A deleted agent gets no keys back: nothing is written for it.
local SCRIPT = 'commit_run'
--#include checked

local decoded, payload = pcall(cjson.decode, ARGV[2])
if not decoded or type(payload) ~= 'table' then return bad('the payload is not a JSON object') end
local messages, blocks = payload['messages'] or {}, payload['blocks'] or {}
if type(messages) ~= 'table' or type(blocks) ~= 'table' then return bad('messages and blocks must be lists') end
local malformed = bad_run(messages, blocks)
if malformed then return malformed end
if redis.call('EXISTS', KEYS[4]) == 0 then return {1, 0, '', '', 0} end
local seq = int(redis.call('GET', KEYS[1]))
if seq == nil then return bad('the sequence is not an integer') end
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'zset' and kind ~= 'none' then return bad(KEYS[2] .. ' is not a sorted set') end
local marker = redis.call('GET', KEYS[5])
if ARGV[3] ~= '' and marker and marker ~= ARGV[3] then return {0, 0, '', '', 1} end
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
  if version ~= int(block[3]) then return {-1, -1, '', block[1], 0} end
end

if #messages > 0 then
  local values, scored = {}, {}
  for _, pair in ipairs(messages) do
    seq = seq + 1
    table.insert(values, ARGV[1] .. pair[1])
    table.insert(values, pair[2])
    table.insert(scored, fmt(seq))
    table.insert(scored, pair[1])
  end
  call_sliced('MSET', nil, values, 1000)
  call_sliced('ZADD', KEYS[2], scored, 1000)
  redis.call('SET', KEYS[1], fmt(seq))
end
for _, block in ipairs(blocks) do
  redis.call('HSET', KEYS[3], block[1], block[2])
end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[5], ARGV[4])
elseif ARGV[3] ~= '' then
  redis.call('SET', KEYS[5], '')
end
return {1, 0, '', '', 0}
