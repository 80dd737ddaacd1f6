// The fuzz test's seeded pseudo-random generator (sfc32, seeded by a string hash). Every
// input derives its own generator from (FUZZ_SEED, phase, index), so one input can be
// replayed alone (FUZZ_ONLY=h1:17) and produce exactly the same bytes, split sizes and
// delays as in the full run; Math.random would make a failure impossible to reproduce.

/** xmur3: a 32-bit string hash, used only to turn a seed string into sfc32 state. */
function hashSeed(s: string): () => number {
  let h = 1779033703 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    h = Math.imul(h ^ s.charCodeAt(i), 3432918353);
    h = (h << 13) | (h >>> 19);
  }
  return () => {
    h = Math.imul(h ^ (h >>> 16), 2246822507);
    h = Math.imul(h ^ (h >>> 13), 3266489909);
    return (h ^= h >>> 16) >>> 0;
  };
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: string) {
    const h = hashSeed(seed);
    this.a = h();
    this.b = h();
    this.c = h();
    this.d = h();
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A generator for one named part of the run, independent of how much this one was used. */
  static derive(seed: string, ...label: (string | number)[]): Rng {
    return new Rng(`${seed}/${label.join('/')}`);
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** [0, 1) */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** an integer in [0, n) */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** an integer in [lo, hi] */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  /** picks by weight: [[weight, value], ...] */
  weighted<T>(pairs: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of pairs) total += w;
    let x = this.float() * total;
    for (const [w, v] of pairs) {
      if ((x -= w) < 0) return v;
    }
    return pairs[pairs.length - 1]![1];
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) out.writeUInt32LE(this.u32(), i);
    for (; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /** Body bytes of any size, cheaply: a random 4 KiB block repeated, with a seed-specific start. */
  body(n: number): Buffer {
    if (n <= 4096) return this.bytes(n);
    const block = this.bytes(4096);
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4096) block.copy(out, i, 0, Math.min(4096, n - i));
    // a few random positions differ, so a proxy that dropped or repeated a block is caught
    for (let k = 0; k < 16; k++) out[this.int(n)] = this.u32() & 0xff;
    return out;
  }
}
