'use strict';
// Live traffic on one queue or more: per queue a Worker that finishes jobs quickly and a
// producer that keeps adding them, so the active list changes at both ends all the time
// (fetches push at its head, finished jobs are LREMed from wherever they are).
//
// Config: {"queue": "q" (or "queues": [...]), "prefix": "bull", "concurrency": 200,  (per queue)
//          "minMs": 5, "maxMs": 60,          processing time, uniform per job
//          "batch": 100, "tickMs": 20,      the producer adds `batch` jobs every `tickMs`
//          "maxBacklog": 2000,              ... while its wait holds fewer than this
//          "jobIdPrefix": "live-",
//          "skipStalledCheck": true}        no stalled checker: stale jobs stay stale
// Output: {"event": "ready"} once every worker is connected and the producers run;
//         {"event": "stats", "added", "completed", "failed", "errors", "t"} every second
//         (all queues together); {"event": "error", "queue", "message"} for worker errors;
//         {"event": "closed"} after SIGTERM.
const { Queue, Worker } = require('bullmq');
const lib = require('./lib');

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// One worker and one producer for `queueName`; returns its close().
async function start(cfg, queueName, stats) {
  const minMs = cfg.minMs ?? 5;
  const maxMs = cfg.maxMs ?? 60;
  const batch = cfg.batch ?? 100;
  const tickMs = cfg.tickMs ?? 20;
  const maxBacklog = cfg.maxBacklog ?? 2000;
  const prefix = cfg.jobIdPrefix ?? 'live-';
  const worker = new Worker(
    queueName,
    async () => {
      await sleep(minMs + Math.random() * (maxMs - minMs));
      return { ok: true };
    },
    {
      ...lib.baseOptions(cfg),
      concurrency: cfg.concurrency ?? 200,
      skipStalledCheck: cfg.skipStalledCheck ?? true,
      drainDelay: 1,
    },
  );
  worker.on('completed', () => (stats.completed += 1));
  worker.on('failed', () => (stats.failed += 1));
  worker.on('error', err => {
    stats.errors += 1;
    lib.emit({ event: 'error', queue: queueName, message: err.message, t: Date.now() });
  });
  const queue = new Queue(queueName, lib.baseOptions(cfg));
  const client = await queue.client;
  const waitKey = `${queue.opts.prefix ?? 'bull'}:${queueName}:wait`;
  let running = true;
  let added = 0;
  const produce = async () => {
    while (running) {
      if ((await client.llen(waitKey)) < maxBacklog) {
        const jobs = [];
        for (let i = 0; i < batch; i++) {
          jobs.push({ name: 'live', data: {}, opts: { jobId: `${prefix}${added + i}` } });
        }
        await queue.addBulk(jobs);
        added += batch;
        stats.added += batch;
      }
      await sleep(tickMs);
    }
  };
  await worker.waitUntilReady();
  const producing = produce().catch(lib.fail);
  return async () => {
    running = false;
    await producing;
    await queue.close();
    await worker.close(true);
  };
}

async function main() {
  const cfg = lib.config();
  const names = lib.queueNames(cfg);
  const stats = { added: 0, completed: 0, failed: 0, errors: 0 };
  const closers = [];
  for (const name of names) closers.push(await start(cfg, name, stats));
  const timer = setInterval(() => lib.emit({ event: 'stats', ...stats, t: Date.now() }), 1000);
  lib.emit({ event: 'ready', t: Date.now() });

  let closing = false;
  const close = async signal => {
    if (closing) return;
    closing = true;
    clearInterval(timer);
    try {
      await Promise.all(closers.map(c => c()));
      lib.emit({ event: 'closed', signal, ...stats, t: Date.now() });
      lib.finish(0);
    } catch (err) {
      lib.fail(err);
    }
  };
  process.on('SIGTERM', () => close('SIGTERM'));
  process.on('SIGINT', () => close('SIGINT'));
}

main().catch(lib.fail);
