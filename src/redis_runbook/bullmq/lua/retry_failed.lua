--[[
  Move failed jobs back to be processed again, as BullMQ v5's job.retry('failed')
  (reprocessJob-8.lua) does, for a batch of ids, stopping early after a time budget.

  Per job, exactly what reprocessJob does:
  - the job must still be in `failed` (and, here, with the failure time the plan read:
    a job retried and failed again meanwhile is someone else's decision now, skipped);
  - ZREM failed; HDEL finishedOn processedOn failedReason; `atm` (attemptsMade) and
    `ats` (attemptsStarted) are kept, as job.retry() keeps them by default;
  - into `paused` when the queue is paused (v5 layout), else `wait`; LPUSH, or RPUSH
    for a job added with `lifo`;
  - a flow parent gets the job back among its pending dependencies;
  - a `waiting` event with prev `failed`; the marker (ZADD marker 0 "0") unless the
    queue is paused or at its global concurrency limit.
  One difference, on purpose: a job with a priority goes back to `prioritized` with
  BullMQ's own score (priority * 2^32 + INCR pc), as BullMQ's automatic retry
  (retryJob-11.lua, addJobWithPriority) puts it; reprocessJob would push it to `wait`,
  ahead of every prioritized job.

  The events stream is trimmed once, before the call's first event, to the queue's
  opts.maxLenEvents (10000 when unset), and the events are added untrimmed.

  KEYS[1] failed  KEYS[2] wait  KEYS[3] paused  KEYS[4] meta  KEYS[5] active
  KEYS[6] marker  KEYS[7] events  KEYS[8] prioritized  KEYS[9] pc
  ARGV[1] job key prefix "<prefix>:<queue>:"
  ARGV[2] layout "v5" | "v6"
  ARGV[3] time budget in ms (checked every 16 jobs)
  ARGV[4..] pairs: job id, failure time (its score in `failed`) as read by the plan
  Returns: {moved, examined, "skipped:<id>"...}; examined < pairs means out of time.
]]
local rcall = redis.call
local meta = rcall("HMGET", KEYS[4], "paused", "concurrency", "opts.maxLenEvents")
local paused = meta[1] ~= false
local target = KEYS[2]
if paused and ARGV[2] == "v5" then target = KEYS[3] end
local maxed = false
if not paused and meta[2] then
  maxed = rcall("LLEN", KEYS[5]) >= tonumber(meta[2])
end
local maxEvents = tonumber(meta[3]) or 10000
local budgetMs = tonumber(ARGV[3])

local function nowMs()
  local t = rcall("TIME")
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

local function isLifo(jobKey)
  local opts = rcall("HGET", jobKey, "opts")
  if not opts then return false end
  local ok, decoded = pcall(cjson.decode, opts)
  return ok and type(decoded) == "table" and decoded["lifo"] == true
end

local began = nowMs()
local moved, examined = 0, 0
local trimmed = false
local skipped = {}
for i = 4, #ARGV, 2 do
  if examined > 0 and examined % 16 == 0 and nowMs() - began >= budgetMs then break end
  examined = examined + 1
  local id, expected = ARGV[i], ARGV[i + 1]
  local jobKey = ARGV[1] .. id
  local score = rcall("ZSCORE", KEYS[1], id)
  if not score or tonumber(score) ~= tonumber(expected) or rcall("EXISTS", jobKey) == 0 then
    skipped[#skipped + 1] = "skipped:" .. id
  else
    rcall("ZREM", KEYS[1], id)
    rcall("HDEL", jobKey, "finishedOn", "processedOn", "failedReason")
    local priority = tonumber(rcall("HGET", jobKey, "priority")) or 0
    if priority > 0 then
      local counter = rcall("INCR", KEYS[9])
      rcall("ZADD", KEYS[8], priority * 0x100000000 + counter % 0x100000000, id)
    elseif isLifo(jobKey) then
      rcall("RPUSH", target, id)
    else
      rcall("LPUSH", target, id)
    end
    local parentKey = rcall("HGET", jobKey, "parentKey")
    if parentKey and rcall("EXISTS", parentKey) == 1 then
      if rcall("ZREM", parentKey .. ":unsuccessful", jobKey) == 1 or
        rcall("HDEL", parentKey .. ":failed", jobKey) == 1 then
        rcall("SADD", parentKey .. ":dependencies", jobKey)
      end
    end
    if not trimmed then
      rcall("XTRIM", KEYS[7], "MAXLEN", "~", maxEvents)
      trimmed = true
    end
    rcall("XADD", KEYS[7], "*", "event", "waiting", "jobId", id, "prev", "failed")
    moved = moved + 1
  end
end
if moved > 0 and not paused and not maxed then
  rcall("ZADD", KEYS[6], 0, "0")
end
local result = {moved, examined}
for _, entry in ipairs(skipped) do result[#result + 1] = entry end
return result
