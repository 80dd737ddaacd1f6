// `portcullis cert` (stub: filled in by its issue).
import type { Command } from 'commander';

export function register(program: Command): void {
  void program;
}
