'use strict';
// Node BullMQ's own view of queue sizes: Queue.getJobCounts() with no argument, which in
// v5 counts every state (active, completed, delayed, failed, paused, prioritized, waiting,
// waiting-children), plus Queue.isPaused().
//
// Config: {"queues": ["a", "b"]} or {"queue": "a"}, optional "prefix".
// Output: one line per queue:
//   {"queue": "a", "counts": {"active": 0, ..., "waiting-children": 0}, "isPaused": false}
//
// v5 semantics: while a queue is paused its ready jobs live in the "paused" list, so they
// count as "paused", not "waiting". (v6 would count them as waiting and drop "paused".)
// skipMetasUpdate keeps this read from writing meta.version, so counting a queue that does
// not exist creates nothing. Note getCounts may still RPOP legacy "0:" markers (pre-5.0).
const { Queue } = require('bullmq');
const lib = require('./lib');

async function main() {
  const cfg = lib.config();
  for (const name of lib.queueNames(cfg)) {
    const queue = new Queue(name, { ...lib.baseOptions(cfg), skipMetasUpdate: true });
    queue.on('error', err => process.stderr.write(`queue error: ${err.message}\n`));
    try {
      const counts = await queue.getJobCounts();
      const isPaused = await queue.isPaused();
      lib.emit({ queue: name, counts, isPaused });
    } finally {
      await queue.close();
    }
  }
}

main().then(() => lib.finish(0), lib.fail);
