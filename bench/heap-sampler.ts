// Loaded into portcullis' processes by `npm run bench:profile` with BENCH_PROFILE_KIND=heap
// (node --import): V8's sampling heap profiler, switched by SIGUSR2, two windows:
//   1st signal: start sampling every allocation (including those a scavenge frees)
//   2nd signal: stop and write that profile
//   3rd signal: start sampling only what no scavenge freed (objects promoted to the old
//               generation or allocated there, and those still alive at the 4th signal)
//   4th signal: stop and write that profile
// Files go to BENCH_HEAP_DIR as <pid>-all.heapprofile and <pid>-survived.heapprofile.
// Bench code only: never loaded by portcullis itself.
import inspector from 'node:inspector';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.BENCH_HEAP_DIR;
if (dir) {
  const session = new inspector.Session();
  session.connect();
  const windows = ['all', 'survived'] as const;
  let signals = 0;
  process.on('SIGUSR2', () => {
    const n = signals++;
    const window = windows[n >> 1];
    if (!window) return;
    if (n % 2 === 0) {
      // includeObjectsCollectedByMinorGC: false keeps only objects that lived through a scavenge
      session.post('HeapProfiler.startSampling', { samplingInterval: 2048, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: window === 'all' });
      return;
    }
    session.post('HeapProfiler.stopSampling', (err, r) => {
      // written under a temporary name and renamed, so the bench never reads half a file
      const file = join(dir, `${process.pid}-${window}.heapprofile`);
      if (err) return;
      writeFileSync(`${file}.tmp`, JSON.stringify(r.profile));
      renameSync(`${file}.tmp`, file);
    });
  });
}
