// Owns: the base cloud image: a local path used in place (verified, digested, stat-cached), or a
// URL or shorthand downloaded once into the shared, content-addressed cache and verified first.
// Either way it is checked to be a disk image that stands alone (src/image/inspect.ts).
import { isAbsolute, resolve } from 'node:path';
import { digestOf, type Digest } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { baseKind } from '../src/config/image-source.js';
import type { PinnedImage } from '../src/config/lock-file.js';
import { RumError } from '../src/errors.js';
import { digestibleOrAbsent } from '../src/image/local.js';
import type { ImageFormat } from '../src/image/qemu-img.js';
import { isStamp, stampChange, type FileStamp } from '../src/image/stamp.js';
import { pinAnswers } from '../src/image/pin.js';
import type { Checksum } from '../src/image/sums.js';
import { fileExists } from './checks.js';
import type { RumCtx } from './context.js';

/** What dependents read (overlay, domain-xml). `stamp`: a cached image's, as it was verified. */
export type BaseImage = {
  path: string;
  format: ImageFormat;
  virtualSize: number;
  stamp?: FileStamp;
};

type Source = { kind: 'path'; path: string } | { kind: 'url'; url: string; sums?: { url: string; algo: 'sha256' | 'sha512'; fileName: string } };

/** `image.base` as a local file: anything that is not a URL and looks like a path. */
function localPath(c: RumCtx): string | undefined {
  const base = c.config.image.base;
  if (baseKind(base) !== 'path') return undefined;
  return isAbsolute(base) ? base : resolve(c.config.dir, base);
}

/** The pin rum.lock holds for this image, when it still answers rum.yaml. */
function pinOf(c: RumCtx): PinnedImage | undefined {
  const pin = c.pins && Object.hasOwn(c.pins, c.config.image.base) ? c.pins[c.config.image.base] : undefined;
  if (!pin) return undefined;
  const ask = { base: c.config.image.base, dir: c.config.dir, ...(c.config.image.checksum ? { checksum: c.config.image.checksum } : {}) };
  return pinAnswers(pin, ask) ? pin : undefined;
}

/** `image.base` as a local path or a URL (shorthands resolved through the mirror). */
async function source(c: RumCtx): Promise<Source> {
  const base = c.config.image.base;
  const path = localPath(c);
  if (path) return { kind: 'path', path };
  if (/^https?:\/\//.test(base)) return { kind: 'url', url: base };
  const { resolveShorthand } = await import('../src/image/shorthands.js');
  const s = resolveShorthand(base, c.config.image.mirror ?? c.env.RUM_IMAGE_MIRROR);
  return { kind: 'url', url: s.url, sums: { url: s.sumsUrl, algo: s.algo, fileName: s.fileName } };
}

export const baseImage = defineRule({
  id: 'base-image',
  kind: 'fetched',
  version: 2, // 2: keyed by the shorthand, not the mirror's URL
  deps: [],
  // Machines with one image.base share one pin (rum.lock has one entry per image.base).
  // Machines booting the same image share one node: fetched and verified once.
  shareKey: (c: RumCtx) => JSON.stringify([localPath(c) ?? c.config.image.base, c.config.image.checksum ?? null]),
  // What the image is, not where it comes from: a mirror (image.mirror, RUM_IMAGE_MIRROR) is
  // only a place to fetch the same bytes, so changing it must not make the image stale.
  // The pin enters the key only once there is one, so that a VM made before rum.lock keeps its
  // key until the lock is written; a new pin (rum update) makes the image stale, and the overlay
  // then reports its changed base as waiting for --reset.
  inputs: (c: RumCtx) => {
    const pin = pinOf(c);
    return {
      'image.base': localPath(c) ?? c.config.image.base,
      'image.checksum': c.config.image.checksum,
      ...(pin ? { 'rum.lock': { url: pin.url, digest: pin.digest } } : {}),
    };
  },
  files: (c: RumCtx): Record<string, string> => {
    const path = localPath(c);
    // Not a directory or an unreadable file: build() then says what is wrong with it, where
    // the engine's digest would only throw EISDIR or EACCES.
    return path && digestibleOrAbsent(path) ? { 'image.base': path } : {};
  },
  output: () => undefined,
  build: async ({ ctx, inputs, progress, signal, digestFile }): Promise<{ digest: Digest; data: BaseImage }> => {
    const s = await source(ctx);
    const pinned = inputs['image.checksum'] as string | undefined;
    const { parseChecksum } = await import('../src/image/sums.js');
    const checksum = pinned ? parseChecksum(pinned) : undefined;
    const pin = pinOf(ctx);
    if (s.kind === 'path') {
      const { checkLocalImage } = await import('../src/image/local.js');
      if (pin && !checksum) {
        // With image.checksum, the pin has that digest: checkLocalImage's words are rum.yaml's.
        progress('comparing with rum.lock');
        await samePinnedFile(ctx.config.image.base, s.path, pin, signal);
      }
      if (checksum) progress('verifying image.checksum');
      const info = await checkLocalImage(s.path, { ...(checksum ? { checksum } : {}), signal });
      return { digest: await digestFile(s.path), data: { path: s.path, format: info.format, virtualSize: info.virtualSize } };
    }
    const { ensureImage } = await import('../src/image/cache.js');
    const fetchOpts = {
      signal,
      onWait: () => progress('waiting for another rum downloading the same image'),
      onProgress: (p: Parameters<typeof downloadLine>[0]) => progress(downloadLine(p), p.total ? p.received / p.total : undefined),
    };
    const img = pin
      ? await fetchPinned(ctx, pin, (url, c) => ensureImage(url, { checksum: c, ...fetchOpts }))
      : await ensureImage(s.url, {
          ...(checksum ? { checksum } : {}),
          ...(s.sums ? { sums: s.sums } : {}),
          ...fetchOpts,
        });
    return {
      digest: digestOf(img.digest) as Digest,
      data: { path: img.path, format: img.format, virtualSize: img.virtualSize, stamp: { ...img.stamp } },
    };
  },
  // Asked every run, so only a stat: a cached image whose stamp moved is rebuilt, which confirms
  // its digest (or fetches it again) before anything boots from it.
  check: async ({ ctx, previous }) => {
    const data = previous?.data as Partial<BaseImage> | undefined;
    if (!data?.path) return { ok: false, why: 'no image recorded' };
    if (localPath(ctx)) return fileExists(data.path); // its content is in the key: the engine digests it
    if (!isStamp(data.stamp)) return { ok: false, why: `${data.path} was recorded by an older rum: it is verified once more` };
    const why = await stampChange(data.path, data.stamp);
    return why === undefined ? { ok: true } : { ok: false, why };
  },
});

/** The pinned URL (through the mirror, as a shorthand's is), its digest the one pinned. */
async function fetchPinned<T>(c: RumCtx, pin: PinnedImage, fetch: (url: string, c: Checksum) => Promise<T>): Promise<T> {
  const { throughMirror } = await import('../src/image/shorthands.js');
  const { parseChecksum } = await import('../src/image/sums.js');
  try {
    return await fetch(throughMirror(pin.url!, c.config.image.mirror ?? c.env.RUM_IMAGE_MIRROR), parseChecksum(pin.digest));
  } catch (err) {
    if (!(err instanceof RumError) || err.code !== 'IMAGE') throw err;
    const base = c.config.image.base;
    const why = `rum.lock pins ${base}${pin.url === base ? '' : ` to ${pin.url}`} (resolved ${pin.resolved}): \`rum update\` pins what the server has now`;
    // A mismatch is the lock's to explain: its digest is the one expected.
    const hint = err.message.startsWith('checksum mismatch') || !err.hint ? why : `${err.hint}; ${why}`;
    throw new RumError('IMAGE', err.message, hint, { cause: err });
  }
}

/** A local image is the file rum.lock pinned, or the run stops and names it. */
async function samePinnedFile(base: string, path: string, pin: PinnedImage, signal: AbortSignal): Promise<void> {
  const { stat } = await import('node:fs/promises');
  const { fileChecksum, formatChecksum, parseChecksum } = await import('../src/image/sums.js');
  const st = await stat(path).catch(() => undefined);
  if (!st) return; // checkLocalImage says it is missing
  const now = st.size === pin.size ? formatChecksum(await fileChecksum(path, parseChecksum(pin.digest).algo, signal)) : undefined;
  if (now === pin.digest) return;
  throw new RumError(
    'IMAGE',
    `${base} is not the file rum.lock pinned: it is ${st.size} bytes${now ? ` with ${now}` : ''}, rum.lock has ${pin.size} bytes with ${pin.digest} (resolved ${pin.resolved})`,
    `put the pinned file back, or pin this one: \`rum update\` (then commit rum.lock)`,
  );
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
function downloadLine(p: { received: number; total?: number; rate: number; etaSeconds?: number }): string {
  const pct = p.total ? ` ${((100 * p.received) / p.total).toFixed(0)}%` : '';
  const eta = p.etaSeconds !== undefined ? `, ${Math.ceil(p.etaSeconds)} s left` : '';
  return `downloading${pct} ${mib(p.received)}${p.total ? ` of ${mib(p.total)}` : ''} at ${mib(p.rate)}/s${eta}`;
}
