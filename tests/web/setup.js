// setup.js - install playwright-core into the build tree for the web page test (npm, at test
// time; nothing is committed). Playwright drives Debian's chromium: no browser download.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const prefix = process.argv[2];
if (fs.existsSync(path.join(prefix, 'node_modules', 'playwright-core', 'package.json'))) {
  console.log('playwright-core already installed in ' + prefix);
  process.exit(0);
}
fs.mkdirSync(prefix, { recursive: true });
execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--prefix', prefix,
  'playwright-core@1.65.1'], { stdio: 'inherit', timeout: 240000 });
console.log('installed playwright-core into ' + prefix);
