'use strict';
// A BullMQ Worker on one queue that reports every event as a JSON line.
//
// Config: {"queue": "q", "prefix": "bull", "concurrency": 1,
//          "lockDuration": 30000, "lockRenewTime": <lockDuration/2>,
//          "stalledInterval": 30000, "maxStalledCount": 1, "skipStalledCheck": false,
//          "drainDelay": 5, "name": null,
//          "delayMs": 0,          processing time per job (job.data.delayMs overrides it)
//          "failPattern": null,   regex: jobs whose id matches it throw (so do jobs with
//                                 job.data.fail truthy)
//          "failMessage": "..."}
// Job data that makes the processor talk to Redis (so failures come from Redis itself):
//   {"progress": true}   the processor writes its progress (job.updateProgress(100))
//   {"oomDrill": true}   on its first attempt (attemptsMade 0) the processor waits until
//                        the server's maxmemory is below 1 MiB (a test made Redis run out
//                        of memory) and then writes its progress: Redis refuses the write
//                        and the job fails with Redis' own "OOM command not allowed ..."
//                        (BullMQ's moveToFinished still records it: its first write is a
//                        DEL, which Redis allows when out of memory). A retried job
//                        (attemptsMade kept by job.retry()) writes its progress at once.
//   {"killDrill": true}  on its first attempt the processor PINGs Redis on a connection
//                        of its own, as application code does, without retries, until
//                        Redis goes away (a test kills it; it prints {"event": "pinging"}
//                        once its connection is up): the processor throws the
//                        client's own error ("Connection is closed."); the worker's
//                        connection (maxRetriesPerRequest null) records the failure
//                        once Redis is back. A retried job completes at once.
// Output, one line per event, t = Date.now():
//   {"event": "ready"}   once waitUntilReady resolved (jobs may already be active by then)
//   {"event": "active"|"completed"|"failed", "jobId", "name", "attemptsMade",
//    "failedReason", "t"}
//   {"event": "pinging", "jobId", ...}  a killDrill job's own connection is up (below)
//   {"event": "stalled", "jobId", "t"}   this worker's stalled checker moved jobId back
//   {"event": "error", "message", "t"}   e.g. "Missing lock for job X. moveToFinished"
//   {"event": "closed", "t"}            after SIGTERM/SIGINT: worker.close() finished
//
// Signals: SIGTERM/SIGINT close gracefully (waits for running handlers; "closeForce":
// true does not wait). SIGKILL is the crash drill: locks stay until their PX expires.
//
// BullMQ semantics worth knowing:
// - The lock <prefix>:<q>:<id>:lock is taken with PX lockDuration in the same script that
//   moves the job to active, and renewed every lockRenewTime while the handler runs.
// - skipStalledCheck: true means this worker never runs moveStalledJobsToWait, so jobs
//   whose lock expired stay in active forever unless some other worker checks.
// - The stalled checker runs once at start and then every stalledInterval; a job is moved
//   on the second pass after its lock is gone, and fails on stall number maxStalledCount+1
//   ("job stalled more than allowable limit") even when attempts remain.
// - The checker's throttle key <q>:stalled-check is shared by all workers of the queue and
//   set with PX = the stalledInterval of whichever worker checked last: one worker with
//   the default 30 s interval delays the checks of a 500 ms worker on the same queue.
// - "failed" is emitted for every failed attempt, including ones BullMQ will retry.
const { Worker } = require('bullmq');
const lib = require('./lib');

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

function jobLine(event, job, extra = {}) {
  return {
    event,
    jobId: job ? job.id : null,
    name: job ? job.name : null,
    attemptsMade: job ? job.attemptsMade : null,
    failedReason: job ? job.failedReason ?? null : null,
    ...extra,
    t: Date.now(),
  };
}

async function main() {
  const cfg = lib.config();
  const queueName = lib.requireString(cfg, 'queue');
  const failPattern = cfg.failPattern ? new RegExp(cfg.failPattern) : null;
  const failMessage = cfg.failMessage ?? 'failed on purpose (interop worker)';
  const delayMs = cfg.delayMs ?? 0;

  const processor = async job => {
    const wait = job.data && Number.isFinite(job.data.delayMs) ? job.data.delayMs : delayMs;
    if (wait > 0) await sleep(wait);
    if (job.data && job.data.oomDrill && job.attemptsMade === 0) {
      const client = await worker.client;
      for (;;) {
        const [, maxmemory] = await client.config('GET', 'maxmemory');
        if (Number(maxmemory) > 0 && Number(maxmemory) < 1048576) break;
        await sleep(50);
      }
    }
    if (job.data && job.data.killDrill && job.attemptsMade === 0) {
      const own = (await worker.client).duplicate({
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        enableOfflineQueue: false,
      });
      own.on('error', () => {}); // the rejected command carries the error
      try {
        if (own.status !== 'ready') {
          await new Promise((resolve, reject) => {
            own.once('ready', resolve);
            own.once('end', () => reject(new Error('Connection is closed.')));
          });
        }
        lib.emit(jobLine('pinging', job)); // from now on a kill fails this job
        for (;;) {
          await own.ping();
          await sleep(50);
        }
      } finally {
        own.disconnect();
      }
    }
    if (job.data && (job.data.oomDrill || job.data.progress)) await job.updateProgress(100);
    if ((failPattern && failPattern.test(String(job.id))) || (job.data && job.data.fail)) {
      throw new Error(failMessage);
    }
    return { ok: true, jobId: job.id };
  };

  const opts = { ...lib.baseOptions(cfg), autorun: true };
  for (const key of [
    'concurrency',
    'lockDuration',
    'lockRenewTime',
    'stalledInterval',
    'maxStalledCount',
    'skipStalledCheck',
    'drainDelay',
    'name',
  ]) {
    if (cfg[key] !== undefined && cfg[key] !== null) opts[key] = cfg[key];
  }

  const worker = new Worker(queueName, processor, opts);
  worker.on('active', job => lib.emit(jobLine('active', job)));
  worker.on('completed', job => lib.emit(jobLine('completed', job)));
  worker.on('failed', (job, err) =>
    lib.emit(jobLine('failed', job, { failedReason: err ? err.message : job?.failedReason })),
  );
  worker.on('stalled', jobId => lib.emit({ event: 'stalled', jobId, t: Date.now() }));
  worker.on('error', err => lib.emit({ event: 'error', message: err.message, t: Date.now() }));

  let closing = false;
  const close = async signal => {
    if (closing) return;
    closing = true;
    try {
      await worker.close(Boolean(cfg.closeForce));
      lib.emit({ event: 'closed', signal, t: Date.now() });
      lib.finish(0);
    } catch (err) {
      lib.fail(err);
    }
  };
  process.on('SIGTERM', () => close('SIGTERM'));
  process.on('SIGINT', () => close('SIGINT'));

  await worker.waitUntilReady();
  lib.emit({ event: 'ready', t: Date.now() });
  // The Worker's timers and connections keep the process alive until close().
}

main().catch(lib.fail);
