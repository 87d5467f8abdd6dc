-- Make the keys a create staged while it read its body (app/store/blobs.py StagedRequests)
-- permanent, in its transaction: one command instead of one PERSIST per blob.
-- KEYS the staged keys
-- Returns how many had a time to live.
local persisted = 0
for _, key in ipairs(KEYS) do
  persisted = persisted + redis.call('PERSIST', key)
end
return persisted
