// s3.test.js - the service with the S3 store (an s3rver on a free port, through the storage
// tests' tests/storage/s3rver.js; SigV4 signatures are checked): the editor's flow reaches
// complete, the result is published under {user}/working_videos/, GET .../output redirects
// to a presigned URL that serves the MP4 (ffprobe), the chapters are proxied, the temporary
// sources are gone, a cancel and a failure clean up too. Skips (77) when s3rver is not
// installed, unless CI=true.
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const {
  assert, ROOT, sleep, startServer, makeSource, ffprobe, appJob, newExportId, postExport, api,
  watch, listFiles, run,
} = require('./lib.js');

try {
  require.resolve('@20minutes/s3rver/lib/s3rver');
} catch {
  console.log('@20minutes/s3rver is not installed (server.setup could not reach npm)');
  process.exit(process.env.CI === 'true' ? 1 : 77);
}

const S3RVER_JS = path.join(__dirname, '..', 'storage', 's3rver.js');
const media = path.join(ROOT, 'media');
fs.mkdirSync(media, { recursive: true });
const A = makeSource(path.join(media, 'a.mp4'), { seconds: 2 });
const B = makeSource(path.join(media, 'b.mp4'), { seconds: 2, freq: 660, src: 'testsrc' });
const LONG = makeSource(path.join(media, 'long.mp4'), { seconds: 12 });

let s3, s3dir, srv;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Objects of the bucket as s3rver keeps them on disk (one folder per key).
function bucketKeys() {
  const files = listFiles(path.join(s3dir, 'test'));
  return [...new Set(files.map((f) => f.replace(/\._S3rver_[a-z]+$/, '')))].sort();
}

run([
  ['start s3rver and the server', async () => {
    const port = await freePort();
    s3dir = path.join(ROOT, 's3');
    s3 = spawn(process.execPath, [S3RVER_JS, String(port), s3dir, 'test'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('s3rver did not start')), 30000);
      s3.stdout.on('data', (d) => { if (String(d).includes('ready')) { clearTimeout(timer); resolve(); } });
      s3.on('exit', (c) => reject(new Error('s3rver exited ' + c)));
    });
    process.on('exit', () => s3.kill('SIGKILL'));
    srv = await startServer({
      name: 's3',
      args: ['--storage', 's3', '--s3-endpoint', `http://127.0.0.1:${port}`, '--s3-bucket', 'test',
        '--s3-region', 'auto', '--workers', '1', '--presign-ttl', '600'],
      env: { CLIPREEL_S3_ACCESS_KEY: 'S3RVER', CLIPREEL_S3_SECRET_KEY: 'S3RVER' },
    });
    const h = await api(srv, 'GET', '/api/health');
    assert.equal(h.body.storage, 's3');
  }],

  ['editor flow on S3: complete, 302 to a presigned URL, chapters, no temp keys', async () => {
    const id = newExportId();
    const w = await watch(srv, id, { timeoutMs: 600000 });
    const r = await postExport(srv, { exportId: id, job: appJob([{}, {}]), files: [[0, A], [1, B]], projectId: '5' });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const end = await w.terminal;
    w.close();
    assert.equal(end.status, 'complete', JSON.stringify(end));
    assert.ok(w.frames.some((f) => f.phase === 'downloading'), 'sources were not downloaded from S3');
    const rec = (await api(srv, 'GET', `/api/exports/${id}`)).body;
    const keys = bucketKeys();
    assert.ok(keys.includes(`a/working_videos/${rec.output_filename}`), keys.join(','));
    assert.ok(keys.includes(`a/working_videos/${rec.output_filename.replace('.mp4', '.chapters.vtt')}`));
    assert.deepEqual(keys.filter((k) => k.includes('/temp/')), [], 'temp keys left');
    const out = await api(srv, 'GET', end.output_url);
    assert.equal(out.status, 302);
    const url = out.headers.get('location');
    assert.match(url, /X-Amz-Signature=/);
    assert.match(url, new RegExp(`/test/a/working_videos/${rec.output_filename}`));
    const mp4 = await fetch(url);
    assert.equal(mp4.status, 200);
    const file = path.join(ROOT, id + '.mp4');
    fs.writeFileSync(file, Buffer.from(await mp4.arrayBuffer()));
    const p = ffprobe(file);
    assert.equal(p.streams.find((s) => s.codec_type === 'video').width, 360);
    assert.equal(p.chapters.length, 2);
    // a presigned URL for another key does not verify
    const forged = url.replace(rec.output_filename, 'working_5_00000000.mp4');
    assert.equal((await fetch(forged)).status, 403);
    const vtt = await api(srv, 'GET', `/api/exports/${id}/chapters.vtt`);
    assert.equal(vtt.status, 200);
    assert.match(vtt.body.toString(), /^WEBVTT/);
    assert.deepEqual(listFiles(path.join(srv.dir, 'work')), []);
    assert.deepEqual(listFiles(path.join(srv.dir, 'tmp')), []);
  }],

  ['cancel and failure on S3 clean up their keys', async () => {
    const id1 = newExportId(), id2 = newExportId();
    const w1 = await watch(srv, id1, { timeoutMs: 600000 });
    const w2 = await watch(srv, id2, { timeoutMs: 600000 });
    const long = appJob([{ duration: 12 }, { duration: 12 }], { transition: 'cut' });
    assert.equal((await postExport(srv, { exportId: id1, job: long, files: [[0, LONG], [1, LONG]] })).status, 202);
    const bad = path.join(media, 'bad.mp4');
    fs.writeFileSync(bad, Buffer.alloc(2048, 1));
    assert.equal((await postExport(srv, { exportId: id2, job: appJob([{}, {}]), files: [[0, A], [1, bad]] })).status, 202);
    for (let i = 0; i < 3000 && !w1.frames.some((f) => f.phase === 'processing'); i++) await sleep(10);
    await api(srv, 'DELETE', `/api/exports/${id1}`);
    const f1 = await w1.terminal;
    const f2 = await w2.terminal;
    w1.close();
    w2.close();
    assert.equal(f1.status, 'error');
    assert.ok(f1.phase === 'cancelled' || /Cancelled/.test(f1.error), JSON.stringify(f1));
    assert.equal(f2.status, 'error');
    assert.match(f2.error, /video_1/);
    assert.deepEqual(bucketKeys().filter((k) => k.includes('/temp/')), [], 'temp keys left');
    assert.deepEqual(listFiles(path.join(srv.dir, 'work')), []);
  }],

  ['stop', async () => {
    await srv.stop();
    s3.kill('SIGTERM');
  }],
]);
