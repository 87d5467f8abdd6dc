-- Record one callback delivery attempt: the batch's latest-attempt fields and attempt count,
-- the attempt appended (with its number) to the batch's capped list of attempts, and the metric.
-- KEYS[1] batch hash, KEYS[2] attempts list, KEYS[3] metric counters hash.
-- ARGV[1] sent_us, ARGV[2] status code ('' for none), ARGV[3] error ('' for none),
-- ARGV[4] delivered ('1' or '0'), ARGV[5] the attempt as a non-empty JSON object without its
-- number, ARGV[6] most attempts the list keeps, ARGV[7] metric counter field.
-- Returns the batch's attempt count, this attempt included.
redis.call('HSET', KEYS[1], 'callback_sent_us', ARGV[1], 'callback_status_code', ARGV[2],
           'callback_error', ARGV[3], 'callback_delivered', ARGV[4])
local attempt = redis.call('HINCRBY', KEYS[1], 'callback_attempts', 1)
-- The number is spliced in as text: a cjson round trip would round the microsecond times.
redis.call('RPUSH', KEYS[2], '{"attempt":' .. attempt .. ',' .. string.sub(ARGV[5], 2))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[6]), -1)
redis.call('HINCRBY', KEYS[3], ARGV[7], 1)
return attempt
