-- Helpers of the scripts that check every value before their first write (a script's earlier
-- writes stay when a later command fails). Included by app/store/scripts.py where a script says
-- `--#include checked`, after it has set `local SCRIPT = '<its name>'`.
local function int(value)
  if value == false or value == nil or value == '' then return 0 end
  if type(value) == 'number' and value == math.floor(value) then return value end
  if type(value) == 'string' and string.match(value, '^%-?%d+$') then return tonumber(value) end
  return nil
end
local function fmt(n) return string.format('%.0f', n) end
local function bad(what) return redis.error_reply(SCRIPT .. ': ' .. what .. '; nothing was written') end
-- One command for many arguments, in slices that stay within Lua's unpack limit.
local function call_sliced(command, key, args, per_call)
  for first = 1, #args, per_call do
    local slice = {}
    for i = first, math.min(first + per_call - 1, #args) do slice[#slice + 1] = args[i] end
    if key then redis.call(command, key, unpack(slice)) else redis.call(command, unpack(slice)) end
  end
end
-- The error reply for a run's messages ([id, json] pairs) or blocks ([label, json object, version]
-- triples) that are malformed; nil when they are well formed.
local function bad_run(messages, blocks)
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
  return nil
end
