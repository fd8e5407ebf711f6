--[[
  Pause or resume one BullMQ v5 queue globally, exactly as Node's queue.pause() /
  queue.resume() do (pause-7.lua, v5.81.x), behind two guards that make it safe to run
  from outside the application:

  - it acts only on a change: pausing a queue whose meta already has `paused` (or
    resuming one that has none) changes nothing and emits no event, so a queue someone
    else paused is never taken over by a second pause;
  - it never overwrites a list: BullMQ's RENAME wait->paused (paused->wait on resume)
    replaces the destination, so when both lists hold jobs (a v6-layout writer pushed
    into `wait` while the queue was paused) it changes nothing and says so.

  Past the guards the writes are pause-7.lua's, in its order: RENAME the source list
  when it exists; pause: HSET meta paused 1, DEL marker; resume: HDEL meta paused,
  then marker "0" (score 0) when jobs are waiting or prioritized, else the delay marker
  "1" at the next delayed timestamp; last, XADD events * event paused|resumed (untrimmed,
  as BullMQ adds it).

  KEYS[1] wait  KEYS[2] paused  KEYS[3] meta  KEYS[4] prioritized
  KEYS[5] events  KEYS[6] delayed  KEYS[7] marker
  ARGV[1] "paused" | "resumed"
  Returns {outcome, event id or "", LLEN wait, LLEN paused} (lengths before), outcome
  one of "paused" | "resumed" (done), "unchanged" (already so), "conflict" (both lists
  hold jobs: nothing done).
]]
local rcall = redis.call
local pausing = ARGV[1] == "paused"
local isPaused = rcall("HEXISTS", KEYS[3], "paused") == 1
local waitLen = rcall("LLEN", KEYS[1])
local pausedLen = rcall("LLEN", KEYS[2])
if pausing == isPaused then
  return {"unchanged", "", waitLen, pausedLen}
end
if waitLen > 0 and pausedLen > 0 then
  return {"conflict", "", waitLen, pausedLen}
end

local src, dst = KEYS[1], KEYS[2]
if not pausing then src, dst = KEYS[2], KEYS[1] end
local markerKey = KEYS[7]

-- From here: BullMQ v5 pause-7.lua with includes/addDelayMarkerIfNeeded.lua.
local function addDelayMarkerIfNeeded(delayedKey)
  local result = rcall("ZRANGE", delayedKey, 0, 0, "WITHSCORES")
  local nextTimestamp = tonumber(result[2])
  if nextTimestamp ~= nil then
    rcall("ZADD", markerKey, nextTimestamp / 0x1000, "1")
  end
end

local hasJobs = rcall("EXISTS", src) == 1
if hasJobs then rcall("RENAME", src, dst) end
if pausing then
  rcall("HSET", KEYS[3], "paused", 1)
  rcall("DEL", markerKey)
else
  rcall("HDEL", KEYS[3], "paused")
  if hasJobs or rcall("ZCARD", KEYS[4]) > 0 then
    rcall("ZADD", markerKey, 0, "0")
  else
    addDelayMarkerIfNeeded(KEYS[6])
  end
end
local id = rcall("XADD", KEYS[5], "*", "event", ARGV[1])
return {ARGV[1], id, waitLen, pausedLen}
