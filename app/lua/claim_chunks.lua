-- Take the next chunks of a batch's fan-out, so that at most a budget of its chunks are in
-- flight (in the ledger: enqueued or about to be, and not finished). A finished chunk leaves the
-- ledger in the same call, so a chunk finished twice frees one place, not two.
-- KEYS[1] batch hash, KEYS[2] the batch's chunk ledger
-- ARGV[1] budget (chunks in flight at most, >= 1), ARGV[2] chunk size (items, >= 1),
-- ARGV[3] first position of a chunk whose items all ended, or ''
-- Returns a flat list {start, stop, start, stop, ...} of the chunks taken: each is now in the
-- ledger with no message id, and `fanout_next` is past it. The caller sends their messages; one
-- it never sends is re-enqueued by the reconciler like a lost message. Nothing is taken for a
-- batch that is gone. A cancelled or expired batch still takes its chunks: they make no model
-- call, and settle their items' records.
-- Every value is read and checked before the first write (Redis keeps a failed script's earlier
-- writes).
local function int(value)
  if value == false or value == '' then return 0 end
  if string.match(value, '^%d+$') then return tonumber(value) end
  return nil
end
local budget, size = tonumber(ARGV[1]), tonumber(ARGV[2])
if not budget or budget < 1 or not size or size < 1 then
  return redis.error_reply('claim_chunks: budget and chunk size must be positive; nothing was written')
end
local fields = redis.call('HMGET', KEYS[1], 'status', 'total', 'fanout_next')
local status, total, next_start = fields[1], int(fields[2]), int(fields[3])
if total == nil or next_start == nil then
  return redis.error_reply('claim_chunks: batch total or fanout_next is not an integer; nothing was written')
end
local in_flight = redis.call('HLEN', KEYS[2])
if ARGV[3] ~= '' then
  in_flight = in_flight - redis.call('HDEL', KEYS[2], ARGV[3])
end
if not status then return {} end
local taken = {}
while in_flight < budget and next_start < total do
  local stop = math.min(next_start + size, total) - 1
  redis.call('HSET', KEYS[2], tostring(next_start), string.format('%d:', stop))
  taken[#taken + 1] = next_start
  taken[#taken + 1] = stop
  next_start = stop + 1
  in_flight = in_flight + 1
end
if #taken > 0 then
  redis.call('HSET', KEYS[1], 'fanout_next', string.format('%d', next_start))
end
return taken
