// clipreel web page: compose a multi-clip reel, submit it exactly as the Reel Ballers editor
// does (multipart to /api/export/multi-clip, WebSocket opened first), follow progress, cancel,
// and play the result with its WebVTT chapters. Plain JS, no build step.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const state = { clips: [], exports: new Map() };
const STORE_KEY = 'clipreel.exports';

// ---- auth --------------------------------------------------------------------------------
const tokenInput = $('#token');
tokenInput.value = localStorage.getItem('clipreel.token') || '';
tokenInput.addEventListener('change', () => {
  localStorage.setItem('clipreel.token', tokenInput.value.trim());
  refreshExports();
});
const token = () => tokenInput.value.trim();
const authHeaders = () => (token() ? { Authorization: 'Bearer ' + token() } : {});
// media elements and WebSockets cannot send headers: the server also takes ?token=
const withToken = (url) => (token() ? url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token()) : url);

// ---- composing -----------------------------------------------------------------------------
const aspect = () => $('#aspect').value.split(':').map(Number);

$('#files').addEventListener('change', (ev) => {
  const box = $('#clips');
  box.textContent = '';
  state.clips = [...ev.target.files].map((file, i) => makeClip(file, i));
  state.clips.forEach((c) => box.appendChild(c.el));
  updateSubmit();
});
$('#aspect').addEventListener('change', () => state.clips.forEach((c) => c.resetBoxes()));

function updateSubmit() {
  $('#submit').disabled = state.clips.length < 2 || !state.clips.every((c) => c.ready);
  $('#status').textContent = state.clips.length === 1 ? 'Pick two or more clips.' : '';
}

function makeClip(file, index) {
  const el = $('#clip-tpl').content.firstElementChild.cloneNode(true);
  const video = $('video', el);
  const clip = { file, index, el, ready: false, boxes: {} };
  $('.name', el).textContent = file.name;
  $('.title', el).value = file.name.replace(/\.[^.]+$/, '');
  video.src = URL.createObjectURL(file);
  video.addEventListener('loadedmetadata', () => {
    clip.duration = video.duration;
    clip.width = video.videoWidth;
    clip.height = video.videoHeight;
    $('.tend', el).value = video.duration.toFixed(2);
    $('.sfrom', el).value = (video.duration / 3).toFixed(2);
    $('.sto', el).value = ((2 * video.duration) / 3).toFixed(2);
    $('.dims', el).textContent = `${clip.width}x${clip.height}, ${video.duration.toFixed(2)} s`;
    video.currentTime = Math.min(0.1, video.duration / 2); // show a preview frame
    clip.resetBoxes();
    clip.ready = true;
    updateSubmit();
  });
  video.addEventListener('error', () => {
    $('.dims', el).textContent = 'this browser cannot preview the file; it will still be exported';
    clip.ready = false;
    updateSubmit();
  });
  // seek the preview to the trim point being edited
  $('.tstart', el).addEventListener('input', (e) => (video.currentTime = +e.target.value || 0));
  $('.tend', el).addEventListener('input', (e) => (video.currentTime = Math.max(0, (+e.target.value || 0) - 0.05)));

  // crop boxes, kept in source pixels; drawn scaled to the preview
  clip.resetBoxes = () => {
    if (!clip.width) return;
    const [aw, ah] = aspect();
    let w = clip.width * 0.5, h = (w * ah) / aw;
    if (h > clip.height * 0.8) { h = clip.height * 0.8; w = (h * aw) / ah; }
    clip.boxes.start = { x: (clip.width - w) * 0.25, y: (clip.height - h) / 2, w, h };
    clip.boxes.end = { x: (clip.width - w) * 0.75, y: (clip.height - h) / 2, w, h };
    draw();
  };
  const draw = () => {
    const s = video.clientWidth / clip.width || 1;
    for (const name of ['start', 'end']) {
      const b = clip.boxes[name], d = $('.box.' + name, el);
      Object.assign(d.style, { left: b.x * s + 'px', top: b.y * s + 'px', width: b.w * s + 'px', height: b.h * s + 'px' });
    }
  };
  new ResizeObserver(draw).observe(video);
  for (const name of ['start', 'end']) dragBox(clip, $('.box.' + name, el), name, video, draw);
  return clip;
}

function dragBox(clip, boxEl, name, video, draw) {
  boxEl.addEventListener('pointerdown', (ev) => {
    ev.preventDefault();
    boxEl.setPointerCapture(ev.pointerId);
    const resize = ev.target.classList.contains('grip');
    const s = video.clientWidth / clip.width;
    const b0 = { ...clip.boxes[name] }, x0 = ev.clientX, y0 = ev.clientY;
    const [aw, ah] = aspect();
    const move = (e) => {
      const dx = (e.clientX - x0) / s, dy = (e.clientY - y0) / s, b = clip.boxes[name];
      if (resize) { // keep the output aspect
        b.w = Math.max(16, Math.min(b0.w + dx, clip.width - b0.x, ((clip.height - b0.y) * aw) / ah));
        b.h = (b.w * ah) / aw;
      } else {
        b.x = Math.max(0, Math.min(b0.x + dx, clip.width - b.w));
        b.y = Math.max(0, Math.min(b0.y + dy, clip.height - b.h));
      }
      draw();
    };
    const up = () => { boxEl.removeEventListener('pointermove', move); boxEl.removeEventListener('pointerup', up); };
    boxEl.addEventListener('pointermove', move);
    boxEl.addEventListener('pointerup', up);
  });
}

// The editor's multi_clip_data_json (DESIGN section 2, app shape).
function buildJob() {
  const round = (v) => Math.round(v * 1000) / 1000;
  const clips = state.clips.map((c, i) => {
    const q = (sel) => $(sel, c.el);
    const start = +q('.tstart').value || 0, end = +q('.tend').value || c.duration;
    const segments = { boundaries: [0, round(c.duration)], segmentSpeeds: {}, trimRange: { start, end } };
    if (q('.slow').checked) {
      const a = +q('.sfrom').value, b = +q('.sto').value;
      if (a > 0 && b > a && b < c.duration) {
        segments.boundaries = [0, a, b, round(c.duration)];
        segments.segmentSpeeds = { 1: 0.5 };
      }
    }
    const kf = (t, b) => ({ time: t, x: round(b.x), y: round(b.y), width: round(b.w), height: round(b.h) });
    return {
      clipIndex: i, fileName: c.file.name, clipName: q('.title').value.trim(), duration: round(c.duration),
      sourceWidth: c.width, sourceHeight: c.height, segments, trimRange: { start, end },
      cropKeyframes: [kf(start, c.boxes.start), kf(end, c.boxes.end)],
    };
  });
  return { clips, globalAspectRatio: $('#aspect').value,
           transition: { type: $('#transition').value, duration: +$('#tdur').value || 0 } };
}

function openSocket(id) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(withToken(`${proto}//${location.host}/ws/export/${encodeURIComponent(id)}`));
    const timer = setTimeout(() => { ws.close(); reject(new Error('WebSocket connect timeout')); }, 5000);
    ws.onopen = () => { clearTimeout(timer); resolve(ws); };
    ws.onerror = () => { clearTimeout(timer); reject(new Error('WebSocket failed')); };
  });
}

$('#submit').addEventListener('click', async () => {
  const id = 'export_' + Date.now() + '_' + Math.random().toString(36).slice(2, 9);
  const name = $('#pname').value.trim() || 'reel';
  const form = new FormData();
  form.append('export_id', id);
  form.append('multi_clip_data_json', JSON.stringify(buildJob()));
  form.append('include_audio', $('#audio').checked ? 'true' : 'false');
  form.append('target_fps', '30');
  form.append('export_mode', 'fast');
  form.append('project_name', name);
  state.clips.forEach((c, i) => form.append('video_' + i, c.file, c.file.name));
  $('#submit').disabled = true;
  $('#status').textContent = 'Uploading…';
  const item = addExport(id, name);
  try {
    follow(item, await openSocket(id)); // before the POST, as the editor does
    const res = await fetch('/api/export/multi-clip', { method: 'POST', body: form, headers: authHeaders() });
    const body = await res.json().catch(() => ({}));
    if (res.status !== 202) throw new Error(body.detail || `HTTP ${res.status}`);
    $('#status').textContent = 'Accepted: ' + id;
    remember(id, name);
  } catch (err) {
    $('#status').textContent = 'Export failed: ' + err.message;
    setState(item, { status: 'error', error: err.message });
  } finally {
    updateSubmit();
  }
});

// ---- exports list ------------------------------------------------------------------------
function remember(id, name) {
  const saved = JSON.parse(localStorage.getItem(STORE_KEY) || '[]').filter((e) => e.id !== id);
  saved.unshift({ id, name });
  localStorage.setItem(STORE_KEY, JSON.stringify(saved.slice(0, 20)));
}

function addExport(id, name) {
  let item = state.exports.get(id);
  if (item) return item;
  const el = $('#export-tpl').content.firstElementChild.cloneNode(true);
  el.dataset.id = id;
  $('.ename', el).textContent = name || id;
  $('.cancel', el).addEventListener('click', async () => {
    const res = await fetch('/api/exports/' + encodeURIComponent(id), { method: 'DELETE', headers: authHeaders() });
    if (!res.ok) $('.detail', el).textContent = 'cancel failed: HTTP ' + res.status;
  });
  item = { id, el, done: false };
  state.exports.set(id, item);
  $('#list').prepend(el);
  return item;
}

function follow(item, ws) {
  item.ws = ws;
  ws.onmessage = (ev) => {
    if (ev.data === 'pong' || !ev.data) return;
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    setState(item, msg);
    if (msg.status === 'complete' || msg.status === 'error' || msg.status === 'cancelled') ws.close();
  };
  const ping = setInterval(() => ws.readyState === 1 && ws.send('ping'), 30000);
  ws.onclose = () => clearInterval(ping);
}

function fmtEta(s) {
  if (s == null || s < 0 || !isFinite(s)) return '';
  return s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s left` : `${Math.round(s)} s left`;
}

function setState(item, m) {
  const el = item.el, status = m.status || 'processing';
  el.className = 'export ' + status;
  $('.state', el).textContent = status === 'processing' ? (m.phase || 'processing') : status;
  if (typeof m.progress === 'number') $('progress', el).value = m.progress;
  const parts = [];
  if (m.phase) parts.push(m.phase);
  if (m.clip && m.total_clips) parts.push(`clip ${m.clip}/${m.total_clips}`);
  if (m.total_frames) parts.push(`frame ${m.current_frame || 0}/${m.total_frames}`);
  const eta = fmtEta(m.eta_s);
  if (eta) parts.push(eta);
  if (m.error) parts.push(m.error);
  if (!m.error && m.message && parts.length < 2) parts.push(m.message);
  $('.detail', el).textContent = parts.join(' · ');
  const terminal = status === 'complete' || status === 'error' || status === 'cancelled';
  $('.cancel', el).hidden = terminal;
  if (status === 'complete' && !item.done) showResult(item);
  item.done = item.done || terminal;
}

function showResult(item) {
  const el = item.el, id = encodeURIComponent(item.id);
  const video = $('.result video', el);
  $('.result', el).hidden = false;
  $('progress', el).value = 100;
  video.src = withToken(`/api/exports/${id}/output`);
  const track = document.createElement('track');
  track.kind = 'chapters';
  track.label = 'Chapters';
  track.default = true;
  track.src = withToken(`/api/exports/${id}/chapters.vtt`);
  video.appendChild(track);
  const list = $('.chapters', el);
  track.addEventListener('load', () => {
    list.textContent = '';
    for (const cue of track.track.cues) {
      const li = document.createElement('li');
      li.textContent = `${cue.text} (${cue.startTime.toFixed(1)} s)`;
      li.addEventListener('click', () => { video.currentTime = cue.startTime; video.play(); });
      list.appendChild(li);
    }
  });
  track.track.mode = 'hidden'; // load the cues without rendering them
  const a = $('.download', el);
  a.href = withToken(`/api/exports/${id}/output`);
  a.download = (item.id || 'reel') + '.mp4';
}

async function refreshExports() {
  const seen = new Map();
  for (const e of JSON.parse(localStorage.getItem(STORE_KEY) || '[]')) seen.set(e.id, e.name);
  try {
    const res = await fetch('/api/exports/active', { headers: authHeaders() });
    if (res.ok) {
      const body = await res.json();
      for (const e of body.exports || body || []) if (e.job_id && !seen.has(e.job_id)) seen.set(e.job_id, e.project_name || e.job_id);
    }
  } catch { /* the list is best effort */ }
  for (const [id, name] of [...seen].reverse()) {
    if (state.exports.has(id)) continue;
    const res = await fetch('/api/exports/' + encodeURIComponent(id), { headers: authHeaders() }).catch(() => null);
    if (!res || !res.ok) continue;
    const rec = await res.json();
    const item = addExport(id, name);
    const status = rec.status === 'pending' ? 'processing' : rec.status;
    setState(item, { status, phase: rec.phase, progress: rec.progress, error: rec.error });
    if (status === 'processing') openSocket(id).then((ws) => follow(item, ws)).catch(() => {});
  }
}
refreshExports();
