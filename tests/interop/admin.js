'use strict';
// Queue administration with Node BullMQ v5 semantics.
//
// Config: {"action": "pause"|"resume"|"obliterate"|"states", "queue": "q", "prefix": "bull",
//          "force": false,   (obliterate: also when jobs are active)
//          "ids": [...]}     (states: the job ids to look up)
// Output: {"action", "queue", "isPaused"} for pause/resume/obliterate;
//         {"action": "states", "queue", "states": {"<id>": "active"|"wait"|...|"unknown"}}.
//
// v5 semantics (pause-7.lua):
// - pause sets meta.paused=1 and RENAMEs <q>:wait to <q>:paused; while paused every add,
//   retry or stalled move lands in <q>:paused and no marker is written.
// - resume deletes meta.paused and RENAMEs paused back to wait, overwriting any wait list
//   (ids a v6-layout writer pushed into wait meanwhile are lost).
// - obliterate pauses first (so wait is renamed to paused), then deletes the queue's keys
//   in rounds of 1000 jobs; without force it refuses while jobs are active. A v6-layout
//   id pushed into <q>:wait after the pause would survive it (v6 obliterate clears wait).
const { Queue } = require('bullmq');
const lib = require('./lib');

async function main() {
  const cfg = lib.config();
  const name = lib.requireString(cfg, 'queue');
  const action = lib.requireString(cfg, 'action');
  if (!['pause', 'resume', 'obliterate', 'states'].includes(action)) {
    lib.usage(`unknown action "${action}" (pause, resume, obliterate, states)`);
  }
  const queue = new Queue(name, { ...lib.baseOptions(cfg), skipMetasUpdate: true });
  queue.on('error', err => process.stderr.write(`queue error: ${err.message}\n`));
  try {
    if (action === 'states') {
      if (!Array.isArray(cfg.ids)) lib.usage('"ids" must be a list of job ids');
      const states = {};
      for (const id of cfg.ids) states[id] = await queue.getJobState(String(id));
      lib.emit({ action, queue: name, states });
      return;
    }
    if (action === 'pause') await queue.pause();
    if (action === 'resume') await queue.resume();
    if (action === 'obliterate') await queue.obliterate({ force: Boolean(cfg.force) });
    lib.emit({ action, queue: name, isPaused: await queue.isPaused() });
  } finally {
    await queue.close();
  }
}

main().then(() => lib.finish(0), lib.fail);
