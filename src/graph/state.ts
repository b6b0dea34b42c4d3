// Owns: the per-VM state record: per node, the key that built it, the field digests (so a stale
// reason is a diff), the output digest and when. Rewritten atomically after each node.
import { readFile } from 'node:fs/promises';
import { RumError } from '../errors.js';
import { writeAtomic } from '../files/atomic.js';
import type { Digest } from './digest.js';
import type { Json, Output } from './rule.js';

export interface NodeRecord {
  key: Digest;
  fields: Record<string, Digest>;
  output: Digest;
  data?: Json;
  time: string;
}

interface StateFile {
  version: 1;
  /** Bumped by --reset: the guest's instance-id comes from it (data, never the clock). */
  generation: number;
  nodes: Record<string, NodeRecord>;
}

export class StateStore {
  private writes: Promise<void> = Promise.resolve();
  private constructor(
    private readonly file: string | undefined,
    private data: StateFile,
  ) {}

  /** `file` undefined: an in-memory record (dry runs of a VM that was never built, tests). */
  static async open(file: string | undefined): Promise<StateStore> {
    const empty: StateFile = { version: 1, generation: 1, nodes: {} };
    if (!file) return new StateStore(file, empty);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new StateStore(file, empty);
      throw err;
    }
    try {
      const data = JSON.parse(text) as StateFile;
      if (data.version !== 1 || typeof data.nodes !== 'object') throw new Error('unknown format');
      return new StateStore(file, data);
    } catch (err) {
      throw new RumError(
        'STATE',
        `the state record ${file} is not readable: ${(err as Error).message}`,
        'it is written atomically, so this is outside damage; delete it and rum will rebuild what it cannot confirm',
      );
    }
  }

  get generation(): number {
    return this.data.generation;
  }

  get(id: string): NodeRecord | undefined {
    return this.data.nodes[id];
  }

  output(id: string): Output | undefined {
    const r = this.data.nodes[id];
    return r && (r.data === undefined ? { digest: r.output } : { digest: r.output, data: r.data });
  }

  async record(id: string, rec: NodeRecord): Promise<void> {
    this.data.nodes[id] = rec;
    await this.save();
  }

  /** Called before a node's destructive step: from then on a crash reads as "missing". */
  async forget(id: string): Promise<void> {
    if (!(id in this.data.nodes)) return;
    delete this.data.nodes[id];
    await this.save();
  }

  async bumpGeneration(): Promise<void> {
    this.data.generation += 1;
    await this.save();
  }

  /** Writes are chained: parallel nodes finishing together never interleave their writes. */
  private save(): Promise<void> {
    const file = this.file;
    if (!file) return Promise.resolve();
    const text = JSON.stringify(this.data, null, 1);
    // A failed write is reported to its caller; it must not poison the writes queued after it.
    this.writes = this.writes.catch(() => undefined).then(() => writeAtomic(file, text, 0o600));
    return this.writes;
  }
}
