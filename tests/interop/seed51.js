'use strict';
// The seed runbook's §5.1 impact assessment, as written: KEYS bull:*:meta, the name as
// split(':')[1] (wrong for names containing ':'), then a Queue and getJobCounts() per
// queue, one after the other. Used by the benchmarks as the baseline.
// Output: {"queues": n, "waiting": .., "active": .., "failed": .., "delayed": ..}
const { Queue } = require('bullmq');
const IORedis = require('ioredis');

async function main() {
  const url = process.env.REDIS_URL;
  const target = new URL(url);
  const redis = new IORedis(url, { maxRetriesPerRequest: null });
  const keys = await redis.keys('bull:*:meta');
  const queues = keys.map(k => k.split(':')[1]);
  const totals = { queues: queues.length, waiting: 0, active: 0, failed: 0, delayed: 0 };
  for (const name of queues) {
    // As the seed does: connection options, so each Queue opens and closes its own.
    const q = new Queue(name, { connection: { host: target.hostname, port: Number(target.port) } });
    const counts = await q.getJobCounts();
    totals.waiting += counts.waiting || 0;
    totals.active += counts.active || 0;
    totals.failed += counts.failed || 0;
    totals.delayed += counts.delayed || 0;
    await q.close();
  }
  process.stdout.write(JSON.stringify(totals) + '\n');
  redis.disconnect();
}

main().catch(err => {
  process.stderr.write(`seed51: ${err.message}\n`);
  process.exit(1);
});
