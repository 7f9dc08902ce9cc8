// The BullMQ side of benches/queue_peers: runs one scenario against the
// redis-server on 127.0.0.1:<port> and prints one JSON line:
//   {"jobs_per_sec":..,"cpu_us":..,"commands":..,"jobs":..,"seconds":..}
//
// usage: node bench.mjs <scenario> <redis port> <jobs>
// scenarios: queue-add, queue-add-bulk, worker-generic, worker-concurrent-<n>
//
// The server's CPU (used_cpu_sys + used_cpu_user) and command count
// (total_commands_processed) are read with INFO on a connection of its own
// right before and right after the timed section; the commands the INFO calls
// themselves add are measured once at start (two snapshots back to back) and
// subtracted.

import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const QUEUE = 'bench';
const BULK = 100;

const [scenario, portArg, jobsArg] = process.argv.slice(2);
const port = Number(portArg);
const jobs = Number(jobsArg);
if (!scenario || !Number.isInteger(port) || !Number.isInteger(jobs) || jobs <= 0) {
  console.error('usage: node bench.mjs <scenario> <redis port> <jobs>');
  process.exit(2);
}
const connection = { host: '127.0.0.1', port };

/** Reads one INFO section into a map of field -> string value. */
async function info(redis, section) {
  const text = await redis.info(section);
  const out = new Map();
  for (const line of text.split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0) out.set(line.slice(0, at), line.slice(at + 1));
  }
  return out;
}

/** The server's CPU seconds and command count now (two INFO calls). */
async function snapshot(redis) {
  const cpu = await info(redis, 'cpu');
  const stats = await info(redis, 'stats');
  return {
    cpu: Number(cpu.get('used_cpu_sys')) + Number(cpu.get('used_cpu_user')),
    commands: Number(stats.get('total_commands_processed')),
  };
}

/** Jobs 0..n-1 as addBulk entries, `{ i }` as each job's data. */
function bulkEntries(from, to) {
  const out = [];
  for (let i = from; i < to; i++) out.push({ name: 'bench', data: { i } });
  return out;
}

/** Adds jobs 0..n-1 in addBulk calls of BULK. */
async function addAllBulk(queue, n) {
  for (let from = 0; from < n; from += BULK) {
    await queue.addBulk(bulkEntries(from, Math.min(from + BULK, n)));
  }
}

/** Worker scenarios: the concurrency they name, or null for an add scenario. */
function workerConcurrency(name) {
  if (name === 'worker-generic') return 1;
  const m = /^worker-concurrent-(\d+)$/.exec(name);
  return m ? Number(m[1]) : null;
}

async function main() {
  const probe = new IORedis(connection);
  // What two snapshots with nothing between them count: the INFO calls.
  const a = await snapshot(probe);
  const b = await snapshot(probe);
  const infoOverhead = b.commands - a.commands;

  const queue = new Queue(QUEUE, { connection });
  await queue.waitUntilReady();
  await queue.obliterate({ force: true });

  const concurrency = workerConcurrency(scenario);
  let timed;
  let worker = null;
  if (scenario === 'queue-add') {
    timed = async () => {
      for (let i = 0; i < jobs; i++) await queue.add('bench', { i });
    };
  } else if (scenario === 'queue-add-bulk') {
    timed = () => addAllBulk(queue, jobs);
  } else if (concurrency !== null) {
    await addAllBulk(queue, jobs);
    let completed = 0;
    let failed = 0;
    let resolveDone;
    const done = new Promise((resolve) => {
      resolveDone = resolve;
    });
    // BullMQ's defaults otherwise: removeOnComplete off, so every completed
    // job stays in the completed set, as BullMQ's users get it.
    worker = new Worker(QUEUE, async () => {}, { connection, concurrency, autorun: false });
    worker.on('completed', () => {
      completed += 1;
      if (completed + failed === jobs) resolveDone();
    });
    worker.on('failed', (_job, err) => {
      failed += 1;
      console.error(`job failed: ${err?.message ?? err}`);
      if (completed + failed === jobs) resolveDone();
    });
    worker.on('error', (err) => console.error(`worker error: ${err?.message ?? err}`));
    await worker.waitUntilReady();
    timed = async () => {
      const running = worker.run();
      running.catch((err) => console.error(`worker.run: ${err?.message ?? err}`));
      await done;
      if (failed > 0) throw new Error(`${failed} of ${jobs} BullMQ jobs failed`);
    };
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }

  const before = await snapshot(probe);
  const start = process.hrtime.bigint();
  await timed();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const after = await snapshot(probe);

  if (worker) await worker.close();
  // Untimed check that every job is where the scenario leaves it.
  const state = concurrency === null ? 'wait' : 'completed';
  const counts = await queue.getJobCounts(state);
  if (counts[state] !== jobs) {
    throw new Error(`BullMQ has ${counts[state]} ${state} jobs, not ${jobs}`);
  }
  await queue.close();
  await probe.quit();

  const result = {
    jobs,
    seconds,
    jobs_per_sec: jobs / seconds,
    cpu_us: Math.round((after.cpu - before.cpu) * 1e6),
    commands: after.commands - before.commands - infoOverhead,
  };
  console.log(JSON.stringify(result));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err?.stack ?? String(err));
    process.exit(1);
  },
);
