// page.test.js - the web page end to end in headless Chromium (issue 6): pick two clips, set
// trims, submit, see live progress over the WebSocket, wait for complete, check that the
// result plays (currentTime advances) and that the chapter list shows both clip names. Runs
// once with auth off and once with a bearer token typed into the token field. Screenshots are
// saved as artifacts.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const lib = require('../server/lib.js');
const { chromium } = require('playwright-core');

const ART = process.env.REEL_ARTIFACTS || path.join(process.env.REEL_TEST_DIR || '/tmp', 'artifacts');
fs.mkdirSync(ART, { recursive: true });
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

async function runPage(browser, srv, { token = null, tag }) {
  const dir = path.join(lib.ROOT, 'clips');
  fs.mkdirSync(dir, { recursive: true });
  // 320x180 with audio; 2 s each. The page's default crops are smaller than its default
  // output, and the server forces upscale off so the test stays quick.
  const a = lib.makeSource(path.join(dir, 'Kickoff.mp4'), { seconds: 2, freq: 440 });
  const b = lib.makeSource(path.join(dir, 'Header goal.mp4'), { seconds: 2, freq: 880, src: 'mandelbrot' });

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push('pageerror: ' + e.message));
  try {
    await page.goto(srv.url + '/', { waitUntil: 'load' });
    if (token) {
      await page.fill('#token', token);
      await page.dispatchEvent('#token', 'change');
    }
    await page.setInputFiles('#files', [a, b]);
    await page.waitForFunction(() => !document.querySelector('#submit').disabled, null, { timeout: 20000 });
    // per clip: a trim and (on the first) a 0.5x segment
    const clips = page.locator('.clip');
    assert.equal(await clips.count(), 2);
    await clips.nth(0).locator('.tstart').fill('0.2');
    await clips.nth(0).locator('.slow').check();
    await clips.nth(1).locator('.tend').fill('1.8');
    // drag the first clip's end box a little: a real pointer drag on the preview
    const box = await clips.nth(0).locator('.box.end').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 2 - 20, box.y + box.height / 2 + 5, { steps: 4 });
    await page.mouse.up();
    await page.selectOption('#transition', 'dissolve');
    await page.screenshot({ path: path.join(ART, `${tag}-1-composed.png`) });

    await page.click('#submit');
    // live progress: the bar and the detail line change while processing
    const item = page.locator('#list .export').first();
    await item.waitFor({ timeout: 20000 });
    const seen = new Set();
    const t0 = Date.now();
    let done = false;
    while (Date.now() - t0 < 240000) {
      const cls = await item.getAttribute('class');
      const detail = await item.locator('.detail').textContent();
      const value = await item.locator('progress').evaluate((p) => p.value);
      if (detail) seen.add(`${Math.round(value)}|${detail}`);
      if (/\berror\b/.test(cls)) throw new Error('export failed in the page: ' + detail);
      if (/\bcomplete\b/.test(cls)) { done = true; break; }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(done, 'export did not complete in the page');
    const details = [...seen];
    assert.ok(details.length >= 2, 'expected several progress updates, saw: ' + JSON.stringify(details));
    assert.ok(details.some((d) => /clip \d\/2/.test(d) || /frame \d+\/\d+/.test(d)),
      'progress lines name the clip or frames: ' + JSON.stringify(details));
    await page.screenshot({ path: path.join(ART, `${tag}-2-complete.png`) });

    // the player: chapters listed from the WebVTT track, the video plays, a chapter seeks
    const chapters = item.locator('.chapters li');
    await chapters.nth(1).waitFor({ timeout: 20000 });
    const names = await chapters.allTextContents();
    assert.equal(names.length, 2, 'two chapters: ' + JSON.stringify(names));
    assert.match(names[0], /Kickoff/);
    assert.match(names[1], /Header goal/);
    const video = item.locator('.result video');
    await video.evaluate((v) => { v.muted = true; return v.play(); });
    const t1 = await video.evaluate((v) => v.currentTime);
    await page.waitForTimeout(1200);
    const t2 = await video.evaluate((v) => v.currentTime);
    assert.ok(t2 > t1 + 0.3, `the video plays: currentTime ${t1} -> ${t2}`);
    await chapters.nth(1).click();
    const t3 = await video.evaluate((v) => v.currentTime);
    const start2 = Number(/\(([\d.]+) s\)/.exec(names[1])[1]);
    assert.ok(Math.abs(t3 - start2) < 0.6, `clicking a chapter seeks to it: ${t3} vs ${start2}`);
    const href = await item.locator('.download').getAttribute('href');
    assert.match(href, /\/api\/exports\/.+\/output/);
    await page.screenshot({ path: path.join(ART, `${tag}-3-playing.png`) });
    console.log(`PASS ${tag}: ${details.length} progress states, chapters ${JSON.stringify(names)}, played ${t1.toFixed(2)} -> ${t2.toFixed(2)} s`);
  } catch (e) {
    await page.screenshot({ path: path.join(ART, `${tag}-failure.png`) }).catch(() => {});
    console.error(logs.join('\n'));
    throw e;
  } finally {
    await ctx.close();
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-quic', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  });
  try {
    const open = await lib.startServer({ name: 'web-open' });
    await runPage(browser, open, { tag: 'auth-off' });
    await open.stop();
    const locked = await lib.startServer({ name: 'web-auth', config: { tokens: { 'tok-web-1': 'webuser' } }, args: ['--auth', 'on'] });
    await runPage(browser, locked, { token: 'tok-web-1', tag: 'auth-on' });
    await locked.stop();
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
