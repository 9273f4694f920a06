// e2e.test.js - real exports through the service, as the editor makes them: WebSocket opened
// before the POST, all the form fields (project_id twice), files video_0..N; the result is
// downloaded and checked with ffprobe (size, duration, chapters, audio). Then the same through
// the C client (`clipreel submit`). Needs a working engine (reel_export_run).
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const {
  assert, ROOT, BIN, startServer, makeSource, ffprobe, newExportId, postExport, api, watch,
  listFiles, run,
} = require('./lib.js');

const media = path.join(ROOT, 'media');
fs.mkdirSync(media, { recursive: true });
const S0 = makeSource(path.join(media, 's0.mp4'), { w: 320, h: 180, seconds: 2, fps: 30 });
const S1 = makeSource(path.join(media, 's1.mp4'), { w: 240, h: 160, seconds: 2, fps: 60, audio: false, src: 'testsrc' });
const S2 = makeSource(path.join(media, 's2.mp4'), { w: 320, h: 180, seconds: 2, fps: 25, freq: 880 });

// The app's multi_clip_data_json: three clips, a slow-motion segment, dissolves. The crops are
// 90x160, so the app's default output size is 360x640; the server runs with --upscale off.
function editorJob(transition = 'dissolve') {
  const kf = (x, t = 0) => ({ time: t, x, y: 0, width: 90, height: 160, origin: 'user' });
  return {
    clips: [
      { clipIndex: 0, fileName: 'goal.mp4', clipName: 'Goal', duration: 2, sourceWidth: 320, sourceHeight: 180,
        segments: { boundaries: [0, 2], segmentSpeeds: {}, trimRange: { start: 0, end: 2 } },
        trimRange: { start: 0, end: 2 }, cropKeyframes: [kf(10, 0), kf(200, 2)] },
      { clipIndex: 1, fileName: 'assist.mp4', duration: 2, sourceWidth: 240, sourceHeight: 160,
        segments: { boundaries: [0, 2], segmentSpeeds: {} }, trimRange: null, cropKeyframes: [kf(50)] },
      { clipIndex: 2, fileName: 'save.mp4', clipName: 'Save', duration: 2, sourceWidth: 320, sourceHeight: 180,
        // splits only (the "Bug 20p" form): canonicalised to [0, 0.5, 1, 2]; 0.5..1 at half speed
        segments: { boundaries: [0.5, 1], segmentSpeeds: { 1: 0.5 }, trimRange: { start: 0, end: 2 } },
        cropKeyframes: [kf(100, 0), kf(120, 1), kf(130, 2)] },
    ],
    globalAspectRatio: '9:16',
    transition: { type: transition, duration: 0.5 },
  };
}
const files = [[0, S0, 'goal.mp4'], [1, S1, 'assist.mp4'], [2, S2, 'save.mp4']];

let srv;

async function exportAndFetch(job, { includeAudio = 'true' } = {}) {
  const id = newExportId();
  const w = await watch(srv, id, { timeoutMs: 600000 }); // first, as the editor
  const r = await postExport(srv, { exportId: id, job, files, includeAudio, projectId: '42', projectName: 'Final' });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const end = await w.terminal;
  w.close();
  assert.equal(end.status, 'complete', JSON.stringify(end));
  const out = path.join(ROOT, id + '.mp4');
  const res = await api(srv, 'GET', end.output_url);
  assert.equal(res.status, 200);
  fs.writeFileSync(out, res.body);
  return { id, out, frames: w.frames, end };
}

run([
  ['start', async () => {
    srv = await startServer({ name: 'e2e', args: ['--workers', '2'] });
  }],

  ['editor flow: 3 clips, dissolve, slow motion, audio -> complete; ffprobe', async () => {
    const { id, out, frames, end } = await exportAndFetch(editorJob());
    assert.equal(end.projectId, 42);
    assert.equal(end.projectName, 'Final');
    assert.ok(frames.some((f) => f.status === 'processing' && f.total_frames > 0 && f.clip >= 1), 'no frame-level progress');
    const p = ffprobe(out);
    const v = p.streams.find((s) => s.codec_type === 'video');
    const a = p.streams.find((s) => s.codec_type === 'audio');
    assert.equal(v.codec_name, 'h264');
    assert.equal(v.width, 360);
    assert.equal(v.height, 640);
    assert.equal(v.pix_fmt, 'yuv420p');
    assert.ok(a, 'no audio stream');
    assert.equal(a.codec_name, 'aac');
    assert.equal(Number(a.sample_rate), 48000);
    assert.equal(a.channels, 2);
    // 2 + 2 + (0.5 + 0.5 / 0.5 + 1) = 6.5 s, minus two 0.5 s dissolves = 5.5 s
    const dur = Number(p.format.duration);
    assert.ok(Math.abs(dur - 5.5) < 0.1, `duration ${dur}`);
    assert.equal(p.chapters.length, 3);
    assert.deepEqual(p.chapters.map((c) => c.tags.title), ['Goal', 'assist', 'Save']);
    const starts = p.chapters.map((c) => Number(c.start_time));
    assert.ok(Math.abs(starts[0]) < 0.05 && Math.abs(starts[1] - 1.5) < 0.05 && Math.abs(starts[2] - 3.0) < 0.05, `chapter starts ${starts}`);
    const vtt = await api(srv, 'GET', `/api/exports/${id}/chapters.vtt`);
    assert.equal(vtt.status, 200);
    assert.match(vtt.body.toString(), /Goal[\s\S]*assist[\s\S]*Save/);
    const rec = await api(srv, 'GET', `/api/exports/${id}`);
    assert.equal(rec.body.status, 'complete');
    assert.match(rec.body.output_filename, /^working_42_[0-9a-f]{8}\.mp4$/);
    assert.ok(fs.existsSync(path.join(srv.dir, 'objects', 'a', 'working_videos', rec.body.output_filename)));
    assert.ok(fs.existsSync(path.join(srv.dir, 'objects', 'a', 'working_videos', rec.body.output_filename.replace('.mp4', '.chapters.vtt'))));
    assert.deepEqual(listFiles(path.join(srv.dir, 'objects', 'a', 'temp')), []);
    assert.deepEqual(listFiles(path.join(srv.dir, 'work')), []);
    assert.deepEqual(listFiles(path.join(srv.dir, 'tmp')), []);
  }],

  ['include_audio=false writes no audio track; fade keeps the length', async () => {
    const { out } = await exportAndFetch(editorJob('fade'), { includeAudio: 'false' });
    const p = ffprobe(out);
    assert.equal(p.streams.filter((s) => s.codec_type === 'audio').length, 0);
    const dur = Number(p.format.duration);
    assert.ok(Math.abs(dur - 6.5) < 0.1, `duration ${dur}`);
  }],

  ['a corrupt source fails the export with a reason; nothing left', async () => {
    const bad = path.join(media, 'corrupt.mp4');
    fs.writeFileSync(bad, Buffer.alloc(4096, 0x5a));
    const id = newExportId();
    const w = await watch(srv, id, { timeoutMs: 600000 });
    const r = await postExport(srv, { exportId: id, job: editorJob(), files: [[0, S0], [1, bad], [2, S2]] });
    assert.equal(r.status, 202);
    const end = await w.terminal;
    w.close();
    assert.equal(end.status, 'error');
    assert.match(end.error, /^Export failed: .*video_1/);
    assert.ok(!end.error.includes(srv.dir), 'the error shows a server path: ' + end.error);
    const rec = await api(srv, 'GET', `/api/exports/${id}`);
    assert.equal(rec.body.status, 'error');
    assert.ok(rec.body.error.length > 15);
    assert.deepEqual(listFiles(path.join(srv.dir, 'objects', 'a', 'temp')), []);
    assert.deepEqual(listFiles(path.join(srv.dir, 'work')), []);
  }],

  ['clipreel submit: the C client uploads, follows and downloads', async () => {
    const job = {
      clips: [
        { source: path.relative(ROOT, S0), clipName: 'One', cropKeyframes: [{ time: 0, x: 0, y: 0, width: 90, height: 160 }] },
        { source: S2, clipIndex: 7, clipName: 'Two', cropKeyframes: [{ time: 0, x: 100, y: 10, width: 90, height: 160 }] },
      ],
      globalAspectRatio: '9:16',
      transition: { type: 'cut' },
      output: { width: 180, height: 320, fps: 30, include_audio: true },
    };
    const jobFile = path.join(ROOT, 'submit-job.json');
    fs.writeFileSync(jobFile, JSON.stringify(job));
    const out = path.join(ROOT, 'submitted.mp4');
    const lines = execFileSync(BIN, ['submit', jobFile, '--server', srv.url, '-o', out, '--project', '9', '--progress', 'json'],
      { encoding: 'utf8', timeout: 600000 }).trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.length >= 2, 'progress lines');
    assert.ok(lines.every((l) => 'phase' in l && 'percent' in l), 'JSON progress lines');
    assert.equal(lines.at(-1).phase, 'complete');
    const p = ffprobe(out);
    const v = p.streams.find((s) => s.codec_type === 'video');
    assert.equal(v.width, 180);
    assert.equal(v.height, 320);
    assert.ok(Math.abs(Number(p.format.duration) - 4) < 0.1, p.format.duration);
    assert.deepEqual(p.chapters.map((c) => c.tags.title), ['One', 'Two']);
    assert.match(fs.readFileSync(path.join(ROOT, 'submitted.chapters.vtt'), 'utf8'), /^WEBVTT[\s\S]*One[\s\S]*Two/);
    // errors come back with the server's detail and a non-zero status
    job.transition.type = 'spin';
    fs.writeFileSync(jobFile, JSON.stringify(job));
    let failed = null;
    try {
      execFileSync(BIN, ['submit', jobFile, '--server', srv.url, '--progress', 'none'], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) { failed = e; }
    assert.ok(failed, 'submit of a bad job succeeded');
    assert.equal(failed.status, 1);
    assert.match(failed.stderr, /HTTP 400: transition\.type/);
  }],
]);
