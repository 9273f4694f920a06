// restart.test.js - durability: kill -9 in the middle of an export and start again on the
// same data folder. With on_restart=rerun the interrupted export and the one queued behind it
// complete; with on_restart=fail (or past max_attempts) it is an error with the reason. Never
// left "processing", never a temp file or temp key left. A clean stop (SIGTERM) requeues.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const {
  assert, ROOT, sleep, startServer, makeSource, appJob, newExportId, postExport, api, watch,
  listFiles, run,
} = require('./lib.js');

const media = path.join(ROOT, 'media');
fs.mkdirSync(media, { recursive: true });
const A = makeSource(path.join(media, 'a.mp4'), { seconds: 2 });
const LONG = makeSource(path.join(media, 'long.mp4'), { seconds: 12 });
const longJob = () => appJob([{ duration: 12 }, { duration: 12 }, { duration: 12 }], { transition: 'cut' });
const longFiles = [[0, LONG], [1, LONG], [2, LONG]];
const env = { FAKE_MS: '4000' }; // only the development stub engine reads it

async function waitProcessing(w) {
  for (let i = 0; i < 3000 && !w.frames.some((f) => f.phase === 'processing'); i++) await sleep(10);
  assert.ok(w.frames.some((f) => f.phase === 'processing'), 'export never reached processing: ' + JSON.stringify(w.frames.at(-1)));
}

function assertClean(dir, user = 'a') {
  assert.deepEqual(listFiles(path.join(dir, 'tmp')), [], 'upload temp files left');
  assert.deepEqual(listFiles(path.join(dir, 'work')), [], 'work files left');
  assert.deepEqual(listFiles(path.join(dir, 'objects', user, 'temp')), [], 'temp keys left');
}

async function record(srv, id) {
  const r = await api(srv, 'GET', `/api/exports/${id}`);
  assert.equal(r.status, 200);
  return r.body;
}

// Submit a long export and one queued behind it; kill -9 once the first is processing.
async function crashMidExport(name, args) {
  const srv = await startServer({ name, args: ['--workers', '1', ...args], env });
  const id1 = newExportId(), id2 = newExportId();
  const w1 = await watch(srv, id1);
  assert.equal((await postExport(srv, { exportId: id1, job: longJob(), files: longFiles })).status, 202);
  assert.equal((await postExport(srv, { exportId: id2, job: appJob([{}]), files: [[0, A]] })).status, 202);
  await waitProcessing(w1);
  w1.close();
  await srv.kill9();
  return { dir: srv.dir, id1, id2 };
}

run([
  ['kill -9 mid-export, restart with rerun: both exports complete, nothing left', async () => {
    const { dir, id1, id2 } = await crashMidExport('rerun', ['--on-restart', 'rerun']);
    assert.ok(listFiles(path.join(dir, 'objects', 'a', 'temp')).length > 0, 'sources should still be there before the restart');
    const srv = await startServer({ name: 'rerun', data: dir, args: ['--workers', '1', '--on-restart', 'rerun'], env });
    const r1 = await record(srv, id1);
    assert.ok(['pending', 'processing'].includes(r1.status), `after restart: ${r1.status}`);
    const w1 = await watch(srv, id1, { timeoutMs: 600000 });
    const w2 = await watch(srv, id2, { timeoutMs: 600000 });
    assert.equal((await w1.terminal).status, 'complete', JSON.stringify(w1.frames.at(-1)));
    assert.equal((await w2.terminal).status, 'complete', JSON.stringify(w2.frames.at(-1)));
    w1.close();
    w2.close();
    const rec = await record(srv, id1);
    assert.equal(rec.status, 'complete');
    assert.equal(rec.attempts, 2);
    assert.equal((await record(srv, id2)).status, 'complete');
    await sleep(200);
    assertClean(dir);
    await srv.stop();
  }],

  ['kill -9 mid-export, restart with fail: error with the reason, nothing left', async () => {
    const { dir, id1, id2 } = await crashMidExport('fail', ['--on-restart', 'fail']);
    const srv = await startServer({ name: 'fail', data: dir, args: ['--workers', '1', '--on-restart', 'fail'], env });
    const rec = await record(srv, id1);
    assert.equal(rec.status, 'error');
    assert.match(rec.error, /restarted/);
    const w1 = await watch(srv, id1);
    const f = await w1.terminal; // a late joiner gets the state of the row
    assert.equal(f.status, 'error');
    assert.match(f.error, /restarted/);
    w1.close();
    const w2 = await watch(srv, id2, { timeoutMs: 600000 }); // the queued one still runs
    assert.equal((await w2.terminal).status, 'complete');
    w2.close();
    await sleep(200);
    assertClean(dir);
    await srv.stop();
  }],

  ['interrupted max_attempts times: fails instead of looping', async () => {
    const { dir, id1 } = await crashMidExport('attempts', ['--on-restart', 'rerun', '--max-attempts', '1']);
    const srv = await startServer({ name: 'attempts', data: dir, args: ['--workers', '1', '--max-attempts', '1'], env });
    const rec = await record(srv, id1);
    assert.equal(rec.status, 'error');
    assert.match(rec.error, /interrupted/);
    await sleep(500);
    await srv.stop();
  }],

  ['clean stop (SIGTERM) mid-export requeues it, even with on_restart=fail', async () => {
    const srv = await startServer({ name: 'term', args: ['--workers', '1', '--on-restart', 'fail'], env });
    const id = newExportId();
    const w = await watch(srv, id);
    assert.equal((await postExport(srv, { exportId: id, job: longJob(), files: longFiles })).status, 202);
    await waitProcessing(w);
    w.close();
    const t0 = Date.now();
    await srv.stop(); // asserts exit status 0
    assert.ok(Date.now() - t0 < 10000, 'stop took too long');
    const again = await startServer({ name: 'term', data: srv.dir, args: ['--workers', '1', '--on-restart', 'fail'], env });
    const w2 = await watch(again, id, { timeoutMs: 600000 });
    assert.equal((await w2.terminal).status, 'complete', JSON.stringify(w2.frames.at(-1)));
    w2.close();
    assert.equal((await record(again, id)).attempts, 2);
    await sleep(200);
    assertClean(again.dir);
    await again.stop();
  }],
]);
