// Streams the upstream's 1 GB file through a proxy over one mTLS connection with curl
// (HTTP/1.1, client certificate, body discarded) and reports the average rate.
import { runTimed } from './proc.js';
import type { BenchPki } from './pki.js';

export interface StreamResult {
  status: number;
  bytes: number;
  seconds: number;
  /** 10^6 bytes per second */
  mbPerSec: number;
  /** CPU seconds curl used */
  curlCpuS: number | null;
  exitCode: number | null;
  error: string;
}

export async function runStream(curl: string, pki: BenchPki, port: number, expectBytes: number): Promise<StreamResult> {
  const args = [
    '-sS',
    '--http1.1',
    '--max-time',
    '600',
    '--cacert',
    pki.ca,
    '--cert',
    pki.clientChain,
    '--key',
    pki.clientKey,
    '-o',
    '/dev/null',
    '-w',
    '%{http_code} %{size_download} %{time_total} %{speed_download}',
    `https://127.0.0.1:${port}/big`,
  ];
  const r = await runTimed([curl, ...args]);
  const [status = '0', size = '0', total = '0', speed = '0'] = r.stdout.trim().split(/\s+/);
  const bytes = Number(size);
  let error = r.stderr.trim();
  if (!error && Number(status) !== 200) error = `HTTP status ${status}`;
  if (!error && bytes !== expectBytes) error = `received ${bytes} of ${expectBytes} bytes`;
  return { status: Number(status), bytes, seconds: Number(total), mbPerSec: Number(speed) / 1e6, curlCpuS: r.cpuS, exitCode: r.code, error };
}
