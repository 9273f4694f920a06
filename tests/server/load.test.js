// load.test.js - many WebSocket clients and concurrent submissions on one server:
// 100 clients on one export, 20 on four others, 5 submissions at once, plus clients that
// stall (never read) or vanish (socket destroyed). Every well-behaved client must get the
// terminal frame, in order; the server must survive. Prints peak RSS and thread count.
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
const B = makeSource(path.join(media, 'b.mp4'), { seconds: 2, freq: 660, src: 'testsrc' });
const MID = makeSource(path.join(media, 'mid.mp4'), { seconds: 6 });

let srv;
const peak = { threads: 0, hwm_kb: 0 };
let sampler;

run([
  ['start', async () => {
    srv = await startServer({ name: 'load', args: ['--workers', '2', '--queue', '16', '--http-threads', '200'], env: { FAKE_MS: '3000' } });
    const base = srv.status();
    console.log(`  idle: ${base.threads} threads, ${base.rss_kb} KiB RSS`);
    sampler = setInterval(() => {
      try {
        const s = srv.status();
        peak.threads = Math.max(peak.threads, s.threads);
        peak.hwm_kb = Math.max(peak.hwm_kb, s.hwm_kb);
      } catch {}
    }, 50);
  }],

  ['100 + 20 WebSocket clients, 5 concurrent submissions, stalled and vanished peers', async () => {
    const main = newExportId();
    const others = [newExportId(), newExportId(), newExportId(), newExportId()];
    const t0 = Date.now();
    const mainClients = await Promise.all(Array.from({ length: 100 }, () => watch(srv, main, { timeoutMs: 600000 })));
    const otherClients = [];
    for (const id of others) for (let i = 0; i < 5; i++) otherClients.push(await watch(srv, id, { timeoutMs: 600000 }));
    // 5 peers that never read, 5 that disappear without a close handshake
    const stalled = await Promise.all(Array.from({ length: 5 }, () => watch(srv, main)));
    for (const c of stalled) if (c.ws._socket) c.ws._socket.pause();
    const vanished = await Promise.all(Array.from({ length: 5 }, () => watch(srv, main)));
    console.log(`  ${mainClients.length + otherClients.length + 10} sockets open in ${Date.now() - t0} ms`);

    const submissions = [
      postExport(srv, { exportId: main, job: appJob([{ duration: 6 }, { duration: 6 }]), files: [[0, MID], [1, MID]] }),
      ...others.map((id, i) => postExport(srv, { exportId: id, job: appJob([{}, {}]), files: [[0, i % 2 ? A : B], [1, A]] })),
    ];
    const replies = await Promise.all(submissions);
    for (const r of replies) assert.equal(r.status, 202, JSON.stringify(r.body));
    await sleep(300);
    for (const c of vanished) if (c.ws._socket) c.ws._socket.destroy();

    const ends = await Promise.all([...mainClients, ...otherClients].map((c) => c.terminal));
    for (const f of ends) assert.equal(f.status, 'complete', JSON.stringify(f));
    for (const c of [...mainClients, ...otherClients]) {
      let last = -1;
      for (const f of c.frames) {
        assert.ok(f.progress >= last, `frames out of order: ${last} -> ${f.progress}`);
        last = f.progress;
      }
    }
    const counts = mainClients.map((c) => c.frames.length);
    console.log(`  all ${ends.length} clients got the terminal frame in ${Date.now() - t0} ms;` +
      ` frames per client on the shared export: min ${Math.min(...counts)}, max ${Math.max(...counts)}`);
    for (const c of [...mainClients, ...otherClients, ...stalled]) c.close();

    const h = await api(srv, 'GET', '/api/health');
    assert.equal(h.status, 200);
    for (const id of [main, ...others]) assert.equal((await api(srv, 'GET', `/api/exports/${id}`)).body.status, 'complete');
    await sleep(300);
    assert.deepEqual(listFiles(path.join(srv.dir, 'objects', 'a', 'temp')), []);
  }],

  ['WebSockets cannot starve the API: a limit, then 503', async () => {
    const small = await startServer({ name: 'small', args: ['--http-threads', '32'] });
    try {
      const id = newExportId();
      const clients = await Promise.all(Array.from({ length: 16 }, () => watch(small, id)));
      await assert.rejects(watch(small, id), (e) => e.status === 503 || /503/.test(String(e.message)));
      const h = await api(small, 'GET', '/api/health'); // still served
      assert.equal(h.status, 200);
      assert.equal(h.body.websockets.clients, 16);
      for (const c of clients) c.close();
      for (let i = 0; i < 50; i++) {
        if ((await api(small, 'GET', '/api/health')).body.websockets.clients === 0) break;
        await sleep(50);
      }
      const again = await watch(small, id);
      again.close();
    } finally {
      await small.stop();
    }
  }],

  ['report and stop', async () => {
    clearInterval(sampler);
    const s = srv.status();
    peak.threads = Math.max(peak.threads, s.threads);
    peak.hwm_kb = Math.max(peak.hwm_kb, s.hwm_kb);
    console.log(`  peak RSS ${(peak.hwm_kb / 1024).toFixed(1)} MiB, peak threads ${peak.threads}`);
    // the server still answers after all that, and the hub has let the sockets go
    for (let i = 0; i < 100; i++) {
      const h = await api(srv, 'GET', '/api/health');
      if (h.body.websockets.clients === 0) break;
      await sleep(100);
    }
    const h = await api(srv, 'GET', '/api/health');
    assert.equal(h.body.websockets.clients, 0, JSON.stringify(h.body));
    await srv.stop();
  }],
]);
