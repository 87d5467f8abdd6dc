-- Give the items of a blob-stored batch that have no hash yet their small pending hash, just
-- before a worker claims them; an item that already has one (claimed, ended, or made by a
-- duplicate chunk's worker) is left exactly as it is. A hash without a status (only a field
-- another step set early, such as `waiting`) counts as none: its fields are kept, the rest added.
-- KEYS[1..n] item hashes
-- ARGV[1] batch id, then four values per item, in KEYS order: item id (not stored: the hash's key
--   names it), agent id, index,
--   request_at ("<blob number>:<first byte>:<last byte>" of its request in the batch's blob)
-- Returns the number of hashes created.
local created = 0
for i, key in ipairs(KEYS) do
  if redis.call('HEXISTS', key, 'status') == 0 then
    local at = 1 + (i - 1) * 4
    redis.call('HSET', key, 'batch_id', ARGV[1], 'agent_id', ARGV[at + 2],
      'idx', ARGV[at + 3], 'status', 'pending', 'request_at', ARGV[at + 4])
    created = created + 1
  end
end
return created
