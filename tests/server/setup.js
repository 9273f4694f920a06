// setup.js - install the `ws` WebSocket client into the build tree for the service tests
// (npm, at test time; nothing is committed). Never fails: without npm or a registry the tests
// fall back to Node's built-in WebSocket (node --experimental-websocket).
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const prefix = process.argv[2];
if (fs.existsSync(path.join(prefix, 'node_modules', 'ws', 'package.json'))) {
  console.log('ws already installed in ' + prefix);
  process.exit(0);
}
fs.mkdirSync(prefix, { recursive: true });
try {
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--prefix', prefix, 'ws@8'],
    { stdio: 'inherit', timeout: 120000 });
  console.log('installed ws into ' + prefix);
} catch (e) {
  console.log('npm install ws failed (' + e.message + '); the tests use the built-in WebSocket');
}
