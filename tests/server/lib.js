// lib.js - helpers for the service tests: start the real `clipreel serve` binary on a free
// port with a temp data folder, make tiny sources with ffmpeg's lavfi, submit exactly as the
// Reel Ballers editor does (WebSocket first, multipart with project_id twice), follow
// progress frames, probe results with ffprobe.
//
// Environment: CLIPREEL (the binary), REEL_TEST_DIR (scratch folder, wiped), NODE_PATH with
// the `ws` package (installed by setup.js at test time; Node's built-in WebSocket, behind
// --experimental-websocket, is the fallback).
'use strict';

const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

let WebSocketImpl;
try {
  WebSocketImpl = require('ws');
} catch {
  WebSocketImpl = globalThis.WebSocket;
}
if (!WebSocketImpl) {
  console.error('no WebSocket client: neither the ws package nor node --experimental-websocket');
  process.exit(1);
}

const BIN = process.env.CLIPREEL;
const ROOT = process.env.REEL_TEST_DIR || fs.mkdtempSync('/tmp/clipreel-test-');
if (!BIN) {
  console.error('CLIPREEL must name the clipreel binary');
  process.exit(2);
}
fs.rmSync(ROOT, { recursive: true, force: true });
fs.mkdirSync(ROOT, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the server ---------------------------------------------------------------------------

const servers = new Set();

async function startServer({ name = 'srv', args = [], env = {}, config = null, data = null } = {}) {
  const dir = data || path.join(ROOT, name);
  fs.mkdirSync(dir, { recursive: true });
  const argv = ['serve', '--port', '0', '--data', dir, '--upscale', 'off', ...args];
  if (config) {
    const file = path.join(ROOT, name + '.config.json');
    fs.writeFileSync(file, JSON.stringify(config));
    argv.push('--config', file);
  }
  const proc = spawn(BIN, argv, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = fs.createWriteStream(path.join(ROOT, name + '.log'), { flags: 'a' });
  proc.stderr.pipe(log);
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-20000); });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not start: ' + stderr)), 20000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on http:\/\/[\d.]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before listening: ${stderr}`));
    });
  });
  const srv = {
    proc, port, dir, url: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}`,
    stderr: () => stderr,
    exited: new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig }))),
    async stop() { // SIGTERM: must exit 0 (and clean under ASan: leaks fail the exit code)
      servers.delete(srv);
      if (proc.exitCode === null && !proc.signalCode) proc.kill('SIGTERM');
      const res = await Promise.race([srv.exited, sleep(20000).then(() => null)]);
      if (!res) {
        proc.kill('SIGKILL');
        throw new Error('server did not stop within 20 s');
      }
      assert.equal(res.code, 0, `server exit status ${res.code} ${res.sig}: ${stderr.slice(-3000)}`);
      return res;
    },
    async kill9() {
      servers.delete(srv);
      proc.kill('SIGKILL');
      return srv.exited;
    },
    status() { // peak RSS and thread count from /proc
      const s = fs.readFileSync(`/proc/${proc.pid}/status`, 'utf8');
      const get = (k) => Number((new RegExp(k + ':\\s+(\\d+)').exec(s) || [])[1]);
      // THP_enabled: 0 once the process has turned transparent huge pages off (prctl)
      return { hwm_kb: get('VmHWM'), rss_kb: get('VmRSS'), threads: get('Threads'), thp: get('THP_enabled') };
    },
  };
  servers.add(srv);
  return srv;
}

process.on('exit', () => { for (const s of servers) try { s.proc.kill('SIGKILL'); } catch {} });

// ---- sources --------------------------------------------------------------------------------

function ffmpeg(args) {
  execFileSync('ffmpeg', ['-v', 'error', '-y', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
}

// Tiny test clips: testsrc2 / mandelbrot video, sine audio (or none).
function makeSource(file, { w = 320, h = 180, seconds = 2, fps = 30, audio = true, freq = 440, src = 'testsrc2' } = {}) {
  if (fs.existsSync(file)) return file;
  const args = ['-f', 'lavfi', '-t', String(seconds), '-i', `${src}=size=${w}x${h}:rate=${fps}`];
  if (audio) args.push('-f', 'lavfi', '-t', String(seconds), '-i', `sine=frequency=${freq}:sample_rate=48000`);
  args.push('-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-g', '15');
  if (audio) args.push('-c:a', 'aac', '-b:a', '64k', '-shortest');
  args.push(file);
  ffmpeg(args);
  return file;
}

function ffprobe(file) {
  const out = execFileSync('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_format',
    '-show_streams', '-show_chapters', file], { encoding: 'utf8' });
  return JSON.parse(out);
}

// ---- the editor's requests -------------------------------------------------------------------

// The app shape: crops no smaller than the output size the app computes, so that no model runs.
function appJob(clips, { transition = 'dissolve', duration = 0.5, aspect = '9:16' } = {}) {
  return {
    clips: clips.map((c, i) => ({
      clipIndex: c.clipIndex ?? i,
      fileName: c.fileName ?? `clip${i}.mp4`,
      clipName: c.clipName,
      duration: c.duration ?? 2,
      sourceWidth: c.w ?? 320,
      sourceHeight: c.h ?? 180,
      segments: c.segments ?? { boundaries: [0, c.duration ?? 2], segmentSpeeds: {} },
      trimRange: c.trimRange ?? { start: 0, end: c.duration ?? 2 },
      cropKeyframes: c.cropKeyframes ?? [
        { time: 0, x: 10, y: 0, width: 90, height: 160 },
        { time: c.duration ?? 2, x: 200, y: 10, width: 90, height: 160 },
      ],
    })),
    globalAspectRatio: aspect,
    transition: { type: transition, duration },
  };
}

function newExportId() {
  return 'export_' + Date.now() + '_' + Math.random().toString(36).slice(2, 9);
}

// POST /api/export/multi-clip as ExportButton.jsx builds it. files: [[index, path], ...].
async function postExport(srv, { exportId, job, files = [], headers = {}, includeAudio = 'true',
  projectId = '7', projectName = 'Test reel', extra = [], rawJson = null } = {}) {
  const form = new FormData();
  if (exportId !== undefined) form.append('export_id', exportId);
  if (job !== undefined || rawJson !== null)
    form.append('multi_clip_data_json', rawJson !== null ? rawJson : JSON.stringify(job));
  form.append('include_audio', includeAudio);
  form.append('target_fps', '30');
  form.append('export_mode', 'fast');
  if (projectId !== null) {
    form.append('project_id', projectId);
    form.append('project_id', projectId); // twice, as the frontend does
  }
  if (projectName !== null) form.append('project_name', projectName);
  for (const [k, v] of extra) form.append(k, v);
  for (const [index, file, name] of files) {
    const data = typeof file === 'string' ? fs.readFileSync(file) : file;
    form.append(`video_${index}`, new Blob([data], { type: 'video/mp4' }), name ?? `clip_${index}.mp4`);
  }
  const res = await fetch(srv.url + '/api/export/multi-clip', { method: 'POST', body: form, headers });
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body, headers: res.headers };
}

async function api(srv, method, p, { headers = {} } = {}) {
  const res = await fetch(srv.url + p, { method, headers, redirect: 'manual' });
  const buf = Buffer.from(await res.arrayBuffer());
  let body = buf;
  if ((res.headers.get('content-type') || '').includes('json')) body = JSON.parse(buf.toString());
  return { status: res.status, body, headers: res.headers };
}

// Open /ws/export/{id}; collects frames; .terminal resolves with the complete/error frame.
function watch(srv, exportId, { query = '', timeoutMs = 120000 } = {}) {
  return new Promise((resolve, reject) => {
    const frames = [];
    const ws = new WebSocketImpl(`${srv.ws}/ws/export/${exportId}${query}`);
    let settle;
    const terminal = new Promise((res, rej) => { settle = { res, rej }; });
    const timer = setTimeout(() => settle.rej(new Error(`no terminal frame for ${exportId} in ${timeoutMs} ms; last: ${JSON.stringify(frames.at(-1))}`)), timeoutMs);
    const onMessage = (data) => {
      const text = typeof data === 'string' ? data : data.toString();
      if (text === 'pong') { frames.pongs = (frames.pongs || 0) + 1; return; }
      const f = JSON.parse(text);
      frames.push(f);
      if (f.status === 'complete' || f.status === 'error') {
        clearTimeout(timer);
        settle.res(f);
      }
    };
    const handle = { ws, frames, terminal, close: () => { clearTimeout(timer); try { ws.close(); } catch {} } };
    if (ws.on) { // the ws package
      ws.on('message', (d) => onMessage(d));
      ws.on('open', () => resolve(handle));
      ws.on('error', (e) => reject(e));
      ws.on('unexpected-response', (req, res) => reject(Object.assign(new Error('HTTP ' + res.statusCode), { status: res.statusCode })));
    } else {
      ws.onmessage = (ev) => onMessage(ev.data);
      ws.onopen = () => resolve(handle);
      ws.onerror = (e) => reject(new Error('WebSocket error ' + (e.message || '')));
    }
    terminal.catch(() => {});
  });
}

// Every file under dir (relative paths), for "nothing left behind" checks.
function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    let entries = [];
    try { entries = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p); else out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

// A tiny sequential runner: named tests, a summary, a non-zero exit on any failure.
async function run(tests) {
  let failed = 0;
  const only = process.env.REEL_TEST_ONLY;
  for (const [name, fn] of tests) {
    if (only && !name.startsWith('start') && !name.includes(only)) continue;
    const t0 = Date.now();
    try {
      await fn();
      console.log(`PASS ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name} (${Date.now() - t0} ms)\n  ${e.stack || e}`);
    }
  }
  for (const s of [...servers]) {
    try { await s.stop(); } catch (e) { failed++; console.log('FAIL server stop: ' + e.message); }
  }
  console.log(failed ? `${failed} test(s) failed` : 'all passed');
  process.exit(failed ? 1 : 0);
}

module.exports = {
  assert, ROOT, BIN, sleep, startServer, makeSource, ffprobe, appJob, newExportId, postExport,
  api, watch, listFiles, run, ffmpeg,
};
