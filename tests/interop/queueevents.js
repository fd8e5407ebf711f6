'use strict';
// A BullMQ QueueEvents listener (XREAD BLOCK on <prefix>:<q>:events) that prints every
// event it receives as a JSON line.
//
// Config: {"queue": "q", "prefix": "bull", "lastEventId": "<stream id>"}
//   lastEventId: read events after this id (default "$": only events added after the
//   first XREAD, which may come after "ready" — give the stream's last id to miss nothing).
// Output: {"event": "ready"}, then {"event": <name>, "jobId", ...the event's fields,
//         "eventId"} for every event; {"event": "closed"} after SIGTERM.
//         A queue's global pause and resume come as {"event": "paused"|"resumed", "eventId"}.
const { QueueEvents } = require('bullmq');
const lib = require('./lib');

async function main() {
  const cfg = lib.config();
  const queueName = lib.requireString(cfg, 'queue');
  const opts = { ...lib.baseOptions(cfg) };
  if (cfg.lastEventId) opts.lastEventId = cfg.lastEventId;
  const events = new QueueEvents(queueName, opts);
  events.on('error', err => lib.emit({ event: 'error', message: err.message, t: Date.now() }));
  const names = ['waiting', 'stalled', 'active', 'completed', 'failed', 'added',
    'retries-exhausted', 'paused', 'resumed'];
  for (const name of names) {
    events.on(name, (args, eventId) => lib.emit({ ...args, event: name, eventId }));
  }
  const close = async signal => {
    await events.close();
    lib.emit({ event: 'closed', signal, t: Date.now() });
    lib.finish(0);
  };
  process.on('SIGTERM', () => close('SIGTERM'));
  process.on('SIGINT', () => close('SIGINT'));
  await events.waitUntilReady();
  lib.emit({ event: 'ready', t: Date.now() });
}

main().catch(lib.fail);
