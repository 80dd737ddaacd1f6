// An interactive `openssl s_client` for end-to-end tests that need its command letters
// (R renegotiates, k/K update TLS 1.3 keys) between application writes: start it, wait for
// text in its output, write the next line, and collect everything it printed.
import { spawn, type ChildProcess } from 'node:child_process';

export class SClient {
  readonly proc: ChildProcess;
  /** stdout and stderr together, in arrival order */
  out = '';
  exitCode: number | null | undefined;
  private readonly exited: Promise<void>;

  constructor(args: string[]) {
    this.proc = spawn('openssl', ['s_client', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d: Buffer) => (this.out += d.toString('latin1')));
    this.proc.stderr!.on('data', (d: Buffer) => (this.out += d.toString('latin1')));
    this.proc.stdin!.on('error', () => undefined);
    this.exited = new Promise((r) => this.proc.once('exit', (code) => {
      this.exitCode = code;
      r();
    }));
  }

  /** Resolves once the output matches (after `from`, an offset into `out`); rejects after `ms`. */
  async waitFor(re: RegExp, ms = 10_000, from = 0): Promise<void> {
    const deadline = Date.now() + ms;
    while (!re.test(this.out.slice(from))) {
      if (this.exitCode !== undefined) throw new Error(`s_client exited (${this.exitCode}) before ${re}:\n${this.out}`);
      if (Date.now() > deadline) throw new Error(`s_client did not print ${re} within ${ms} ms:\n${this.out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** One write; s_client reads it as one chunk, so a command letter must be a write of its own. */
  write(text: string): void {
    this.proc.stdin!.write(text);
  }

  /** Resolves with true once s_client has exited, false if it is still running after `ms`. */
  async waitExit(ms: number): Promise<boolean> {
    if (this.exitCode !== undefined) return true;
    return Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
  }

  async close(): Promise<void> {
    if (this.exitCode === undefined) {
      this.proc.stdin!.end();
      if (!(await this.waitExit(2000))) this.proc.kill();
    }
    await this.exited;
  }
}
