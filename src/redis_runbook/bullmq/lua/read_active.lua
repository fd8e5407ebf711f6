#!lua flags=no-writes
--[[
  Read-only: the ids of `active` between two positions counted from its tail (1 = the
  tail, the oldest), tail first, each classified by its lock in the same atomic call
  (a job that finishes right after being read is not mistaken for one without a lock).

  KEYS[1] active   KEYS[2] repeat
  ARGV[1] job key prefix "<prefix>:<queue>:"
  ARGV[2] first position (from the tail)   ARGV[3] last position
  ARGV[4] maxStalledCount, or "" not to tell which jobs a counted stall would fail
  Returns a flat array of triples: id, kind (locked | stale | immortal | orphan), and
  for locked the lock's PTTL in ms, for stale/immortal 1 when one more stall puts the
  job over maxStalledCount (and it is not a job scheduler's), else 0.
]]
local rcall = redis.call
local ids = rcall("LRANGE", KEYS[1], -tonumber(ARGV[3]), -tonumber(ARGV[2]))
local maxStalled = tonumber(ARGV[4])

local function wouldFail(jobKey)
  if not maxStalled then return 0 end
  local stc = tonumber(rcall("HGET", jobKey, "stc")) or 0
  if stc + 1 <= maxStalled then return 0 end
  local schedulerId = rcall("HGET", jobKey, "rjk")
  if schedulerId and (rcall("EXISTS", KEYS[2] .. ":" .. schedulerId) == 1
      or rcall("ZSCORE", KEYS[2], schedulerId)) then
    return 0
  end
  return 1
end

local out = {}
for i = #ids, 1, -1 do
  local id = ids[i]
  local jobKey = ARGV[1] .. id
  local ttl = rcall("PTTL", jobKey .. ":lock")
  local kind, extra = "locked", ttl
  if rcall("EXISTS", jobKey) == 0 then
    kind, extra = "orphan", 0
  elseif ttl == -2 then
    kind, extra = "stale", wouldFail(jobKey)
  elseif ttl == -1 then
    kind, extra = "immortal", wouldFail(jobKey)
  end
  out[#out + 1] = id
  out[#out + 1] = kind
  out[#out + 1] = extra
end
return out
