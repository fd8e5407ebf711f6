'use strict';
// Set a queue's global limits the way a Node application does (BullMQ v5).
//
// Config: {"queue": "q", "prefix": "bull",
//          "concurrency": 1,                       Queue.setGlobalConcurrency (>= 5.9):
//                                                  meta.concurrency; a queue at it is "maxed"
//          "rateLimit": {"max": 1, "duration": 60000}}  Queue.setGlobalRateLimit (>= 5.60):
//                                                  meta.max / meta.duration
// Output: {"queue", "concurrency", "rateLimit"} as set.
const { Queue } = require('bullmq');
const lib = require('./lib');

async function main() {
  const cfg = lib.config();
  const name = lib.requireString(cfg, 'queue');
  const queue = new Queue(name, lib.baseOptions(cfg));
  queue.on('error', err => process.stderr.write(`queue error: ${err.message}\n`));
  try {
    if (cfg.concurrency !== undefined) await queue.setGlobalConcurrency(cfg.concurrency);
    if (cfg.rateLimit !== undefined) {
      await queue.setGlobalRateLimit(cfg.rateLimit.max, cfg.rateLimit.duration);
    }
    lib.emit({ queue: name, concurrency: cfg.concurrency ?? null, rateLimit: cfg.rateLimit ?? null });
  } finally {
    await queue.close();
  }
}

main().then(() => lib.finish(0), lib.fail);
