#!/usr/bin/env node
// Thin launcher: the CLI lives in src/cli (compiled to dist/src/cli by `npm run build`).
import { main } from '../dist/src/cli/main.js';
main(process.argv).catch((err) => {
  process.stderr.write(`portcullis: ${err && err.message ? err.message : String(err)}\n`);
  process.exit(1);
});
