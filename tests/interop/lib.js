'use strict';
// Shared plumbing for the interop scripts: config, output, connection, errors.
//
// Every script takes one JSON object as its config: argv[2] if given, else the
// INTEROP_ARGS environment variable, else {}. Output is JSON lines on stdout, one
// object per line, so the Python side (tests/support/node.py) can parse it as it arrives.
// Diagnostics go to stderr. Exit status: 0 done, 1 runtime error, 2 bad config.

function config() {
  const raw = process.argv[2] ?? process.env.INTEROP_ARGS ?? '{}';
  let cfg;
  try {
    cfg = JSON.parse(raw);
  } catch (err) {
    usage(`config is not valid JSON: ${err.message}`);
  }
  if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) {
    usage('config must be a JSON object');
  }
  return cfg;
}

function usage(message) {
  process.stderr.write(`${scriptName()}: ${message}\n`);
  process.exit(2);
}

function scriptName() {
  return require('path').basename(process.argv[1] || 'interop');
}

// One JSON line; process.stdout.write on a pipe is asynchronous in Node, so callers
// that exit must go through finish() to let it drain.
function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

// Exit only after stdout has been flushed (a pipe may still hold our last lines).
function finish(code = 0) {
  process.stdout.write('', () => process.exit(code));
}

function fail(err) {
  const message = err && err.message ? err.message : String(err);
  process.stderr.write(`${scriptName()}: ${message}\n`);
  emit({ event: 'fatal', message });
  finish(1);
}

// ioredis options from REDIS_URL (redis:// or rediss://, user, password, db).
// maxRetriesPerRequest must be null for BullMQ workers (their blocking connection
// would otherwise give up during a Redis restart); we use it everywhere.
//
// With REDIS_SENTINELS set (JSON: {"sentinels": [{"host", "port"}, ...], "name": "mymaster"})
// ioredis finds the master through those Sentinels instead (and again after every
// disconnect, e.g. a failover); REDIS_URL is then optional and only gives the db, the
// data nodes' user and password and TLS, its host and port are ignored.
function connection() {
  const sentinels = sentinelOptions();
  const url = process.env.REDIS_URL;
  if (!url) {
    if (sentinels) return { ...sentinels, maxRetriesPerRequest: null };
    usage('REDIS_URL is not set');
  }
  let parsed;
  try {
    parsed = new URL(url);
  } catch (err) {
    usage(`REDIS_URL is not a URL: ${err.message}`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    usage(`REDIS_URL must be redis:// or rediss://, not ${parsed.protocol}`);
  }
  const opts = {
    host: parsed.hostname || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
    db: parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0,
    maxRetriesPerRequest: null,
  };
  if (parsed.username) opts.username = decodeURIComponent(parsed.username);
  if (parsed.password) opts.password = decodeURIComponent(parsed.password);
  if (parsed.protocol === 'rediss:') opts.tls = {};
  if (sentinels) {
    delete opts.host;
    delete opts.port;
    Object.assign(opts, sentinels);
  }
  return opts;
}

// {sentinels, name} for ioredis from REDIS_SENTINELS, or null when it is not set.
function sentinelOptions() {
  const raw = process.env.REDIS_SENTINELS;
  if (!raw) return null;
  let spec;
  try {
    spec = JSON.parse(raw);
  } catch (err) {
    usage(`REDIS_SENTINELS is not valid JSON: ${err.message}`);
  }
  const list = spec && spec.sentinels;
  if (
    !Array.isArray(list) ||
    list.length === 0 ||
    list.some(s => !s || typeof s.host !== 'string' || !Number.isInteger(s.port))
  ) {
    usage('REDIS_SENTINELS needs "sentinels": [{"host": "...", "port": N}, ...]');
  }
  if (typeof spec.name !== 'string' || spec.name === '') {
    usage('REDIS_SENTINELS needs "name": the master name the Sentinels monitor');
  }
  return { sentinels: list.map(s => ({ host: s.host, port: s.port })), name: spec.name };
}

function requireString(cfg, key) {
  if (typeof cfg[key] !== 'string' || cfg[key] === '') usage(`"${key}" must be a non-empty string`);
  return cfg[key];
}

// The queue list from {"queues": [...]} or {"queue": "..."}.
function queueNames(cfg) {
  const names = cfg.queues ?? (cfg.queue !== undefined ? [cfg.queue] : []);
  if (!Array.isArray(names) || names.length === 0 || names.some(n => typeof n !== 'string')) {
    usage('give "queue" (a string) or "queues" (a non-empty list of strings)');
  }
  return names;
}

// Common Queue/Worker options: prefix (default "bull").
function baseOptions(cfg) {
  const opts = { connection: connection() };
  if (cfg.prefix !== undefined) opts.prefix = cfg.prefix;
  return opts;
}

module.exports = { config, usage, emit, finish, fail, connection, requireString, queueNames, baseOptions };
