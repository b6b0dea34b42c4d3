// Owns: the per-VM state record: per node, the key that built it, the field digests (so a stale
// reason is a diff), the output digest and when. Rewritten atomically after each node. Read
// through a schema (state-schema.ts): a damaged record is refused, or salvaged for the engine.
import { copyFile, readFile } from 'node:fs/promises';
import { RumError } from '../errors.js';
import { writeAtomic } from '../files/atomic.js';
import type { Digest } from './digest.js';
import type { StateDamage } from './events.js';
import type { Json, Output } from './rule.js';

export interface NodeRecord {
  key: Digest;
  fields: Record<string, Digest>;
  output: Digest;
  data?: { [k: string]: Json };
  time: string;
}

export interface StateFile {
  version: 1;
  /** Bumped by --reset: the guest's instance-id comes from it (data, never the clock). */
  generation: number;
  nodes: Record<string, NodeRecord>;
}

export interface OpenStateOptions {
  /**
   * A record that is not sound: 'throw' (the default) refuses it with a STATE error; 'salvage'
   * keeps what is sound on its own, counts the rest as never recorded, and says so in `damage`
   * (the engine: its next build re-adopts the VM's files, see plan.ts).
   */
  ifDamaged?: 'throw' | 'salvage';
}

const NOT_JSON = Symbol('not JSON');
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The quick look every read takes: a record exactly as rum writes it. Stricter than the schema in
 * state-schema.ts (test/unit/state-record.test.ts holds it so): what it passes, the schema
 * would; anything else goes to the schema, which says what is wrong and what can be kept.
 */
export function plainlySound(v: unknown): v is StateFile {
  if (!isObject(v) || v.version !== 1 || !Number.isSafeInteger(v.generation) || (v.generation as number) < 1 || !isObject(v.nodes)) return false;
  for (const r of Object.values(v.nodes)) {
    if (!isObject(r) || typeof r.key !== 'string' || typeof r.output !== 'string' || typeof r.time !== 'string' || !isObject(r.fields)) return false;
    if (r.data !== undefined && !isObject(r.data)) return false;
    for (const d of Object.values(r.fields)) if (typeof d !== 'string') return false;
  }
  return true;
}

export class StateStore {
  private writes: Promise<void> = Promise.resolve();
  private keptDamaged = false;
  private constructor(
    private readonly file: string | undefined,
    private data: StateFile,
    /** Set when the record was salvaged: what was wrong and what was given up. */
    readonly damage?: StateDamage,
  ) {}

  /** `file` undefined: an in-memory record (dry runs of a VM that was never built, tests). */
  static async open(file: string | undefined, opts: OpenStateOptions = {}): Promise<StateStore> {
    const empty = (): StateFile => ({ version: 1, generation: 1, nodes: {} });
    if (!file) return new StateStore(file, empty());
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return new StateStore(file, empty());
      throw new RumError('STATE', `the state record ${file} cannot be read (${code ?? (err as Error).message})`, 'it must be a file this user may read and write');
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = NOT_JSON;
    }
    if (plainlySound(value)) return new StateStore(file, value);
    const version = (value as { version?: unknown } | null)?.version;
    if (typeof version === 'number' && Number.isInteger(version) && version > 1)
      throw new RumError('STATE', `the state record ${file} was written by a newer rum (format ${version})`, 'run that rum again; this one would not understand what it recorded');
    // Not JSON.parse's message for text that is not JSON: it quotes the bytes, which may be anything.
    const r =
      value === NOT_JSON
        ? { record: empty(), damage: { problem: 'it is not JSON', dropped: 'all' as const, generationLost: true } }
        : (await import('./state-schema.js')).salvageRecord(value);
    if (r.damage && opts.ifDamaged !== 'salvage')
      throw new RumError(
        'STATE',
        `the state record ${file} is not readable: ${r.damage.problem}`,
        "`rum up` keeps what is sound in it, adopts the VM's disk and keys as they are, and sets the damaged file aside",
      );
    return new StateStore(file, r.record, r.damage && { file, ...r.damage });
  }

  get generation(): number {
    return this.data.generation;
  }

  get(id: string): NodeRecord | undefined {
    return Object.hasOwn(this.data.nodes, id) ? this.data.nodes[id] : undefined;
  }

  output(id: string): Output | undefined {
    const r = this.get(id);
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

  /** The reset count as found elsewhere (the instance-id on disk), when the record lost it. */
  adoptGeneration(n: number): void {
    if (Number.isSafeInteger(n) && n >= 1) this.data.generation = n;
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
    this.writes = this.writes
      .catch(() => undefined)
      .then(async () => {
        // The first write over a damaged record keeps a copy for whoever wants to know what
        // happened (a copy, not a move: a crash right after must still find the salvage).
        if (this.damage && !this.keptDamaged) {
          this.keptDamaged = true;
          await copyFile(file, `${file}.damaged`).catch(() => undefined);
        }
        await writeAtomic(file, text, 0o600);
      });
    return this.writes;
  }
}
