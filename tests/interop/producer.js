'use strict';
// Add N jobs to one queue with Queue.addBulk, in chunks.
//
// Config: {"queue": "q", "count": 50, "name": "job", "data": {...}, "opts": {...},
//          "jobIdPrefix": "order-", "start": 0, "chunk": 500, "prefix": "bull",
//          "printIds": false}
// Job i (start <= i < start+count) gets data = `data` with every "{i}" in its JSON text
// replaced by i (and `i` itself added), and, with jobIdPrefix, jobId = jobIdPrefix + i.
// `opts` are BullMQ job options passed as given: attempts, backoff, removeOnComplete,
// removeOnFail, priority, delay, lifo, ...
// Output: {"added": n} (plus "ids" with printIds).
//
// BullMQ semantics worth knowing:
// - A custom jobId must not be all digits nor contain ':' (Node throws). Adding an id that
//   already exists stores nothing and returns the existing job (a "duplicated" event).
// - Since 5.7.13 addBulk is a non-transactional pipeline: an error can leave a prefix of
//   the chunk added.
// - Constructing a Queue writes meta.version = "bullmq:<version>".
const { Queue } = require('bullmq');
const lib = require('./lib');

async function main() {
  const cfg = lib.config();
  const queueName = lib.requireString(cfg, 'queue');
  const count = cfg.count ?? 1;
  const start = cfg.start ?? 0;
  const chunk = cfg.chunk ?? 500;
  if (!Number.isInteger(count) || count < 0) lib.usage('"count" must be an integer >= 0');
  if (!Number.isInteger(start) || start < 0) lib.usage('"start" must be an integer >= 0');
  if (!Number.isInteger(chunk) || chunk < 1) lib.usage('"chunk" must be an integer >= 1');
  const name = cfg.name ?? 'job';
  const template = JSON.stringify(cfg.data ?? {});
  const opts = cfg.opts ?? {};

  const queue = new Queue(queueName, lib.baseOptions(cfg));
  queue.on('error', err => process.stderr.write(`queue error: ${err.message}\n`));
  const ids = [];
  try {
    for (let first = start; first < start + count; first += chunk) {
      const batch = [];
      for (let i = first; i < Math.min(first + chunk, start + count); i++) {
        const data = { ...JSON.parse(template.split('{i}').join(String(i))), i };
        const jobOpts = { ...opts };
        if (cfg.jobIdPrefix !== undefined) jobOpts.jobId = `${cfg.jobIdPrefix}${i}`;
        batch.push({ name, data, opts: jobOpts });
      }
      const jobs = await queue.addBulk(batch);
      for (const job of jobs) ids.push(job.id);
    }
  } finally {
    await queue.close();
  }
  const out = { added: ids.length };
  if (cfg.printIds) out.ids = ids;
  lib.emit(out);
}

main().then(() => lib.finish(0), lib.fail);
