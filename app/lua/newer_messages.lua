-- An agent's latest messages committed after a sequence, with the values of those small enough
-- to send: one round trip for what a run needs of its history (app/engine/history.py).
-- KEYS[1] the agent's message index (sorted set: message id by sequence)
-- ARGV[1] sequence already held (only later messages are returned), ARGV[2] at most this many
-- (the latest), ARGV[3] largest value returned in bytes (a larger message is reported by size
-- only and never read), ARGV[4] key prefix of messages
-- Returns a flat list, oldest first: id, sequence, size in bytes, value (nil when too large or
-- gone) for each message.
local found = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. ARGV[1], 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[2]))
local largest = tonumber(ARGV[3])
local out = {}
for i = #found - 1, 1, -2 do
  local key = ARGV[4] .. found[i]
  local size = redis.call('STRLEN', key)
  local value = false
  if size <= largest then value = redis.call('GET', key) end
  table.insert(out, found[i])
  table.insert(out, found[i + 1])
  table.insert(out, size)
  table.insert(out, value)
end
return out
