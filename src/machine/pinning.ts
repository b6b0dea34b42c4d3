// Owns: keeping rum.lock in step with rum.yaml for a command: which images the project asks for,
// pinning those rum.lock lacks before a run, the --locked refusal, and `rum update`'s new pins
// against the old. Not: the file's format (src/config/lock-file.ts) or how one image is resolved
// (src/image/pin.ts).
import { relative } from 'node:path';
import { lockPathFor, readLock, writeLock, type PinnedImage, type Pins } from '../config/lock-file.js';
import type { Config } from '../config/schema.js';
import { RumError } from '../errors.js';
import type { DownloadProgress } from '../image/download.js';
import { pinAnswers, resolvePin, type ImageAsk } from '../image/pin.js';
import type { OpenProject } from './project.js';

export interface PinChange {
  image: string; // image.base as written
  change: 'added' | 'changed' | 'removed' | 'same';
  old?: PinnedImage;
  new?: PinnedImage;
}

export interface PinEvents {
  progress?: (text: string) => void;
  note?: (text: string) => void;
  signal?: AbortSignal;
}

type Ask = ImageAsk & { mirror?: string };

/** One ask per distinct image.base of these machines, in the order rum.yaml gives them. */
export function imageAsks(configs: Config[], env: NodeJS.ProcessEnv): Ask[] {
  const asks = new Map<string, Ask>();
  for (const c of configs) {
    const mirror = c.image.mirror ?? env.RUM_IMAGE_MIRROR;
    const ask: Ask = { base: c.image.base, dir: c.dir, ...(c.image.checksum ? { checksum: c.image.checksum } : {}), ...(mirror ? { mirror } : {}) };
    const seen = asks.get(ask.base);
    if (seen && seen.checksum !== ask.checksum)
      throw new RumError(
        'CONFIG_INVALID',
        `machines ask for ${ask.base} with different image.checksum values`,
        'one image.base is one set of bytes: give them the same checksum, or none',
      );
    if (!seen) asks.set(ask.base, ask);
  }
  return [...asks.values()];
}

/** `--locked` (CI): rum.lock is there and pins exactly the images rum.yaml asks for. */
export async function checkLocked(o: OpenProject): Promise<Pins> {
  const path = lockPathFor(o.project.file);
  const shown = relative(process.cwd(), path) || path;
  const pins = await readLock(path);
  if (!pins) throw new RumError('CONFIG_INVALID', `--locked: there is no ${shown}`, 'run `rum update` (or `rum up`) to write it, and commit it');
  const asks = imageAsks(o.project.machines, o.env);
  const wrong = [
    ...asks.filter((a) => !Object.hasOwn(pins, a.base)).map((a) => `${a.base} has no pin`),
    ...asks.filter((a) => Object.hasOwn(pins, a.base) && !pinAnswers(pins[a.base]!, a)).map((a) => `${a.base}'s pin does not match image.checksum`),
    ...Object.keys(pins).filter((b) => !asks.some((a) => a.base === b)).map((b) => `${b} is pinned but no machine uses it`),
  ];
  if (wrong.length > 0)
    throw new RumError('CONFIG_INVALID', `--locked: ${shown} does not match rum.yaml: ${wrong.join('; ')}`, 'run `rum update` to bring it in step, and commit it');
  return pins;
}

/**
 * Before a run: pin the images of `configs` that rum.lock lacks (or whose pin no longer answers
 * rum.yaml), and write the lock when anything was added. Pins of images no machine uses are
 * dropped with it. The images of machines not in this run are left as they are.
 */
export async function pinMissing(o: OpenProject, configs: Config[], ev: PinEvents = {}): Promise<PinChange[]> {
  const path = lockPathFor(o.project.file);
  const before = (await readLock(path)) ?? {};
  const after: Pins = {};
  const used = new Set(imageAsks(o.project.machines, o.env).map((a) => a.base));
  for (const [base, pin] of Object.entries(before)) if (used.has(base)) after[base] = pin;
  for (const ask of imageAsks(configs, o.env)) {
    const pin = Object.hasOwn(after, ask.base) ? after[ask.base] : undefined;
    if (pin && pinAnswers(pin, ask)) continue;
    const got = await resolveOne(ask, false, ev);
    if (got) after[ask.base] = got;
    else delete after[ask.base];
  }
  const changes = diffPins(before, after);
  if (changes.some((c) => c.change !== 'same')) await writeLock(path, after);
  return changes;
}

/** `rum update`: every image rum.yaml asks for, resolved afresh; an unchanged image keeps its pin. */
export async function repin(o: OpenProject, ev: PinEvents = {}): Promise<{ path: string; pins: Pins; changes: PinChange[] }> {
  const path = lockPathFor(o.project.file);
  const before = (await readLock(path).catch((err: unknown) => {
    // A damaged lock is what update is for: said, then replaced.
    ev.note?.(`${relative(process.cwd(), path) || path} is damaged and is written afresh: ${(err as Error).message}`);
    return undefined;
  })) ?? {};
  const pins: Pins = {};
  for (const ask of imageAsks(o.project.machines, o.env)) {
    const got = await resolveOne(ask, true, ev);
    if (!got) continue;
    const old = Object.hasOwn(before, ask.base) ? before[ask.base] : undefined;
    pins[ask.base] = old && samePin(old, got) ? old : got;
  }
  return { path, pins, changes: diffPins(before, pins) };
}

async function resolveOne(ask: Ask, refresh: boolean, ev: PinEvents): Promise<PinnedImage | undefined> {
  ev.progress?.(`resolving ${ask.base} for rum.lock`);
  const r = await resolvePin(ask, {
    refresh,
    ...(ask.mirror ? { mirror: ask.mirror } : {}),
    ...(ev.signal ? { signal: ev.signal } : {}),
    onProgress: (p) => ev.progress?.(`resolving ${ask.base} for rum.lock: ${progressText(p)}`),
  });
  if (r?.note) ev.note?.(r.note);
  // A file that is not what image.checksum names is base-image's to report, with rum.yaml's words;
  // pinned, it would only be resolved (and the lock rewritten) again at every run.
  return r && pinAnswers(r.pin, ask) ? r.pin : undefined;
}

const samePin = (a: PinnedImage, b: PinnedImage) => a.url === b.url && a.digest === b.digest && a.size === b.size;

/** What changed from `before` to `after`, in the lock's order. */
export function diffPins(before: Pins, after: Pins): PinChange[] {
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return keys.map((image): PinChange => {
    const old = Object.hasOwn(before, image) ? before[image] : undefined;
    const now = Object.hasOwn(after, image) ? after[image] : undefined;
    if (!old) return { image, change: 'added', new: now! };
    if (!now) return { image, change: 'removed', old };
    return samePin(old, now) && old.resolved === now.resolved ? { image, change: 'same', old, new: now } : { image, change: 'changed', old, new: now };
  });
}

function progressText(p: DownloadProgress): string {
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `downloading ${p.total ? `${((100 * p.received) / p.total).toFixed(0)}% ` : ''}${mib(p.received)}${p.total ? ` of ${mib(p.total)}` : ''}`;
}
