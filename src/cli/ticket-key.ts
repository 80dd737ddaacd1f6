// `portcullis ticket-key new FILE` and `portcullis ticket-key rotate CURRENT PREVIOUS...`:
// make and rotate the session ticket key files of listeners[].tls.session_tickets.key_files
// (docs/deploy.md). Keys are written as files of 80 random bytes, mode 0600,
// each by write-then-rename, so a proxy that reloads meanwhile never reads half a key.
import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { writeFileAtomic } from '../pki/atomic-write.js';
import { newTicketKey, parseTicketKey } from '../tls/ticket-keys.js';
import { ErrorCodes, PortcullisError } from '../errors.js';

function show(path: string): string {
  const r = relative(process.cwd(), path);
  return r && !r.startsWith('..') ? r : path;
}

/** The key in `file`, checked as the proxy checks it. */
function readKey(file: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new PortcullisError(ErrorCodes.FILE_NOT_FOUND, `ticket key file not found: ${file}; create it first with portcullis ticket-key new ${show(file)}`, { path: file });
    throw new PortcullisError(ErrorCodes.FILE_UNREADABLE, `cannot read ticket key file ${file} (${code ?? (err as Error).message}); run this as the user that owns the key files`, { path: file });
  }
  const r = parseTicketKey(data);
  if ('problem' in r) throw new PortcullisError(ErrorCodes.TICKET_KEY_INVALID, `${file} ${r.problem}, so it is not a session ticket key; replace it with portcullis ticket-key new ${show(file)} --force`, { path: file });
  return r.key;
}

/**
 * Shifts the keys one file down the list (the last one's key is dropped) and puts a fresh
 * key, or the key of `next`, into the first file. Files are written last to first, so
 * every state a reload may see in between still holds every key that was in use.
 */
export function rotateTicketKeys(files: string[], next?: string): { dropped: boolean } {
  const keys = files.map((f, i) => (i === 0 || existsSync(f) ? readKey(f) : undefined));
  const first = next ? readKey(next) : newTicketKey();
  for (let i = files.length - 1; i >= 1; i--) {
    const k = keys[i - 1];
    if (k) writeFileAtomic(files[i]!, k, 0o600);
  }
  writeFileAtomic(files[0]!, first, 0o600);
  if (next) writeFileAtomic(next, newTicketKey(), 0o600);
  return { dropped: keys.at(-1) !== undefined && files.length > 1 };
}

export function register(program: Command): void {
  const cmd = program.command('ticket-key').description('make and rotate session ticket key files (tls.session_tickets.key_files)');
  cmd
    .command('new')
    .description('write a new session ticket key (80 random bytes, mode 0600) to FILE')
    .argument('<file>', 'key file to write')
    .option('--force', 'replace an existing file (tickets sealed with its key stop resuming unless it stays listed elsewhere)', false)
    .action((file: string, opts: { force: boolean }) => {
      const path = resolve(file);
      if (existsSync(path) && !opts.force) {
        throw new PortcullisError(ErrorCodes.USAGE, `${show(path)} already exists; to rotate keys use portcullis ticket-key rotate, or pass --force to replace it`, { exitCode: 2 });
      }
      writeFileAtomic(path, newTicketKey(), 0o600);
      process.stdout.write(`Wrote a session ticket key to ${show(path)} (80 bytes, mode 0600)\n`);
    });
  cmd
    .command('rotate')
    .description('move each key one file down the list (CURRENT to PREVIOUS, ...) and put a new key in CURRENT')
    .argument('<current>', 'the first key file of session_tickets.key_files (seals new tickets)')
    .argument('<previous...>', 'the other key files, in the same order as in the config')
    .option('--next <file>', 'take CURRENT\'s new key from this file (already listed everywhere, so every replica can open its tickets) and write a fresh key there')
    .action((current: string, previous: string[], opts: { next?: string }) => {
      const files = [current, ...previous].map((f) => resolve(f));
      const next = opts.next ? resolve(opts.next) : undefined;
      if (new Set([...files, ...(next ? [next] : [])]).size !== files.length + (next ? 1 : 0)) {
        throw new PortcullisError(ErrorCodes.USAGE, 'a key file is named twice; name each file once, in the order of session_tickets.key_files', { exitCode: 2 });
      }
      const r = rotateTicketKeys(files, next);
      const out = process.stdout;
      out.write(`Rotated session ticket keys: ${files.map(show).join(' -> ')}${r.dropped ? ' (the oldest key was dropped)' : ''}\n`);
      out.write(`  ${show(files[0]!)} now seals new tickets${next ? `; ${show(next)} holds the next key` : ''}\n`);
      out.write('  A running portcullis reloads them by itself; replicas that share these files resume each other\'s sessions.\n');
    });
}
