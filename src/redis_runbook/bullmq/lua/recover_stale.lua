--[[
  Move active jobs whose lock is gone back to the head of their queue, atomically.

  The lock is re-checked here, inside the script: a job whose lock exists (a worker
  still runs it) is never touched. Mirrors BullMQ v5's moveStalledJobsToWait without
  its stall penalty (the stalled counter is only raised when asked).

  KEYS[1] active   KEYS[2] wait   KEYS[3] paused   KEYS[4] meta
  KEYS[5] marker   KEYS[6] events KEYS[7] stalled
  ARGV[1] job key prefix "<prefix>:<queue>:"
  ARGV[2] "1" to count the move as a stall (HINCRBY stc, emit "stalled")
  ARGV[3] layout "v5" | "v6"
  ARGV[4] "1" to break locks that have no TTL (immortal) before moving
  ARGV[5..] job ids
  Returns a flat array: moved count, then "<kind>:<id>" entries for ids not moved,
  kind one of locked | immortal | orphan | gone.
]]
local rcall = redis.call
local meta = rcall("HMGET", KEYS[4], "paused", "concurrency", "opts.maxLenEvents")
local paused = meta[1] ~= false
local maxEvents = tonumber(meta[3]) or 10000
-- v5 keeps a paused queue's jobs in the `paused` list; v6 keeps them in `wait`.
local target = KEYS[2]
if paused and ARGV[3] == "v5" then target = KEYS[3] end

local moved = 0
local skipped = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local jobKey = ARGV[1] .. id
  local lockKey = jobKey .. ":lock"
  local ttl = rcall("PTTL", lockKey)
  if ttl == -1 and ARGV[4] == "1" then
    rcall("DEL", lockKey)
    ttl = -2
  end
  if ttl > 0 then
    skipped[#skipped + 1] = "locked:" .. id
  elseif ttl == -1 then
    skipped[#skipped + 1] = "immortal:" .. id
  elseif rcall("EXISTS", jobKey) == 0 then
    skipped[#skipped + 1] = "orphan:" .. id   -- reported, left in active untouched
  elseif rcall("LREM", KEYS[1], 1, id) == 0 then
    skipped[#skipped + 1] = "gone:" .. id     -- finished or moved since it was read
  else
    rcall("SREM", KEYS[7], id)
    if ARGV[2] == "1" then rcall("HINCRBY", jobKey, "stc", 1) end
    rcall("RPUSH", target, id)                -- the right end: it runs next, like BullMQ
    rcall("XADD", KEYS[6], "MAXLEN", "~", maxEvents, "*", "event", "waiting",
          "jobId", id, "prev", "active")
    if ARGV[2] == "1" then
      rcall("XADD", KEYS[6], "MAXLEN", "~", maxEvents, "*", "event", "stalled", "jobId", id)
    end
    moved = moved + 1
  end
end

-- Wake blocked workers (BZPOPMIN on the marker), as BullMQ does: not while the queue
-- is paused, nor while it is at its global concurrency limit.
if moved > 0 and not paused then
  local limit = tonumber(meta[2])
  if not (limit and rcall("LLEN", KEYS[1]) >= limit) then
    rcall("ZADD", KEYS[5], 0, "0")
  end
end

local result = {moved}
for _, entry in ipairs(skipped) do result[#result + 1] = entry end
return result
