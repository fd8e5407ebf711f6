'use strict';
// The seed runbook's §5.2 "Clean Stale Active Jobs" script, reproduced faithfully so the
// tests can show what it does to a real queue. It is the procedure redis-runbook replaces.
//
// What the seed does, step by step (kept here):
//   keys = KEYS bull:*:meta; queue = key.split(':')[1]
//   for each queue: active = await q.getActive()
//     for each job: await job.moveToFailed(new Error('Recovered after Redis restart'),
//                                          'restart-recovery')
//                   await job.retry()
// What we add, to observe rather than crash: each call is wrapped in try/catch and its
// outcome printed (the seed's first throw would end the whole script with an unhandled
// rejection), retry() is attempted even after moveToFailed threw, and each job's state is
// read before and after. Config: {"queues": [...]} to skip the KEYS discovery, "prefix"
// (default "bull", as the seed hard-codes).
//
// Output: per job {"queue", "jobId", "stateBefore", "moveToFailed": "ok"|<error message>,
//                  "retry": "ok"|<error message>, "stateAfter"}
//         summary {"queues": [...], "jobs": n, "moved": n, "errors": [{queue, jobId, step,
//                  message}]}; "moved" counts jobs that are no longer active afterwards.
//
// Why it moves nothing in v5 (reference/bullmq.md §6): moveToFailed() checks the job lock
// against the token it is given. 'restart-recovery' is never a worker's token, so with the
// lock alive the script answers "Lock mismatch for job X. Cmd <retryJob|moveToFinished>
// from active", and with the lock expired "Missing lock for job X. <cmd>". The job stays in
// active. retry() then runs reprocessJob, which needs ZREM <q>:failed to succeed: "Job X is
// not in the failed state. reprocessJob".
const IORedis = require('ioredis');
const { Queue } = require('bullmq');
const lib = require('./lib');

async function discover(redis, prefix) {
  // Faithful to the seed: KEYS, and the queue name is the second ':'-separated field
  // (wrong for custom prefixes containing ':' and for legacy names containing ':').
  const keys = await redis.keys(`${prefix}:*:meta`);
  return keys.map(k => k.split(':')[1]);
}

async function main() {
  const cfg = lib.config();
  const prefix = cfg.prefix ?? 'bull';
  const redis = new IORedis(lib.connection());
  const errors = [];
  let jobs = 0;
  let moved = 0;
  let names;
  try {
    names = cfg.queues ?? (await discover(redis, prefix));
    for (const name of names) {
      const q = new Queue(name, lib.baseOptions(cfg));
      try {
        const active = await q.getActive();
        for (const job of active) {
          jobs += 1;
          const line = { queue: name, jobId: job.id, stateBefore: await job.getState() };
          try {
            await job.moveToFailed(new Error('Recovered after Redis restart'), 'restart-recovery');
            line.moveToFailed = 'ok';
          } catch (err) {
            line.moveToFailed = err.message;
            errors.push({ queue: name, jobId: job.id, step: 'moveToFailed', message: err.message });
          }
          try {
            await job.retry();
            line.retry = 'ok';
          } catch (err) {
            line.retry = err.message;
            errors.push({ queue: name, jobId: job.id, step: 'retry', message: err.message });
          }
          line.stateAfter = await q.getJobState(job.id);
          if (line.stateAfter !== 'active') moved += 1;
          lib.emit(line);
        }
      } finally {
        await q.close();
      }
    }
  } finally {
    redis.disconnect();
  }
  lib.emit({ queues: names, jobs, moved, errors });
}

main().then(() => lib.finish(0), lib.fail);
