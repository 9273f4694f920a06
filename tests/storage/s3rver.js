// s3rver.js - start a local S3 server (npm @20minutes/s3rver 4.0.4) for tests.
//
//   node s3rver.js <port> <dir> [bucket]
//
// Listens on 127.0.0.1:<port> with its objects under <dir>, bucket `test` (or [bucket])
// created, credentials S3RVER / S3RVER (any region), SigV4 signatures checked. Prints
// "ready" on its own line once it accepts connections; exits on SIGTERM/SIGINT.
// The module is found through NODE_PATH (the storage tests install it into the build tree:
// `npm install --prefix <build>/tests/storage/node @20minutes/s3rver@4.0.4`, then
// NODE_PATH=<build>/tests/storage/node/node_modules). S3RVER_LOG=1 logs every request.
//
// Pitfalls of s3rver 4.0.4 that this script or its users must know:
//  - ListObjectsV2 continuation tokens are DES-encrypted, and the OpenSSL 3 behind node 20
//    only has DES in its legacy provider: without --openssl-legacy-provider a truncated
//    listing answers 500. This script re-runs itself with that flag when needed (the child
//    exits when this process goes, even on SIGKILL, through the IPC channel).
//  - Virtual-host requests do not verify: s3rver puts the bucket into the canonical URI of
//    a SigV4 request that did not have it. Use path-style requests.
//  - Keys containing & < > " ' or ` come back double-escaped in listings (&amp;amp;).
//  - Listings follow its folder walk, not byte order ("a b" after "a/x"), and a continued
//    listing skips keys that sort before the last one: such keys get lost across pages.
//  - DELETE removes emptied parent folders with a check-then-`rm -r`: a concurrent PUT
//    into the same folder can vanish. Concurrent tests should not share parent folders.
'use strict';

const crypto = require('node:crypto');
const { spawn } = require('node:child_process');

const args = process.argv.slice(2);
const port = Number(args[0]);
const dir = args[1];
const bucket = args[2] || 'test';
if (!Number.isInteger(port) || port < 0 || port > 65535 || !dir) {
  console.error('usage: node s3rver.js <port> <dir> [bucket]');
  process.exit(2);
}

function desAvailable() {
  try {
    crypto.createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
    return true;
  } catch (e) {
    return false;
  }
}

if (!desAvailable() && !process.execArgv.includes('--openssl-legacy-provider')) {
  const child = spawn(
    process.execPath,
    ['--openssl-legacy-provider', ...process.execArgv, __filename, ...args],
    { stdio: ['inherit', 'inherit', 'inherit', 'ipc'] },
  );
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code === null ? 1 : code));
  return;
}

if (process.send) {
  // started by the wrapper above: go when it goes
  process.on('disconnect', () => process.exit(0));
}

let S3rver;
try {
  S3rver = require('@20minutes/s3rver/lib/s3rver');
} catch (e) {
  console.error('s3rver.js: cannot load @20minutes/s3rver (set NODE_PATH): ' + e.message);
  process.exit(3);
}

require('node:fs').mkdirSync(dir, { recursive: true });
const server = new S3rver({
  directory: dir,
  address: '127.0.0.1',
  port,
  silent: !process.env.S3RVER_LOG,
  configureBuckets: [{ name: bucket }],
});

server.run().then(
  () => console.log('ready'),
  (err) => {
    console.error('s3rver.js: cannot start: ' + err.message);
    process.exit(1);
  },
);

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
