-- List a new batch's item ids in its item index, in order (score = position), in one command
-- from the client: a ZADD of 100,000 members cost the web process more to encode than the rest
-- of the create.
-- KEYS[1] the batch's item index (sorted set)
-- ARGV[1] the ids, concatenated; ARGV[2] the length of each (all ids have the same length);
-- ARGV[3] (optional, default 0) the position of the first (a create lists its ids a blob at a time)
-- Returns the number of ids listed.
local ids, width, offset = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3] or 0)
local count = #ids / width
local step = 1000
for first = 0, count - 1, step do
  local args = {}
  for i = first, math.min(first + step, count) - 1 do
    args[#args + 1] = offset + i
    args[#args + 1] = string.sub(ids, i * width + 1, (i + 1) * width)
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
return count
