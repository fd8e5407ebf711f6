'use strict';
// Create or update a BullMQ job scheduler (v5 >= 5.16: Queue.upsertJobScheduler).
//
// Config: {"queue": "q", "prefix": "bull", "id": "every-hour",
//          "repeat": {"every": 3600000}, "name": "tick", "data": {}, "opts": {}}
// Output: {"scheduler": id, "jobId": <the id of the job it added>}.
// The scheduler's jobs carry rjk = id; the scheduler itself is <prefix>:<q>:repeat:<id>
// (a hash) plus a member of <prefix>:<q>:repeat. BullMQ's stalled check never fails
// such a job for stalling too often.
const { Queue } = require('bullmq');
const lib = require('./lib');

async function main() {
  const cfg = lib.config();
  const queue = new Queue(lib.requireString(cfg, 'queue'), lib.baseOptions(cfg));
  try {
    const job = await queue.upsertJobScheduler(lib.requireString(cfg, 'id'), cfg.repeat ?? { every: 3600000 }, {
      name: cfg.name ?? 'tick',
      data: cfg.data ?? {},
      opts: cfg.opts ?? {},
    });
    lib.emit({ scheduler: cfg.id, jobId: job ? job.id : null });
  } finally {
    await queue.close();
  }
}

main().then(() => lib.finish(0), lib.fail);
