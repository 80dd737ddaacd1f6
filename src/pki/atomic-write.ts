// Writes files so that a crash or error never leaves a half-written certificate, key or
// CA state behind: write a temporary file beside the target, then rename over it.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

export interface PendingFile {
  path: string;
  data: string | Buffer;
  /** 0o600 for private keys; default 0o644 */
  mode?: number;
}

/** Writes one file atomically (same-directory rename is atomic on POSIX file systems). */
export function writeFileAtomic(path: string, data: string | Buffer, mode = 0o644): void {
  writeAllAtomic([{ path, data, mode }]);
}

/**
 * Writes several files as one unit as far as a file system allows: every temporary file is
 * written first, and only when all succeeded are they renamed into place. A failure before
 * the renames leaves nothing behind.
 */
export function writeAllAtomic(files: PendingFile[]): void {
  const temps: { tmp: string; path: string }[] = [];
  try {
    for (const f of files) {
      mkdirSync(dirname(f.path), { recursive: true });
      const tmp = join(dirname(f.path), `.${basename(f.path)}.${randomBytes(6).toString('hex')}.tmp`);
      // mode applies at creation, so a key is never readable by others, not even briefly
      writeFileSync(tmp, f.data, { mode: f.mode ?? 0o644, flag: 'wx' });
      temps.push({ tmp, path: f.path });
    }
  } catch (err) {
    for (const t of temps) rmSync(t.tmp, { force: true });
    throw err;
  }
  for (const t of temps) renameSync(t.tmp, t.path);
}
