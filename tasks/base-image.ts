// Owns: the base cloud image: a local path used in place (verified, digested, stat-cached), or a
// URL or shorthand downloaded once into the shared, content-addressed cache and verified first.
// Either way it is checked to be a disk image that stands alone (src/image/inspect.ts).
import { isAbsolute, resolve } from 'node:path';
import { digestOf, type Digest } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { digestibleOrAbsent } from '../src/image/local.js';
import type { ImageFormat } from '../src/image/qemu-img.js';
import { isStamp, stampChange, type FileStamp } from '../src/image/stamp.js';
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
  if (/^https?:\/\//.test(base) || !(base.includes('/') || base.startsWith('.') || /\.(qcow2|img|raw)$/.test(base))) return undefined;
  return isAbsolute(base) ? base : resolve(c.config.dir, base);
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
  // Machines booting the same image share one node: fetched and verified once.
  shareKey: (c: RumCtx) => JSON.stringify([localPath(c) ?? c.config.image.base, c.config.image.checksum ?? null]),
  // What the image is, not where it comes from: a mirror (image.mirror, RUM_IMAGE_MIRROR) is
  // only a place to fetch the same bytes, so changing it must not make the image stale.
  inputs: (c: RumCtx) => ({ 'image.base': localPath(c) ?? c.config.image.base, 'image.checksum': c.config.image.checksum }),
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
    if (s.kind === 'path') {
      const { checkLocalImage } = await import('../src/image/local.js');
      if (checksum) progress('verifying image.checksum');
      const info = await checkLocalImage(s.path, { ...(checksum ? { checksum } : {}), signal });
      return { digest: await digestFile(s.path), data: { path: s.path, format: info.format, virtualSize: info.virtualSize } };
    }
    const { ensureImage } = await import('../src/image/cache.js');
    const img = await ensureImage(s.url, {
      ...(checksum ? { checksum } : {}),
      ...(s.sums ? { sums: s.sums } : {}),
      signal,
      onWait: () => progress('waiting for another rum downloading the same image'),
      onProgress: (p) => progress(downloadLine(p), p.total ? p.received / p.total : undefined),
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

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
function downloadLine(p: { received: number; total?: number; rate: number; etaSeconds?: number }): string {
  const pct = p.total ? ` ${((100 * p.received) / p.total).toFixed(0)}%` : '';
  const eta = p.etaSeconds !== undefined ? `, ${Math.ceil(p.etaSeconds)} s left` : '';
  return `downloading${pct} ${mib(p.received)}${p.total ? ` of ${mib(p.total)}` : ''} at ${mib(p.rate)}/s${eta}`;
}
