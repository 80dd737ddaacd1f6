// Reads the repository's Dockerfile for simulate.sh, so the simulation copies the same
// build context and starts the same command, user and environment as the image would.
// Understands the subset the Dockerfile uses: FROM, WORKDIR, COPY, RUN, ENV k=v, USER,
// EXPOSE, STOPSIGNAL, HEALTHCHECK ... CMD [json], ENTRYPOINT [json], CMD [json].
// Prints JSON: { build: { workdir, copies: [{ sources, dest }], runs }, final: {...} }.
import { readFileSync } from 'node:fs';

export function readDockerfile(text) {
  const lines = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (cur === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      cur += `${line.slice(0, -1)} `;
      continue;
    }
    lines.push(cur + line);
    cur = '';
  }
  const stages = [];
  for (const line of lines) {
    const [op, ...rest] = line.split(/\s+/);
    const arg = line.slice(op.length).trim();
    const upper = op.toUpperCase();
    if (upper === 'ARG' && stages.length === 0) continue;
    if (upper === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(arg);
      stages.push({ from: m[1], name: m[2] ?? null, workdir: '/', copies: [], runs: [], env: {}, user: 'root', expose: [] });
      continue;
    }
    const s = stages.at(-1);
    if (!s) throw new Error(`Dockerfile: ${op} before FROM`);
    switch (upper) {
      case 'WORKDIR':
        s.workdir = arg;
        break;
      case 'COPY': {
        const words = rest.filter((w) => !w.startsWith('--'));
        const from = rest.find((w) => w.startsWith('--from='));
        s.copies.push({ from: from ? from.slice('--from='.length) : null, sources: words.slice(0, -1), dest: words.at(-1) });
        break;
      }
      case 'RUN':
        s.runs.push(arg);
        break;
      case 'ENV':
        for (const kv of rest) {
          const i = kv.indexOf('=');
          s.env[kv.slice(0, i)] = kv.slice(i + 1);
        }
        break;
      case 'USER':
        s.user = arg;
        break;
      case 'EXPOSE':
        s.expose.push(...rest);
        break;
      case 'STOPSIGNAL':
        s.stopsignal = arg;
        break;
      case 'ENTRYPOINT':
        s.entrypoint = JSON.parse(arg);
        break;
      case 'CMD':
        s.cmd = JSON.parse(arg);
        break;
      case 'HEALTHCHECK': {
        const i = arg.indexOf('CMD ');
        const options = Object.fromEntries([...arg.slice(0, i).matchAll(/--([a-z-]+)=(\S+)/g)].map((m) => [m[1], m[2]]));
        s.healthcheck = { options, cmd: JSON.parse(arg.slice(i + 4)) };
        break;
      }
      default:
        throw new Error(`Dockerfile: ${op} is not understood by read-dockerfile.mjs; teach it, so simulate.sh stays faithful`);
    }
  }
  return { build: stages[0], final: stages.at(-1), stages: stages.length };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const parsed = readDockerfile(readFileSync(process.argv[2] ?? 'Dockerfile', 'utf8'));
  const field = process.argv[3];
  // `read-dockerfile.mjs Dockerfile copies` prints "source dest" lines for the shell
  if (field === 'copies') {
    for (const c of parsed.build.copies) for (const src of c.sources) process.stdout.write(`${src}\t${c.dest}\n`);
  } else if (field) {
    process.stdout.write(`${JSON.stringify(field.split('.').reduce((o, k) => o?.[k], parsed))}\n`);
  } else {
    process.stdout.write(`${JSON.stringify(parsed, null, 2)}\n`);
  }
}
