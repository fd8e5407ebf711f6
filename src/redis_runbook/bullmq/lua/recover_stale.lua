--[[
  Walk `active` from its tail and move the jobs whose lock is gone back to the head of
  their queue, atomically, at most ARGV[6] ids per call.

  Each id examined is the list's tail at that moment: a stale one is RPOPed (O(1), no
  LREM that scans the list), any other is rotated to the head (RPOPLPUSH active active),
  where workers' fetches push too. So a walk of LLEN ids, in as many calls as it takes,
  sees every id that was in `active` when it began and is still there, however workers
  push and remove meanwhile: ids never overtake each other in a list, and every id
  added or rotated lands in front of the ones not yet examined. The order of `active`
  means nothing to BullMQ (finishing is LREM by id, the stalled check takes the set).

  The lock is checked here, inside the script: a job whose lock exists (a worker still
  runs it) is never moved. Mirrors BullMQ v5's moveStalledJobsToWait (5.81.x):
  - the events stream is trimmed once, before the first event of the call, to the
    queue's opts.maxLenEvents (10000 when unset), and the events are added untrimmed,
    so a listener sees all of them;
  - with ARGV[2] = "1" (count as a stall) the stalled counter `stc` is raised, a job
    over ARGV[5] (maxStalledCount) that is not a job scheduler's gets
    defa = "job stalled more than allowable limit" (the next worker fails it), and a
    `stalled` event follows `waiting`; without it `stc` is left alone.

  KEYS[1] active   KEYS[2] wait   KEYS[3] paused   KEYS[4] meta
  KEYS[5] marker   KEYS[6] events KEYS[7] stalled  KEYS[8] repeat
  ARGV[1] job key prefix "<prefix>:<queue>:"
  ARGV[2] "1" to count the move as a stall
  ARGV[3] layout "v5" | "v6"
  ARGV[4] "1" to break locks that have no TTL (immortal) before moving
  ARGV[5] maxStalledCount
  ARGV[6] how many ids to examine at most (never more than LLEN active)
  ARGV[7] time budget in ms: the call stops early once it has run this long (checked
          every 32 ids), so no call blocks Redis much longer, whatever an id costs
  Returns a flat array: examined, moved, locked, LLEN active after, 1 when it stopped
  for time (else 0), then "<kind>:<id>" entries, kind one of immortal | orphan (left in
  active) | failed (moved, marked defa). The ids moved in one call keep their order:
  the oldest runs first.
]]
local rcall = redis.call
local activeKey = KEYS[1]
local meta = rcall("HMGET", KEYS[4], "paused", "concurrency", "opts.maxLenEvents")
local paused = meta[1] ~= false
local maxEvents = tonumber(meta[3]) or 10000
-- v5 keeps a paused queue's jobs in the `paused` list; v6 keeps them in `wait`.
local target = KEYS[2]
if paused and ARGV[3] == "v5" then target = KEYS[3] end
local countAsStall = ARGV[2] == "1"
local maxStalled = tonumber(ARGV[5])
local budget = math.min(tonumber(ARGV[6]), rcall("LLEN", activeKey))

local function isSchedulerJob(jobKey)
  -- BullMQ: a job whose scheduler (or legacy repeatable) still exists is never failed.
  local schedulerId = rcall("HGET", jobKey, "rjk")
  if not schedulerId then return false end
  if rcall("EXISTS", KEYS[8] .. ":" .. schedulerId) == 1 then return true end
  return rcall("ZSCORE", KEYS[8], schedulerId) ~= false
end

local examined, moved, locked = 0, 0, 0
local budgetMs = tonumber(ARGV[7])
local function nowMs()
  local t = rcall("TIME")
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local began = nowMs()
local timedOut = 0
local trimmed = false
local notes = {}
local movedIds = {}
for n = 1, budget do
  if n % 32 == 0 and nowMs() - began >= budgetMs then
    timedOut = 1
    break
  end
  local id = rcall("LINDEX", activeKey, -1)
  if not id then break end
  examined = examined + 1
  local jobKey = ARGV[1] .. id
  local lockKey = jobKey .. ":lock"
  local ttl = rcall("PTTL", lockKey)
  if ttl == -1 and ARGV[4] == "1" then
    rcall("DEL", lockKey)
    ttl = -2
  end
  local kind = nil
  if ttl >= 0 then
    locked = locked + 1
    kind = "locked"
  elseif ttl == -1 then
    kind = "immortal"
  elseif rcall("EXISTS", jobKey) == 0 then
    kind = "orphan"                             -- reported, left in active
  end
  if kind then
    rcall("RPOPLPUSH", activeKey, activeKey)    -- examined: to the head
    if kind ~= "locked" then notes[#notes + 1] = kind .. ":" .. id end
  else
    rcall("RPOP", activeKey)
    rcall("SREM", KEYS[7], id)
    if not trimmed then
      -- Once, before emitting: trimming on every XADD would drop this call's own events.
      rcall("XTRIM", KEYS[6], "MAXLEN", "~", maxEvents)
      trimmed = true
    end
    if countAsStall then
      local stalledCount = rcall("HINCRBY", jobKey, "stc", 1)
      if stalledCount > maxStalled and not isSchedulerJob(jobKey) then
        rcall("HSET", jobKey, "defa", "job stalled more than allowable limit")
        notes[#notes + 1] = "failed:" .. id
      end
    end
    moved = moved + 1
    movedIds[moved] = id
  end
end

-- The right end of the queue, where workers take from: they run next, like BullMQ.
-- Newest first, so that the oldest (the first taken from the tail) runs first.
for i = moved, 1, -1 do
  local id = movedIds[i]
  rcall("RPUSH", target, id)
  rcall("XADD", KEYS[6], "*", "event", "waiting", "jobId", id, "prev", "active")
  if countAsStall then
    rcall("XADD", KEYS[6], "*", "event", "stalled", "jobId", id)
  end
end

-- Wake blocked workers (BZPOPMIN on the marker), as BullMQ does: not while the queue
-- is paused, nor while it is at its global concurrency limit.
local remaining = rcall("LLEN", activeKey)
if moved > 0 and not paused then
  local limit = tonumber(meta[2])
  if not (limit and remaining >= limit) then
    rcall("ZADD", KEYS[5], 0, "0")
  end
end

local result = {examined, moved, locked, remaining, timedOut}
for _, entry in ipairs(notes) do result[#result + 1] = entry end
return result
