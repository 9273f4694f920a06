// setup.js - install the `ws` WebSocket client and the `@20minutes/s3rver` S3 server into the
// build tree for the service tests (npm, at test time; nothing is committed). Never fails:
// without npm or a registry the tests fall back to Node's built-in WebSocket (node
// --experimental-websocket), and the S3 variant skips (or fails when CI=true).
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const prefix = process.argv[2];
const wanted = [['ws', 'ws@8'], ['@20minutes/s3rver', '@20minutes/s3rver@4.0.4']];
fs.mkdirSync(prefix, { recursive: true });
for (const [name, spec] of wanted) {
  if (fs.existsSync(path.join(prefix, 'node_modules', name, 'package.json'))) {
    console.log(name + ' already installed in ' + prefix);
    continue;
  }
  try {
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--prefix', prefix, spec],
      { stdio: 'inherit', timeout: 300000 });
    console.log('installed ' + spec + ' into ' + prefix);
  } catch (e) {
    console.log('npm install ' + spec + ' failed (' + e.message + ')');
  }
}
