// Watches every file a configuration references (and the config itself) and asks for a
// reload when their contents change. Watches the folders, not the files, so the
// Kubernetes Secret/ConfigMap update — an atomic swap of the `..data` symlink, which
// never writes the files themselves — is seen. Events are debounced (a certificate and
// its key written one after the other become one reload) and a reload is only asked for
// when the contents really differ from what was last tried.
import { watch, readFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { createHash } from 'node:crypto';

export interface FileWatcher {
  /** replace the set of files (after a reload changed which files are referenced) */
  update(files: string[]): void;
  /** remember the current contents as tried (e.g. after a manual reload) */
  markTried(): void;
  close(): void;
}

export function contentDigest(files: readonly string[]): string {
  const h = createHash('sha256');
  for (const f of files) {
    h.update(f).update('\0');
    try {
      h.update(readFileSync(f));
    } catch (err) {
      h.update(`unreadable:${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    h.update('\0');
  }
  return h.digest('hex');
}

export function watchFiles(initial: string[], onChange: () => void, debounceMs = 300): FileWatcher {
  let files = [...new Set(initial)];
  let watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  let tried = contentDigest(files);

  const fire = () => {
    timer = undefined;
    const now = contentDigest(files);
    if (now === tried) return;
    tried = now;
    onChange();
  };
  const start = () => {
    for (const w of watchers) w.close();
    watchers = [];
    const byDir = new Map<string, Set<string>>();
    for (const f of files) {
      const d = dirname(f);
      if (!byDir.has(d)) byDir.set(d, new Set());
      byDir.get(d)!.add(basename(f));
    }
    for (const [dir, names] of byDir) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          const n = name?.toString();
          // our files, the Kubernetes ..data swap, or an event that names nothing
          if (n && !names.has(n) && !n.startsWith('..')) return;
          if (timer) clearTimeout(timer);
          timer = setTimeout(fire, debounceMs);
        });
        w.on('error', () => undefined);
        watchers.push(w);
      } catch {
        // a folder that does not exist yet: the next successful reload re-arms the watch
      }
    }
  };
  start();
  return {
    update(next: string[]) {
      files = [...new Set(next)];
      tried = contentDigest(files);
      start();
    },
    markTried() {
      tried = contentDigest(files);
    },
    close() {
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
      watchers = [];
    },
  };
}
