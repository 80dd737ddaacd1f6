// Writes docs/configuration.md from the compiled config schema (dist/; `npm run docs`
// builds first). The test src/config/config-doc.test.ts fails until this has been run
// after a change to src/config/schema.ts or src/config/key-docs.ts.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { renderConfigDoc, docProblems } = await import(`${root}dist/src/config/config-doc.js`);
writeFileSync(`${root}docs/configuration.md`, renderConfigDoc());
const { undocumented, stale, noExample, landed } = docProblems();
for (const k of undocumented) process.stderr.write(`undocumented key: ${k}; describe it in src/config/key-docs.ts\n`);
for (const k of stale) process.stderr.write(`src/config/key-docs.ts describes ${k}, which the schema does not have; remove or rename the entry\n`);
for (const k of noExample) process.stderr.write(`${k} has neither a default nor an example; add an example in src/config/key-docs.ts\n`);
for (const k of landed) process.stderr.write(`note: ${k} is in the schema now; move its text from PENDING_DOCS to KEY_DOCS in src/config/key-docs.ts and check it against what was built\n`);
process.stdout.write('wrote docs/configuration.md\n');
process.exitCode = undocumented.length + stale.length + noExample.length > 0 ? 1 : 0;
