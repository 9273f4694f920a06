// redis.test.js - `clipreel serve --redis URL` with `clipreel worker` processes (scale-out,
// docs/scaleout.md): the editor's flow runs on a worker and comes back over Redis (frames,
// late joiners, the row settled before the terminal frame), cancel reaches the worker, a
// server killed mid-export settles the export after its restart, and an unreachable Redis
// falls back to running here (or fails the export when the fallback is off). Skips (77)
// without redis-server, unless CI=true.
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const {
  assert, ROOT, BIN, sleep, startServer, makeSource, ffprobe, appJob, newExportId, postExport,
  api, watch, listFiles, run,
} = require('./lib.js');

let redisBin = null;
try {
  redisBin = execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim();
} catch {}
if (!redisBin) {
  console.log('redis-server not found');
  process.exit(process.env.CI === 'true' ? 1 : 77);
}

const media = path.join(ROOT, 'media');
fs.mkdirSync(media, { recursive: true });
const A = makeSource(path.join(media, 'a.mp4'), { seconds: 2 });
const B = makeSource(path.join(media, 'b.mp4'), { seconds: 2, freq: 660, src: 'testsrc' });
const LONG = makeSource(path.join(media, 'long.mp4'), { seconds: 12 });
const longJob = () => appJob([{ duration: 12 }, { duration: 12 }, { duration: 12 }], { transition: 'cut' });
const longFiles = [[0, LONG], [1, LONG], [2, LONG]];

const children = [];
process.on('exit', () => { for (const c of children) try { c.kill('SIGKILL'); } catch {} });

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

let redisUrl, srv, data;

async function startRedis() {
  const port = await freePort();
  const dir = path.join(ROOT, 'redis');
  fs.mkdirSync(dir, { recursive: true });
  const p = spawn(redisBin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(p);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('redis-server did not start')), 15000);
    p.stdout.on('data', (d) => { if (/Ready to accept connections/.test(String(d))) { clearTimeout(timer); resolve(); } });
    p.on('exit', (c) => reject(new Error('redis-server exited ' + c)));
  });
  return `redis://127.0.0.1:${port}`;
}

function startWorker(name) {
  const log = fs.createWriteStream(path.join(ROOT, name + '.log'));
  const p = spawn(BIN, ['worker', '--redis', redisUrl, '--gpu-class', 't4', '--store-root', path.join(data, 'objects'),
    '--upscale', 'off', '--claim-idle-ms', '2000', '--work-dir', path.join(ROOT, name + '-work')],
  { stdio: ['ignore', 'pipe', 'pipe'] });
  p.stdout.pipe(log);
  p.stderr.pipe(log);
  children.push(p);
  return p;
}

run([
  ['start redis, the server and two workers', async () => {
    redisUrl = await startRedis();
    srv = await startServer({ name: 'redis-srv', args: ['--redis', redisUrl] });
    data = srv.dir;
    startWorker('worker1');
    startWorker('worker2');
  }],

  ['editor flow on the workers: frames, complete, the row settled first, result downloadable', async () => {
    const id = newExportId();
    const w = await watch(srv, id, { timeoutMs: 600000 });
    const r = await postExport(srv, { exportId: id, job: appJob([{}, {}]), files: [[0, A], [1, B]], projectId: '11' });
    assert.equal(r.status, 202);
    const end = await w.terminal;
    w.close();
    assert.equal(end.status, 'complete', JSON.stringify(end));
    assert.ok(w.frames.some((f) => f.status === 'processing' && f.total_frames > 0), 'no worker progress frames');
    // the complete frame came after the row was final
    const rec = (await api(srv, 'GET', `/api/exports/${id}`)).body;
    assert.equal(rec.status, 'complete');
    assert.match(rec.output_filename, /^working_11_[0-9a-f]{8}\.mp4$/);
    const out = await api(srv, 'GET', end.output_url);
    assert.equal(out.status, 200);
    const file = path.join(ROOT, id + '.mp4');
    fs.writeFileSync(file, out.body);
    assert.equal(ffprobe(file).chapters.length, 2);
    assert.deepEqual(listFiles(path.join(data, 'objects', 'a', 'temp')), [], 'temp keys left');
    // a late joiner gets the end at once
    const w2 = await watch(srv, id);
    assert.equal((await w2.terminal).status, 'complete');
    w2.close();
  }],

  ['cancel reaches the worker; a late joiner mid-export gets the newest frame', async () => {
    const id = newExportId();
    const w = await watch(srv, id, { timeoutMs: 600000 });
    assert.equal((await postExport(srv, { exportId: id, job: longJob(), files: longFiles })).status, 202);
    for (let i = 0; i < 3000 && !w.frames.some((f) => f.phase === 'processing' && f.current_frame > 0); i++) await sleep(10);
    const late = await watch(srv, id, { timeoutMs: 600000 });
    for (let i = 0; i < 100 && !late.frames.length; i++) await sleep(10);
    assert.ok(late.frames.length > 0 && late.frames[0].status === 'processing', 'late joiner got nothing');
    const t0 = Date.now();
    const c = await api(srv, 'DELETE', `/api/exports/${id}`);
    assert.equal(c.status, 202, JSON.stringify(c.body));
    const end = await w.terminal;
    const ms = Date.now() - t0;
    w.close();
    late.close();
    assert.equal(end.status, 'error', JSON.stringify(end));
    assert.match(end.error, /Cancelled/);
    assert.equal((await api(srv, 'GET', `/api/exports/${id}`)).body.status, 'cancelled');
    console.log(`  the worker stopped ${ms} ms after DELETE`);
    await sleep(300);
    assert.deepEqual(listFiles(path.join(data, 'objects', 'a', 'temp')), [], 'temp keys left');
  }],

  ['server killed mid-export: the restarted server settles it when the worker ends', async () => {
    const id = newExportId();
    const w = await watch(srv, id, { timeoutMs: 600000 });
    assert.equal((await postExport(srv, { exportId: id, job: appJob([{ duration: 12 }], { transition: 'cut' }), files: [[0, LONG]] })).status, 202);
    for (let i = 0; i < 3000 && !w.frames.some((f) => f.phase === 'processing'); i++) await sleep(10);
    w.close();
    await srv.kill9();
    srv = await startServer({ name: 'redis-srv', data, args: ['--redis', redisUrl] });
    const w2 = await watch(srv, id, { timeoutMs: 600000 });
    const end = await w2.terminal;
    w2.close();
    assert.equal(end.status, 'complete', JSON.stringify(end));
    const rec = (await api(srv, 'GET', `/api/exports/${id}`)).body;
    assert.equal(rec.status, 'complete');
    assert.equal(rec.attempts, 1, 'ran twice');
  }],

  ['Redis unreachable: runs here with the fallback, fails without it', async () => {
    const dead = `redis://127.0.0.1:${await freePort()}`;
    const fb = await startServer({ name: 'fallback', args: ['--redis', dead] });
    const id = newExportId();
    const w = await watch(fb, id, { timeoutMs: 600000 });
    assert.equal((await postExport(fb, { exportId: id, job: appJob([{}]), files: [[0, A]] })).status, 202);
    assert.equal((await w.terminal).status, 'complete');
    w.close();
    await fb.stop();
    const nofb = await startServer({ name: 'nofallback', args: ['--redis', dead, '--redis-fallback', 'off'] });
    const id2 = newExportId();
    const w2 = await watch(nofb, id2, { timeoutMs: 600000 });
    assert.equal((await postExport(nofb, { exportId: id2, job: appJob([{}]), files: [[0, A]] })).status, 202);
    const end = await w2.terminal;
    w2.close();
    assert.equal(end.status, 'error');
    assert.match(end.error, /unreachable/);
    await sleep(200);
    assert.deepEqual(listFiles(path.join(nofb.dir, 'objects', 'a', 'temp')), [], 'temp keys left');
    await nofb.stop();
  }],

  ['stop', async () => {
    await srv.stop();
  }],
]);
