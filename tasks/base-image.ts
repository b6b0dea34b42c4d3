// Owns: the base cloud image: a local path used in place (digested, stat-cached), or a URL or
// shorthand downloaded once into the shared, content-addressed cache and verified first.
import { isAbsolute, resolve } from 'node:path';
import { RumError } from '../src/errors.js';
import { digestOf, type Digest } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { fileExists } from './checks.js';
import type { RumCtx } from './context.js';

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
  // What the image is, not where it comes from: a mirror (image.mirror, RUM_IMAGE_MIRROR) is
  // only a place to fetch the same bytes, so changing it must not make the image stale.
  inputs: (c: RumCtx) => ({ 'image.base': localPath(c) ?? c.config.image.base, 'image.checksum': c.config.image.checksum }),
  files: (c: RumCtx): Record<string, string> => {
    const path = localPath(c);
    return path ? { 'image.base': path } : {};
  },
  output: () => undefined,
  build: async ({ ctx, inputs, progress, signal, digestFile }) => {
    const { imageInfo } = await import('../src/image/qemu-img.js');
    const s = await source(ctx);
    if (s.kind === 'path') {
      const info = await imageInfo(s.path).catch((err: unknown) => {
        throw new RumError('IMAGE', `image.base ${s.path} is not a usable disk image: ${(err as Error).message}`, 'point image.base at a qcow2 or raw cloud image', { cause: err });
      });
      if (info.backingFile) throw new RumError('IMAGE', `image.base ${s.path} has a backing file of its own`, 'flatten it first: qemu-img convert -O qcow2 IN OUT');
      return { digest: await digestFile(s.path), data: { path: s.path, format: info.format, virtualSize: info.virtualSize } };
    }
    const [{ ensureImage }, { parseChecksum }] = await Promise.all([import('../src/image/cache.js'), import('../src/image/sums.js')]);
    const checksum = inputs['image.checksum'] as string | undefined;
    const img = await ensureImage(s.url, {
      ...(checksum ? { checksum: parseChecksum(checksum) } : {}),
      ...(s.sums ? { sums: s.sums } : {}),
      signal,
      onWait: () => progress('waiting for another rum downloading the same image'),
      onProgress: (p) => progress(downloadLine(p), p.total ? p.received / p.total : undefined),
    });
    return { digest: digestOf(img.digest) as Digest, data: { path: img.path, format: img.format, virtualSize: img.virtualSize } };
  },
  check: async ({ previous }) => {
    const path = (previous?.data as { path?: string } | undefined)?.path;
    return path ? fileExists(path) : { ok: false, why: 'no image recorded' };
  },
});

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
function downloadLine(p: { received: number; total?: number; rate: number; etaSeconds?: number }): string {
  const pct = p.total ? ` ${((100 * p.received) / p.total).toFixed(0)}%` : '';
  const eta = p.etaSeconds !== undefined ? `, ${Math.ceil(p.etaSeconds)} s left` : '';
  return `downloading${pct} ${mib(p.received)}${p.total ? ` of ${mib(p.total)}` : ''} at ${mib(p.rate)}/s${eta}`;
}
