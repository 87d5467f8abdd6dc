-- Record the message that now carries a chunk of a batch's fan-out, only while that chunk is in
-- flight (in the ledger). A chunk that already finished (another worker ran its message to the
-- end before its sender got here, or a redundant copy of it was sent) must not come back into
-- the ledger: it would hold one of the batch's places until a sweep re-ran it.
-- KEYS[1] the batch's chunk ledger
-- ARGV[1] the chunk's first position, ARGV[2] "<last position>:<message id>"
-- Returns 1 when recorded, 0 when the chunk is not in flight.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
